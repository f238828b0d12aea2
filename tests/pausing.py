"""Acting on a running dogbreed process at a known moment, never against a timer.

The ``gate`` fixture (tests/conftest.py) gives a ``Gate``: a file that holds a process at its pause points for as
long as it exists (see ``dogbreed/pause.py``: a predict run right after recording a batch, training right after
rank 0 records an epoch). Start the process with ``gate.start(cmd)`` (or pass ``gate.env()`` yourself) and call
``gate.wait(proc)``: it returns once the process holds there. The run is then certainly under way and cannot finish
while the test interrupts it, kills it or one of its workers, or changes the store; ``gate.open()`` lets it go on.
A process that ends instead of pausing fails the test with its output; one still running when the test ends is
killed with its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from dogbreed.pause import ENV

PATIENCE_S = 300  # only a bound on a hang (the pause is certain to come): generous, for a slow machine


def as_from_a_terminal() -> None:
    """``preexec_fn``: the signal dispositions of a command typed at a terminal. A test run started in the
    background (``cmd &`` in a script, ``nohup``, a CI daemon) hands SIGINT (and, under nohup, SIGHUP) down
    ignored; Python then never raises KeyboardInterrupt, so a Ctrl-C test would see the run finish (exit 0)."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


class Gate:
    """A file that holds a process at its pause points for as long as it exists."""

    def __init__(self, folder: Path):
        self.path = folder / "pause-gate"
        self.paused = folder / "pause-gate.paused"  # the process creates it on reaching a pause point
        self.procs: list[subprocess.Popen] = []
        self.arm()

    def arm(self) -> None:
        """Hold the next process that reaches a pause point (again)."""
        self.paused.unlink(missing_ok=True)
        self.path.touch()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), ENV: str(self.path)}

    def start(self, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """``cmd`` with this gate, as a user would start it at a terminal: its own process group (Ctrl-C goes to
        the group), default signal handling, output captured as text."""
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
            start_new_session=True,
            preexec_fn=as_from_a_terminal,
        )
        self.procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen, patience: float = PATIENCE_S) -> None:
        """Return once ``proc`` (or one of its children) is held at a pause point."""
        if proc not in self.procs:
            self.procs.append(proc)
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

    def close(self) -> None:
        """Open the gate and kill what is left of the processes it held (a test that failed half-way)."""
        self.open()
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    if os.getpgid(proc.pid) == proc.pid:  # its own group: its workers go too
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        proc.kill()
                except ProcessLookupError:
                    pass
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
