"""Careful file handling shared by every input path: hashing, reading only regular files with a size cap
enforced while reading (a FIFO or a link to /dev/zero cannot hang or flood us), and turning user text into a safe
file name."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tempfile
from pathlib import Path

from dogbreed.errors import DogbreedError


class NotReadable(DogbreedError):
    """A path that is not something we read (not a regular file, too big, no permission); the message says why."""


class NotWritable(DogbreedError):
    """A path that is not something we write (a device, a FIFO, a folder in the way, a read-only or full disk)."""


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``.

    Opened with O_NONBLOCK so a FIFO never blocks the open, checked with fstat on the open descriptor (no race
    between the check and the read), and read with the cap enforced as it goes (a file that grows meanwhile
    still stops at the cap)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise NotReadable(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) else "special"
            raise NotReadable(f"not a regular file ({kind}); only regular files are read")
        if st.st_size > max_bytes:
            raise NotReadable(f"{st.st_size / 2**20:.0f} MB is over the {max_bytes // 2**20} MB limit")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise NotReadable(f"over the {max_bytes // 2**20} MB limit")
        return b"".join(chunks)
    except OSError as exc:
        raise NotReadable(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special"


def write_problem(exc: OSError, where: str = "") -> str:
    """What went wrong with a write, for a one-line error; ``where`` names a setting that moves the folder."""
    hint = f"; choose a folder you can write to{where}"
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full; free some space and try again"
    if exc.errno == errno.EROFS:
        return "the file system is read-only" + hint
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied" + hint
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return "part of the path is a file, not a folder"
    return exc.strerror or str(exc)


def write_regular_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (missing folders made) through a temporary file and a rename, so a full disk
    never leaves half a file. Only a regular file (or a new one) is written: a FIFO would block forever and a
    device (as root: /dev/null) must never be replaced. A link is written through, not replaced."""
    target = Path(os.path.realpath(path))
    tmp = None
    try:
        try:
            mode = os.stat(target).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise NotWritable(f"cannot write {path}: it is {_file_kind(mode)}, not a regular file")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, (stat.S_IMODE(mode) if mode is not None else 0o666 & ~umask))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise NotWritable(f"cannot write {path}: {write_problem(exc)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return Path(path)


def safe_name(text: str, fallback: str = "run", max_len: int = 64) -> str:
    """``text`` as one harmless file-name component: letters, digits, '.', '-' and '_' only, no leading dot, never
    '..' or a path. '../../x' becomes 'x'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:max_len].strip(".-_")
    return cleaned or fallback


def touch(folder: Path) -> None:
    """Mark a cache entry as just used (its mtime), so pruning keeps the most recently used."""
    try:
        os.utime(folder)
    except OSError:
        pass


def prune_oldest(folder: Path, keep: int, stale_after_s: float = 3600) -> None:
    """Drop all but the ``keep`` most recently used entries (folders) of a cache, and leftovers of interrupted
    writes (hidden folders) older than ``stale_after_s``; a folder in use is only deleted once it is no longer
    among the newest."""
    import shutil
    import time

    try:
        entries = [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return

    def age(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    done = sorted((p for p in entries if not p.name.startswith(".")), key=age, reverse=True)
    stale = [p for p in entries if p.name.startswith(".") and time.time() - age(p) > stale_after_s]
    for old in done[keep:] + stale:
        shutil.rmtree(old, ignore_errors=True)
