"""A safe tar extractor for archives from the network, and the ``Limits`` one archive may cost.

Extraction does not rely on tarfile's 'data' filter alone (on Python 3.11.7 a chain of links overflowing PATH_MAX
defeats it, CVE-2025-4517): the raw headers are walked first (``check_tar``), every member must be a regular file
or a folder landing inside the target, counts and sizes are bounded, and the files are written by this module,
never through a link.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dogbreed.errors import DogbreedError
from dogbreed.imaging import MAX_BYTES

BLOCK = tarfile.BLOCKSIZE
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_META_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_KIND_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}


@dataclass(frozen=True)
class Limits:
    """What one archive may cost, so that a hostile or broken server or archive takes bounded time, disk and
    memory. Stanford's own archives are far inside every bound."""

    max_download_bytes: int = 4 * 2**30  # custom URLs; Stanford's archives must be exactly their published size
    deadline_s: float = 3 * 3600.0  # one archive's whole download (resumable after)
    stall_s: float = 60.0  # at least min_progress_bytes must arrive in every window this long
    min_progress_bytes: int = 64 * 1024
    max_members: int = 100_000  # images.tar holds 20,700
    max_total_bytes: int = 4 * 2**30  # everything extracted from one archive
    max_member_bytes: int = MAX_BYTES  # one file: nothing dogbreed reads is larger
    max_header_bytes: int = 1 << 20  # one pax or GNU long-name header


def _header_name(block: bytes) -> str:
    prefix, name = block[345:500].split(b"\0", 1)[0], block[:100].split(b"\0", 1)[0]
    joined = prefix + b"/" + name if prefix else name
    return joined.decode("utf-8", "replace")[:200]


