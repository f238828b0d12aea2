"""Acting on a running dogbreed process at a known moment, never against a timer.

A test creates a ``Gate`` (a file), starts the process with ``gate.env()`` and calls ``gate.wait(proc)``, which
returns once the process has reached its first pause point (see ``dogbreed/pause.py``: a predict run right after
recording a batch, training right after rank 0 records an epoch) and holds there. The run is then certainly under
way and cannot finish while the test interrupts it, kills it or one of its workers, or changes the store;
``gate.open()`` lets it go on. A process that ends instead of pausing fails the test with its output.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from dogbreed.pause import ENV

PATIENCE_S = 300  # only a bound on a hang (the pause is certain to come): generous, for a slow machine


class Gate:
    """A file that holds a process at its pause points for as long as it exists."""

    def __init__(self, folder: Path):
        self.path = folder / "pause-gate"
        self.paused = folder / "pause-gate.paused"  # the process creates it on reaching a pause point
        self.paused.unlink(missing_ok=True)
        self.path.touch()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), ENV: str(self.path)}

    def wait(self, proc: subprocess.Popen, patience: float = PATIENCE_S) -> None:
        """Return once ``proc`` (or one of its children) is held at a pause point."""
        until = time.monotonic() + patience
        while not self.paused.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                output = (out or "") + (err or "")
                raise AssertionError(f"the process ended (exit {proc.returncode}) instead of pausing:\n{output}")
            assert time.monotonic() < until, f"the process did not reach a pause point in {patience} s"
            time.sleep(0.02)

    def open(self) -> None:
        self.path.unlink(missing_ok=True)
