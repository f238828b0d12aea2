"""Acting on a running dogbreed process at a known moment, never against a timer.

A test creates a ``Gate`` (a file), starts the process with ``gate.env()``, and waits with ``wait_for_row`` until
the store shows the row the process writes just before its pause point (a predict run: a recorded batch; training:
a recorded epoch; see ``dogbreed/pause.py``). From then on the process waits at that point, so the run is certainly
under way and cannot finish while the test interrupts it, kills it or one of its workers, or changes the store;
``gate.open()`` lets it go on.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dogbreed.pause import ENV

# Only a bound on a hang (the event is certain to come): generous, so that a slow machine never trips it.
PATIENCE_S = 300


class Gate:
    """A file that holds a process at its pause points for as long as it exists."""

    def __init__(self, folder: Path):
        self.path = folder / "pause-gate"
        self.path.touch()

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(os.environ if base is None else base), ENV: str(self.path)}

    def open(self) -> None:
        self.path.unlink(missing_ok=True)


def wait_for_row(
    db: Path, sql: str, ready: Callable[[Any], bool], proc: subprocess.Popen, patience: float = PATIENCE_S
) -> Any:
    """Poll ``sql`` (its first value) on the store until ``ready(value)``; return the value. The process must
    still be running meanwhile (it cannot finish before the row it pauses after: if it ended, that is the bug)."""
    until = time.monotonic() + patience
    while True:
        value = _first_value(db, sql)
        if value is not None and ready(value):
            return value
        if proc.poll() is not None:
            out, err = proc.communicate()
            output = (out or "") + (err or "")
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {sql!r} was ready:\n{output}")
        assert time.monotonic() < until, f"still waiting on {sql!r} after {patience} s"
        time.sleep(0.02)


def _first_value(db: Path, sql: str) -> Any:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        row = conn.execute(sql).fetchone()
    except sqlite3.OperationalError:  # the tables are being created
        return None
    finally:
        conn.close()
    return row[0] if row else None
