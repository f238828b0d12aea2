"""Processes: whether the process that owns a job or a training run still exists, and how a command stops on a
signal (Ctrl-C, SIGTERM, SIGHUP).

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


# ---------------------------------------------------------------- stop signals

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C; timeout, systemd, docker stop; a closed terminal
_received: list[int] = []


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as Ctrl-C is, so that every cleanup written for Ctrl-C (jobs handed back, a run
    marked interrupted, one line saying what is stored) runs for them too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _signals() -> list:
    import signal

    return [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]


def stop_on_signals() -> None:
    """Main thread of a command: SIGINT raises KeyboardInterrupt and SIGTERM/SIGHUP raise ``Stopped``, once; a
    further signal while that one is being handled (Ctrl-C pressed again during the clean-up) is taken quietly,
    so the clean-up finishes and no traceback follows its message. A signal this process was started ignoring
    (``nohup``, a command run in the background by a shell) stays ignored."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _signals():
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_stop_signal)


def _on_stop_signal(signum: int, frame: object) -> None:
    import signal

    _received.append(signum)
    if len(_received) > 1:
        return  # already stopping: the clean-up under way is not interrupted again
    raise KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


def stop_exit_code(default: int = 130) -> int:
    """The exit code a stopped command ends with: 128 + the signal that stopped it (130 Ctrl-C, 143 SIGTERM,
    129 SIGHUP), as a shell reports a command killed by it."""
    return 128 + _received[0] if _received else default


def stop_signal_name(default: str = "Ctrl-C") -> str:
    import signal

    if not _received or _received[0] == signal.SIGINT:
        return default
    return signal.Signals(_received[0]).name


def default_stop_signals() -> None:
    """In a worker process forked from a command: SIGTERM and SIGHUP end it as they end any process (its parent
    hands its jobs back), Ctrl-C is left to the parent."""
    import signal

    for sig in _signals():
        signal.signal(sig, signal.SIG_IGN if sig == signal.SIGINT else signal.SIG_DFL)


class HeldSignals:
    """Stop signals held back (blocked, not lost) over a step that must not be cut in two, such as recording a run
    and entering the ``try`` that closes it; ``release`` lets them through where they can be handled."""

    def __init__(self) -> None:
        self._previous: set | None = None

    def __enter__(self) -> HeldSignals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.pthread_sigmask(signal.SIG_BLOCK, _signals())
        return self

    def release(self) -> None:
        import signal

        if self._previous is not None:
            previous, self._previous = self._previous, None
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __exit__(self, *exc: object) -> None:
        self.release()