def check_tar(path: Path, limits: Limits | None = None) -> int:
    """Walk the raw tar headers before tarfile parses anything, in bounded memory: a file that is not a plain tar,
    a truncated one, a member that is not a regular file or a folder (links, devices, FIFOs, sparse files), an
    oversized header or too many members fail here. Returns the number of members."""
    limits = limits or Limits()
    size = path.stat().st_size
    count = offset = 0
    with open(path, "rb") as fh:
        while True:
            fh.seek(offset)
            block = fh.read(BLOCK)
            if len(block) < BLOCK:
                if offset == 0:
                    raise DogbreedError(f"{path} is not a tar archive (too short); delete it and download again")
                raise DogbreedError(f"{path} is truncated ({size:,} bytes); delete it and download again")
            if not block.strip(b"\0"):
                break  # the end-of-archive marker
            try:
                checksum, data_size = tarfile.nti(block[148:156]), tarfile.nti(block[124:136])
            except tarfile.TarError:
                checksum, data_size = -1, -1
            if checksum not in tarfile.calc_chksums(block) or data_size < 0:
                where = "" if offset == 0 else f" (damaged header at byte {offset:,})"
                raise DogbreedError(f"{path} is not a tar archive{where}; delete it and download again")
            kind, name = block[156:157], _header_name(block)
            if kind in _META_TYPES:
                if data_size > limits.max_header_bytes:
                    raise DogbreedError(f"refusing to extract {path}: a {data_size:,}-byte header before {name!r}")
                if kind in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                    fh.seek(offset + BLOCK)
                    records = fh.read(data_size)
                    if b"GNU.sparse" in records:
                        raise DogbreedError(f"refusing to extract {path}: a sparse file follows {name!r}")
                    if b" size=" in records:  # sizes beyond 8 GiB: nothing Stanford ships
                        raise DogbreedError(f"refusing to extract {path}: a pax size record before {name!r}")
            elif kind not in (*_FILE_TYPES, tarfile.DIRTYPE):
                what = _KIND_NAMES.get(kind, f"of tar type {kind!r}")
                raise DogbreedError(
                    f"refusing to extract {path}: member {name!r} is {what}; only regular files and folders are "
                    "extracted"
                )
            else:
                count += 1
                if count > limits.max_members:
                    raise DogbreedError(f"refusing to extract {path}: more than {limits.max_members:,} members")
            offset += BLOCK + -(-data_size // BLOCK) * BLOCK
            if offset > size:
                raise DogbreedError(f"{path} is truncated ({size:,} bytes); delete it and download again")
    if count == 0:
        raise DogbreedError(f"{path} is an empty archive; delete it and download again")
    return count


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def _member_problem(member: tarfile.TarInfo, dest: str, archive_size: int, limits: Limits) -> str | None:
    """Why ``member`` must not be extracted into ``dest`` (a real path), or None."""
    if member.issparse() or any(k.startswith("GNU.sparse") for k in member.pax_headers):
        return "is a sparse file"
    if not (member.isreg() or member.isdir()):
        what = _KIND_NAMES.get(member.type, "a special file")
        return f"is {what}; only regular files and folders are extracted"
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or "\0" in name:
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has '..' in its path"
    if member.isreg() and member.size > limits.max_member_bytes:
        return f"is {member.size:,} bytes, more than the {limits.max_member_bytes:,} allowed for one file"
    if member.isreg() and member.offset_data + member.size > archive_size:
        return "is cut short (the archive is truncated)"
    resolved = os.path.realpath(os.path.join(dest, *_parts(name)))
    if os.path.commonpath([resolved, dest]) != dest:
        return f"would land outside {dest}"
    data_filter = getattr(tarfile, "data_filter", None)  # Python 3.10.12+ / 3.11.4+
    try:  # the standard library's own check, as a second line of defence
        if data_filter is not None:
            data_filter(member, dest)
    except tarfile.TarError as exc:  # FilterError
        return f"is refused by tarfile's data filter ({exc})"
    return None


def _validated_members(
    tar: tarfile.TarFile, archive: Path, dest: str, limits: Limits, reserved: Collection[str]
) -> list[tarfile.TarInfo]:
    """Every member, checked before anything is written: the whole archive is refused for one bad member."""
    archive_size = archive.stat().st_size
    kinds: dict[tuple[str, ...], bool] = {}  # path parts -> is a folder
    members: list[tarfile.TarInfo] = []
    total = 0

    def refuse(name: str, problem: str) -> DogbreedError:
        return DogbreedError(f"refusing to extract {archive}: member {name[:200]!r} {problem}; nothing was extracted")

    for member in tar:  # as many as check_tar counted
        problem = _member_problem(member, dest, archive_size, limits)
        if problem:
            raise refuse(member.name, problem)
        key = tuple(_parts(member.name))
        if not key:
            continue  # "." or "./": the destination itself
        if os.path.join(dest, *key) in reserved:
            raise refuse(member.name, "would overwrite a file dogbreed keeps there")
        if key in kinds and not (kinds[key] and member.isdir()):
            raise refuse(member.name, "appears twice")
        kinds[key] = member.isdir()
        total += member.size if member.isreg() else 0
        if total > limits.max_total_bytes:
            raise DogbreedError(f"refusing to extract {archive}: more than {limits.max_total_bytes:,} bytes in all")
        members.append(member)
    for key in kinds:
        for depth in range(1, len(key)):
            if kinds.get(key[:depth]) is False:
                raise refuse("/".join(key), f"sits inside {'/'.join(key[:depth])!r}, which is a file")
    return members


def _make_dirs(root: str, parts: Sequence[str], made: set[str]) -> str:
    """``root/parts...`` as real folders, never through a link (even one that was there before)."""
    path = root
    for part in parts:
        path = os.path.join(path, part)
        if path in made:
            continue
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise DogbreedError(f"cannot extract into {path}: something other than a folder (a link?) is in the way")
        made.add(path)
    return path


def _write_file(path: str, source: IO[bytes], size: int) -> None:
    """Exactly ``size`` bytes to a new file at ``path``: whatever was there (a link, a hard-linked file) is
    unlinked first, never written through."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o644), "wb") as fh:
        left = size
        while left:
            chunk = source.read(min(1 << 20, left))
            if not chunk:
                raise DogbreedError(f"the archive ends inside {path}; delete it and download again")
            fh.write(chunk)
            left -= len(chunk)


def safe_extract(archive: Path, dest: Path, limits: Limits | None = None, reserved: Collection[str] = ()) -> int:
    """Extract ``archive`` into ``dest`` after checking every member (see ``check_tar`` and ``_member_problem``):
    regular files and folders only, each landing inside ``dest``, bounded in number and size. Files are written
    by us, never by tarfile. ``reserved`` are paths no member may take. Returns the number of members."""
    limits = limits or Limits()
    check_tar(archive, limits)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)
    with tarfile.open(archive, "r:") as tar:
        members = _validated_members(tar, archive, root, limits, reserved)
        made = {root}
        try:
            for member in members:
                parts = _parts(member.name)
                if member.isdir():
                    _make_dirs(root, parts, made)
                    continue
                folder = _make_dirs(root, parts[:-1], made)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has data
                _write_file(os.path.join(folder, parts[-1]), source, member.size)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise DogbreedError(f"cannot extract {archive} into {dest}: {exc.strerror or exc}{where}") from None
    return len(members)
