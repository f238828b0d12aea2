"""A hardened HTTP download: nothing from the network is trusted.

Every download is bounded in size and time (``Limits``: a deadline, and a stall rule no drip-feeding server escapes);
an interrupted one resumes from its ``.part`` file, and a resume is accepted only when the server's Content-Range
says it continues at our offset; a file with a published size and sha256 must match them byte for byte.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.datasets.archive import Limits
from dogbreed.errors import DogbreedError
from dogbreed.files import file_sha256


class _Deadline:
    """Shuts every connection of one download when its time is up. A socket timeout alone never fires on a server
    that drips one byte at a time, in the headers or in the body; shutting the socket ends any read at once."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def opener(self) -> urllib.request.OpenerDirector:
        """An opener for http and https only (redirects and proxies included) whose every connection is tracked."""
        track = self._track

        def tracked(cls: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
            class Tracked(cls):  # type: ignore[valid-type,misc]
                def __init__(self, *args: Any, **kwargs: Any):
                    super().__init__(*args, **kwargs)
                    create = self._create_connection
                    self._create_connection = lambda *a, **kw: track(create(*a, **kw))

            return Tracked

        http_conn, https_conn = tracked(http.client.HTTPConnection), tracked(http.client.HTTPSConnection)

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(http_conn, req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(https_conn, req, context=self._context)

        opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.UnknownHandler(),
            HTTP(),
            HTTPS(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPRedirectHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            opener.add_handler(handler)
        return opener


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range(value: str | None) -> tuple[int, int] | None:
    """(first byte, total size) of a Content-Range header, or None when it is missing or malformed."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    start, end = int(match[1]), int(match[2])
    total = end + 1 if match[3] == "*" else int(match[3])
    return (start, total) if start <= end < total else None


def _part_size(part: Path, cap: int) -> int:
    """Bytes already fetched into ``part`` (0 when there is none, or when it cannot be the start of the file)."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(st.st_mode):
        raise DogbreedError(f"{part} is not a regular file (a link or a device?); remove it and run the command again")
    if st.st_size > cap:
        part.unlink()
        return 0
    return st.st_size


def _stopped(url: str, done: int, why: str) -> DogbreedError:
    return DogbreedError(f"download of {url} {why}; stopped at {done:,} bytes: run the same command again to resume")


@dataclass
class _Transfer:
    """One download of ``url`` into ``part``: at most ``cap`` bytes in all, within ``limits`` and ``deadline``."""

    url: str
    part: Path
    cap: int
    limits: Limits
    deadline: _Deadline
    on_progress: Callable[[int, int | None], None]

    def stopped(self, done: int, why: str) -> DogbreedError:
        return _stopped(self.url, done, why)

    def receive(self, have: int) -> tuple[int, int | None] | None:
        """Ask for the file from byte ``have`` on and write what comes to ``part``: (bytes in part, expected total),
        or None when the server answered a resume with bytes from another offset (``part`` is then discarded)."""
        url, limits = self.url, self.limits
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = self.deadline.opener().open(request, timeout=limits.stall_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and have:  # nothing after byte `have`: the part is the whole file
                return have, have
            raise DogbreedError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if self.deadline.expired:
                raise self.stopped(have, f"took longer than {limits.deadline_s:g} s") from None
            reason = getattr(exc, "reason", None) or exc
            raise DogbreedError(f"cannot download {url}: {reason}; check the connection or --url") from None
        with response:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.strip().isdigit() else None
            if response.status == 206:
                span = _content_range(response.headers.get("Content-Range"))
                if span is None or span[0] != have:  # the bytes of another offset would corrupt the archive
                    self.part.unlink(missing_ok=True)
                    return None
                total: int | None = span[1]
            else:  # a whole file (a server that ignores Range sends this too): start over
                have, total = 0, length
            if total is not None and total > self.cap:
                self.part.unlink(missing_ok=True)
                raise DogbreedError(
                    f"{url} is {total:,} bytes, more than the {self.cap:,} expected; not downloading it"
                )
            done = self._write_body(response, have, total)
        if self.deadline.expired:
            raise self.stopped(done, f"took longer than {limits.deadline_s:g} s")
        return done, total

    def _write_body(self, response: http.client.HTTPResponse, have: int, total: int | None) -> int:
        """Append the response body to ``part`` (which holds ``have`` bytes), never beyond ``cap`` bytes in all, and
        give up when less than ``limits.min_progress_bytes`` arrive in a ``limits.stall_s`` window. Returns the size
        of ``part``."""
        limits, part = self.limits, self.part
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if have else os.O_TRUNC)
        done = have
        with os.fdopen(os.open(part, flags, 0o644), "wb") as fh:
            window_start, window_done = time.monotonic(), done
            try:
                while chunk := response.read1(1 << 20):  # whatever has arrived: a drip cannot block us in a read
                    if done + len(chunk) > self.cap:
                        fh.close()
                        part.unlink(missing_ok=True)
                        raise DogbreedError(
                            f"{self.url} sent more than {self.cap:,} bytes; not an archive dogbreed expects"
                        )
                    fh.write(chunk)
                    done += len(chunk)
                    self.on_progress(done, total)
                    now = time.monotonic()
                    if now - window_start >= limits.stall_s:
                        if done - window_done < limits.min_progress_bytes:
                            slow = f"under {limits.min_progress_bytes:,} bytes in {limits.stall_s:g} s"
                            raise self.stopped(done, f"stalled ({slow})")
                        window_start, window_done = now, done
            except (http.client.HTTPException, OSError) as exc:  # a dropped connection, a socket timeout, a full disk
                raise self._interrupted(exc, done) from None
        return done

    def _interrupted(self, exc: BaseException, done: int) -> DogbreedError:
        """Why the body stopped arriving, as the error to show."""
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return self.stopped(done, f"could not be written to {self.part.parent}: the disk is full")
        if self.deadline.expired:
            return self.stopped(done, f"took longer than {self.limits.deadline_s:g} s")
        if isinstance(exc, TimeoutError):
            return self.stopped(done, f"stalled (nothing for {self.limits.stall_s:g} s)")
        return self.stopped(done, f"was interrupted ({exc})")


def fetch(
    url: str,
    target: Path,
    limits: Limits,
    expected_size: int | None = None,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> None:
    """Download ``url`` to ``target`` within ``limits``, resuming ``target.part`` with an HTTP Range request when
    one exists. With ``expected_size``, the file must be exactly that long."""
    part = target.with_name(target.name + ".part")
    cap = expected_size if expected_size is not None else limits.max_download_bytes
    have = _part_size(part, cap)

    def progress(done: int, total: int | None) -> None:
        if on_progress:
            on_progress(target.name, done, total)

    with _Deadline(limits.deadline_s) as deadline:
        transfer = _Transfer(url, part, cap, limits, deadline, progress)
        got = transfer.receive(have)
        if got is None:  # the server answered the resume wrongly: fetch the whole file once more
            got = transfer.receive(0)
        if got is None:
            raise DogbreedError(
                f"{url} answered a plain request with a partial reply; try again later or another --url"
            )
    done, total = got
    if expected_size is not None:
        total = expected_size
    if total is not None and done < total:
        raise _stopped(url, done, f"ended early ({done:,} of {total:,} bytes)")
    if total is not None and done > total:
        part.unlink(missing_ok=True)
        raise DogbreedError(f"{url} sent {done:,} bytes where {total:,} were announced; run the command again")
    os.replace(part, target)


def verify_published(path: Path, size: int, sha256: str, publisher: str) -> None:
    """``path`` must be byte for byte the file ``publisher`` published (its size and sha256); a file that is not
    is deleted."""
    actual = path.stat().st_size
    problem = f"{actual:,} bytes instead of {size:,}" if actual != size else None
    if problem is None:
        digest = file_sha256(path)
        if digest != sha256:
            problem = f"sha256 {digest[:12]}... instead of {sha256[:12]}..."
    if problem:
        path.unlink(missing_ok=True)
        raise DogbreedError(
            f"{path} is not {publisher}'s {path.name} ({problem}); it was deleted: run the same command again to "
            "download it afresh"
        )


def already_downloaded(path: Path) -> bool:
    """Whether ``path`` is there to use instead of downloading it (a link to a copy downloaded elsewhere is fine);
    something there that is not a regular file is an error."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise DogbreedError(f"{path} is not a regular file; remove it and run the command again")
    return True
