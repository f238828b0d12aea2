"""A pause point, so that the test suite can act on a running process at a known moment.

A test that sends Ctrl-C, kill -9 or SIGTERM to a run, kills one of its workers or deletes its images "while it
runs" must not race the run against a timer: on a busy machine the run may finish first. Instead the test creates
a file and names it in ``DOGBREED_PAUSE_WHILE`` for the process it starts. At its first pause point the process
creates the same name plus ``.paused`` and waits there for as long as the file exists: the test waits for the
``.paused`` file, acts while the run is certainly under way, then deletes the file to let it go on. The pause
points: a predict run after it records each batch (``predict.run_jobs``), training after rank 0 records each epoch
(``train.record.RunRecorder.end_epoch``).

Unset (always, outside the tests) a pause point costs one environment lookup. Signals reach a paused process as
they would a working one (the wait is a plain sleep in the main thread).
"""

from __future__ import annotations

import os
import time

ENV = "DOGBREED_PAUSE_WHILE"


def pause_point() -> None:
    """Wait while the file named by ``DOGBREED_PAUSE_WHILE`` exists, saying so with a ``.paused`` file beside it
    (return at once when it is unset or absent)."""
    gate = os.environ.get(ENV)
    if not gate or not os.path.lexists(gate):
        return
    with open(f"{gate}.paused", "a"):
        pass
    while os.path.lexists(gate):
        time.sleep(0.02)
