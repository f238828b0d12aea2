"""Careful file handling shared by every input path: hashing, reading only regular files with a size cap
enforced while reading (a FIFO or a link to /dev/zero cannot hang or flood us), and turning user text into a safe
file name."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from dogbreed.errors import DogbreedError


class NotReadable(DogbreedError):
    """A path that is not something we read (not a regular file, too big, no permission); the message says why."""


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


def safe_name(text: str, fallback: str = "run", max_len: int = 64) -> str:
    """``text`` as one harmless file-name component: letters, digits, '.', '-' and '_' only, no leading dot, never
    '..' or a path. '../../x' becomes 'x'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:max_len].strip(".-_")
    return cleaned or fallback
