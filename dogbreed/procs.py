"""Process liveness: whether the process that owns a job or a training run still exists.

A job or run records its owner's pid; when that process is gone (killed, crashed, machine rebooted) its work is
abandoned and can be taken over. A zombie (killed, not yet reaped by its parent) counts as gone.
"""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` names a live process other than this one."""
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
