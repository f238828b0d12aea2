"""The Stanford Dogs dataset: layout, official split, seeded stratified splits, verify scan, download.

Layout, as Stanford ships it::

    <dataset>/Images/n02085620-Chihuahua/n02085620_10074.jpg
    <dataset>/lists/train_list.mat, test_list.mat   (MATLAB: file_list, 1-based labels)

Downloads and archives come from the network, so nothing in them is trusted: Stanford's archives must match their
published sha256; every download is bounded in size and time (a deadline, and a stall rule no drip-feeding server
escapes); a resume is accepted only when the server's Content-Range says it continues at our offset. Extraction
does not rely on tarfile's 'data' filter alone (on Python 3.11.7 a chain of links overflowing PATH_MAX defeats it,
CVE-2025-4517): the raw headers are walked first, every member must be a regular file or a folder landing inside
the target, counts and sizes are bounded, and the files are written by this module, never through a link.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import random
import re
import socket
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dogbreed.breeds import Breed, breed_from_folder
from dogbreed.errors import DogbreedError
from dogbreed.files import NotReadable, file_sha256, read_regular_file
from dogbreed.imaging import IMAGE_SUFFIXES, MAX_BYTES

STANFORD_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
ARCHIVES = {"images": "images.tar", "lists": "lists.tar", "annotation": "annotation.tar"}
VERIFY_CACHE = ".dogbreed-verify.json"
MAX_LIST_BYTES = 16 * 2**20  # Stanford's train_list.mat is 330 KB
MAX_LIST_EXPANDED = 256 * 2**20  # what a list's compressed parts may inflate to


@dataclass(frozen=True)
class Sample:
    path: str  # relative to <dataset>/Images, e.g. "n02085620-Chihuahua/n02085620_10074.jpg"
    label: int  # index into DatasetIndex.classes


@dataclass
class DatasetIndex:
    root: Path
    classes: list[Breed]
    samples: list[Sample]

    @property
    def images_dir(self) -> Path:
        return self.root / "Images"

    def counts(self) -> dict[str, int]:
        per: dict[str, int] = defaultdict(int)
        for s in self.samples:
            per[self.classes[s.label].wnid] += 1
        return {b.wnid: per[b.wnid] for b in self.classes}


@dataclass
class Splits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    official: bool
    notes: list[str] = field(default_factory=list)


def scan(root: Path) -> DatasetIndex:
    """Index ``root/Images``: one class per Stanford breed folder, in canonical breed order."""
    images = Path(root) / "Images"
    if not images.is_dir():
        raise DogbreedError(
            f"no Images/ folder in {root}; fetch the dataset with 'dogbreed dataset download --dataset {root}' "
            "or point --dataset at a Stanford-layout folder"
        )
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    breeds: list[tuple[Breed, Path]] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        breed = breed_from_folder(folder.name)
        if breed is None:
            raise DogbreedError(
                f"dataset folder {folder} is not one of the 120 Stanford breeds (expected names like "
                "n02085620-Chihuahua); move it out of Images/"
            )
        if breed.wnid in seen:  # one breed must be one class, never two
            raise DogbreedError(
                f"{images} has two folders for {breed.name} ({seen[breed.wnid].name} and {folder.name}); merge them "
                "into one or move one out of Images/"
            )
        seen[breed.wnid] = folder
        breeds.append((breed, folder))
    breeds.sort(key=lambda bf: bf[0].index)
    if len(breeds) < 2:
        raise DogbreedError(f"{images} holds {len(breeds)} breed folder(s); training needs at least 2")
    samples = []
    for label, (_breed, folder) in enumerate(breeds):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                samples.append(Sample(f"{folder.name}/{file.name}", label))
    return DatasetIndex(Path(root), [b for b, _ in breeds], samples)


def _mat_expanded_size(path: Path, cap: int) -> int:
    """How large a MATLAB v5 file's compressed variables become once inflated, counted (not kept) up to ``cap``:
    a small list file must not inflate into gigabytes inside scipy. Other formats are left to scipy."""
    total = 0
    with open(path, "rb") as fh:
        header = fh.read(128)
        order = "big" if header[126:128] == b"MI" else "little"
        while len(tag := fh.read(8)) == 8:
            kind, size = int.from_bytes(tag[:4], order), int.from_bytes(tag[4:], order)
            data = fh.read(size)
            total += len(data)
            if kind == 15:  # miCOMPRESSED
                inflater = zlib.decompressobj()
                try:
                    chunk = inflater.decompress(data, 1 << 20)
                    while chunk:
                        total += len(chunk)
                        if total > cap:
                            return total
                        chunk = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
                except zlib.error:
                    return total  # not ours to judge: scipy reports the damage
            fh.seek((-size) % 8, os.SEEK_CUR)
    return total


def _mat_string(entry: Any) -> str | None:
    """One cell of ``file_list``: a 1-element array holding a string (or a bare string); None for anything else."""
    import numpy as np

    for _ in range(4):  # a cell, an array in it, its one element
        if not (isinstance(entry, np.ndarray) and entry.size == 1):
            break
        entry = entry.ravel()[0]
    return str(entry) if isinstance(entry, str) and entry.strip() else None


def _read_mat_list(path: Path) -> list[str]:
    import scipy.io

    try:
        size = path.stat().st_size
        if size > MAX_LIST_BYTES or _mat_expanded_size(path, MAX_LIST_EXPANDED) > MAX_LIST_EXPANDED:
            raise DogbreedError(
                f"split list {path} is far larger than Stanford's lists; replace it or remove lists/ to use a seeded "
                "split"
            )
        mat = scipy.io.loadmat(str(path), variable_names=["file_list"])
    except DogbreedError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DogbreedError(f"cannot read split list {path}: {reason}; remove lists/ to use a seeded split") from None
    if "file_list" not in mat:
        raise DogbreedError(
            f"split list {path} has no 'file_list' variable, so it is not one of Stanford's lists; replace it or "
            "remove lists/ to use a seeded split"
        )
    entries = mat["file_list"]
    entries = entries.ravel() if hasattr(entries, "ravel") else [entries]
    names = []
    for number, entry in enumerate(entries, 1):
        name = _mat_string(entry)
        if name is None:
            raise DogbreedError(
                f"split list {path}: entry {number} of 'file_list' is empty or not a file name; replace the list or "
                "remove lists/ to use a seeded split"
            )
        names.append(name if Path(name).suffix else f"{name}.jpg")
    return names


def official_lists(root: Path) -> tuple[list[str], list[str]] | None:
    """(train files, test files) from ``lists/*.mat``, or None when the lists are not there."""
    lists = Path(root) / "lists"
    train, test = lists / "train_list.mat", lists / "test_list.mat"
    if not (train.is_file() and test.is_file()):
        return None
    return _read_mat_list(train), _read_mat_list(test)


def _by_class(samples: list[Sample]) -> dict[int, list[Sample]]:
    groups: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.label].append(s)
    return groups


def stratified_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split each class separately (seeded): (rest, held out), holding out ``fraction`` of each class, at least
    one image of every class that has two or more."""
    rng = random.Random(seed)
    rest, held = [], []
    for label in sorted(_by_class(samples)):
        group = sorted(_by_class(samples)[label], key=lambda s: s.path)
        rng.shuffle(group)
        n_held = max(1, round(len(group) * fraction)) if len(group) >= 2 else 0
        held.extend(group[:n_held])
        rest.extend(group[n_held:])
    return rest, held


def _limit(samples: list[Sample], per_class: int | None, seed: int) -> list[Sample]:
    if not per_class:
        return samples
    rng = random.Random(seed)
    out = []
    for _label, group in sorted(_by_class(samples).items()):
        group = sorted(group, key=lambda s: s.path)
        rng.shuffle(group)
        out.extend(group[:per_class])
    return out


def make_splits(
    index: DatasetIndex,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit_per_class: int | None = None,
) -> Splits:
    """Train / validation / test. The official lists decide train vs test when present (else a seeded split
    stratified per breed, with a note); validation is always carved from the training part, so the test part
    is touched only for the final report. ``limit_per_class`` caps each part's images per breed."""
    notes: list[str] = []
    lists = official_lists(index.root)
    if lists is not None:
        known = {s.path: s for s in index.samples}
        train_files, test_files = lists
        missing = [f for f in train_files + test_files if f not in known]
        train = [known[f] for f in train_files if f in known]
        test = [known[f] for f in test_files if f in known]
        if missing:
            notes.append(f"{len(missing)} files named in lists/*.mat are not in Images/ and were left out")
        official = True
    else:
        notes.append(
            f"no official lists/ in {index.root}: using a seeded ({seed}) split stratified per breed, "
            f"{1 - test_fraction:.0%} train / {test_fraction:.0%} test"
        )
        train, test = stratified_split(index.samples, test_fraction, seed)
        official = False
    train, val = stratified_split(train, val_fraction, seed + 1)
    return Splits(
        _limit(train, limit_per_class, seed),
        _limit(val, limit_per_class, seed),
        _limit(test, limit_per_class, seed),
        official,
        notes,
    )


# ---------------------------------------------------------------- verify scan


def verify(index: DatasetIndex, on_progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Decode every image once; returns {relative path: reason} for the unreadable ones.

    Results are cached in ``<dataset>/.dogbreed-verify.json`` keyed by path, size and mtime, so later runs only
    decode new or changed files.
    """
    from dogbreed.imaging import ImageRejected, validate

    cache_path = index.root / VERIFY_CACHE
    try:
        cache = json.loads(read_regular_file(cache_path, 64 * 2**20))
    except (NotReadable, ValueError):
        cache = {}
    if not isinstance(cache, dict):  # a damaged or planted cache file counts for nothing
        cache = {}
    bad: dict[str, str] = {}
    fresh: dict[str, list] = {}
    total = len(index.samples)
    for i, sample in enumerate(index.samples, 1):
        path = index.images_dir / sample.path
        try:
            st = path.stat()
        except OSError as exc:
            bad[sample.path] = f"cannot read: {exc.strerror}"
            continue
        key = [st.st_size, st.st_mtime_ns]
        cached = cache.get(sample.path)
        if (
            isinstance(cached, list)
            and len(cached) == 3
            and cached[:2] == key
            and isinstance(cached[2], (str, type(None)))
        ):
            reason = cached[2]
        else:
            try:  # only regular files, never more than MAX_BYTES: a 20 GB sparse file is refused by its size
                validate(read_regular_file(path, MAX_BYTES))
                reason = None
            except (ImageRejected, NotReadable) as exc:
                reason = str(exc)
        fresh[sample.path] = [*key, reason]
        if reason:
            bad[sample.path] = reason
        if on_progress and (i % 64 == 0 or i == total):
            on_progress(i, total)
    try:
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(fresh))
        os.replace(tmp, cache_path)
    except OSError:
        pass  # a read-only dataset still trains; it just verifies again next time
    return bad


def info(root: Path, run_verify: bool = True, on_progress: Callable[[int, int], None] | None = None) -> dict:
    index = scan(root)
    lists = official_lists(root)
    counts = index.counts()
    report = {
        "dataset": str(root),
        "classes": len(index.classes),
        "images": len(index.samples),
        "official_split": lists is not None,
        "per_class": [
            {"wnid": b.wnid, "folder": b.folder, "name": b.name, "images": counts[b.wnid]} for b in index.classes
        ],
    }
    if lists is not None:
        report["official_train"], report["official_test"] = len(lists[0]), len(lists[1])
    if run_verify:
        bad = verify(index, on_progress)
        report["unreadable"] = [{"path": p, "reason": r} for p, r in sorted(bad.items())]
    return report


# ---------------------------------------------------------------- download

# Sizes and sha256 of Stanford's own archives, as published in TensorFlow Datasets' checksum list for
# stanford_dogs: the default download is checked against them before anything is extracted.
PUBLISHED: dict[str, tuple[int, str]] = {
    "images.tar": (793_579_520, "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58"),
    "lists.tar": (481_280, "34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c"),
    "annotation.tar": (21_852_160, "662ed36f707be6b195c2fda392d8e153e83af28cedc8e2134a649f198def30fd"),
}
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


def published_checksums(base_url: str) -> dict[str, tuple[int, str]] | None:
    """{archive: (size, sha256)} when ``base_url`` is Stanford's own; None for a custom URL (nothing to check)."""
    return PUBLISHED if base_url.rstrip("/") == STANFORD_URL.rstrip("/") else None


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


def _receive(
    url: str,
    part: Path,
    have: int,
    cap: int,
    limits: Limits,
    deadline: _Deadline,
    on_progress: Callable[[int, int | None], None],
) -> tuple[int, int | None] | None:
    """Ask for ``url`` from byte ``have`` on and write what comes to ``part``: (bytes in part, expected total), or
    None when the server answered a resume with bytes from another offset (``part`` is then discarded)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = deadline.opener().open(request, timeout=limits.stall_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing after byte `have`: the part is the whole file
            return have, have
        raise DogbreedError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if deadline.expired:
            raise _stopped(url, have, f"took longer than {limits.deadline_s:g} s") from None
        reason = getattr(exc, "reason", None) or exc
        raise DogbreedError(f"cannot download {url}: {reason}; check the connection or --url") from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if response.status == 206:
            span = _content_range(response.headers.get("Content-Range"))
            if span is None or span[0] != have:  # the bytes of another offset would corrupt the archive
                part.unlink(missing_ok=True)
                return None
            total: int | None = span[1]
        else:  # a whole file (a server that ignores Range sends this too): start over
            have, total = 0, length
        if total is not None and total > cap:
            part.unlink(missing_ok=True)
            raise DogbreedError(f"{url} is {total:,} bytes, more than the {cap:,} expected; not downloading it")
        done = _write_body(response, url, part, have, total, cap, limits, deadline, on_progress)
    if deadline.expired:
        raise _stopped(url, done, f"took longer than {limits.deadline_s:g} s")
    return done, total


def _write_body(
    response: http.client.HTTPResponse,
    url: str,
    part: Path,
    have: int,
    total: int | None,
    cap: int,
    limits: Limits,
    deadline: _Deadline,
    on_progress: Callable[[int, int | None], None],
) -> int:
    """Append the response body to ``part`` (which holds ``have`` bytes), never beyond ``cap`` bytes in all, and
    give up when less than ``limits.min_progress_bytes`` arrive in a ``limits.stall_s`` window. Returns the size
    of ``part``."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if have else os.O_TRUNC)
    done = have
    with os.fdopen(os.open(part, flags, 0o644), "wb") as fh:
        window_start, window_done = time.monotonic(), done
        try:
            while chunk := response.read1(1 << 20):  # whatever has arrived: a drip cannot block us in a read
                if done + len(chunk) > cap:
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise DogbreedError(f"{url} sent more than {cap:,} bytes; not an archive dogbreed expects")
                fh.write(chunk)
                done += len(chunk)
                on_progress(done, total)
                now = time.monotonic()
                if now - window_start >= limits.stall_s:
                    if done - window_done < limits.min_progress_bytes:
                        slow = f"under {limits.min_progress_bytes:,} bytes in {limits.stall_s:g} s"
                        raise _stopped(url, done, f"stalled ({slow})")
                    window_start, window_done = now, done
        except (http.client.HTTPException, OSError) as exc:  # a dropped connection, a socket timeout, a full disk
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise _stopped(url, done, f"could not be written to {part.parent}: the disk is full") from None
            if deadline.expired:
                raise _stopped(url, done, f"took longer than {limits.deadline_s:g} s") from None
            if isinstance(exc, TimeoutError):
                raise _stopped(url, done, f"stalled (nothing for {limits.stall_s:g} s)") from None
            raise _stopped(url, done, f"was interrupted ({exc})") from None
    return done


def _fetch(
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
        got = _receive(url, part, have, cap, limits, deadline, progress)
        if got is None:  # the server answered the resume wrongly: fetch the whole file once more
            got = _receive(url, part, 0, cap, limits, deadline, progress)
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


def _verify_published(archive: Path, size: int, sha256: str) -> None:
    """The archive must be byte for byte the one Stanford published; a file that is not is deleted."""
    actual = archive.stat().st_size
    problem = f"{actual:,} bytes instead of {size:,}" if actual != size else None
    if problem is None:
        digest = file_sha256(archive)
        if digest != sha256:
            problem = f"sha256 {digest[:12]}... instead of {sha256[:12]}..."
    if problem:
        archive.unlink(missing_ok=True)
        raise DogbreedError(
            f"{archive} is not Stanford's {archive.name} ({problem}); it was deleted: run the same command again to "
            "download it afresh"
        )


def _existing_archive(archive: Path) -> bool:
    try:
        st = archive.stat()  # a link to a copy downloaded elsewhere is fine
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise DogbreedError(f"{archive} is not a regular file; remove it and run the command again")
    return True


# ---------------------------------------------------------------- extraction


def _header_name(block: bytes) -> str:
    prefix, name = block[345:500].split(b"\0", 1)[0], block[:100].split(b"\0", 1)[0]
    joined = prefix + b"/" + name if prefix else name
    return joined.decode("utf-8", "replace")[:200]


def _check_tar(path: Path, limits: Limits | None = None) -> int:
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

    for member in tar:  # as many as _check_tar counted
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
    """Extract ``archive`` into ``dest`` after checking every member (see ``_check_tar`` and ``_member_problem``):
    regular files and folders only, each landing inside ``dest``, bounded in number and size. Files are written
    by us, never by tarfile. ``reserved`` are paths no member may take. Returns the number of members."""
    limits = limits or Limits()
    _check_tar(archive, limits)
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


def _extract_target(archive: Path, dest: Path, key: str) -> Path:
    """Stanford's lists.tar holds bare *.mat files: they belong in <dataset>/lists/."""
    if key != "lists":
        return dest
    with tarfile.open(archive, "r:") as tar:
        names = tar.getnames()
    return dest if all(n.startswith("lists/") or n == "lists" for n in names) else dest / "lists"


def _reserved(dest: Path) -> set[str]:
    """Our own files in the dataset folder, which no archive member may overwrite."""
    root = os.path.realpath(dest)
    names = {VERIFY_CACHE}
    for name in ARCHIVES.values():
        names.update({name, f"{name}.part", f".{name}.extracted"})
    return {os.path.join(root, n) for n in names}


def download(
    dest: Path,
    base_url: str = STANFORD_URL,
    *,
    annotations: bool = False,
    on_progress: Callable[[str, int, int | None], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    checksums: dict[str, tuple[int, str]] | None = None,
    limits: Limits | None = None,
) -> list[dict]:
    """Fetch, verify and extract the archives into ``dest``; archives already extracted are skipped (idempotent).

    ``checksums`` ({archive: (size, sha256)}) defaults to Stanford's published ones for Stanford's URL; a custom
    URL is not verified (``on_warning`` says so), only checked as a tar. ``limits`` bounds each download and
    extraction.
    """
    limits = limits or Limits()
    scheme = urllib.parse.urlsplit(base_url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DogbreedError(f"--url must be an http:// or https:// address, not {base_url!r}")
    expected = checksums if checksums is not None else published_checksums(base_url)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = ["images", "lists"] + (["annotation"] if annotations else [])
    report = []
    for key in wanted:
        name = ARCHIVES[key]
        marker = dest / f".{name}.extracted"
        if marker.exists():
            report.append({"archive": name, "status": "already extracted"})
            continue
        archive = dest / name
        published = (expected or {}).get(name)
        if not _existing_archive(archive):
            _fetch(base_url.rstrip("/") + "/" + name, archive, limits, published[0] if published else None, on_progress)
        if published:
            _verify_published(archive, *published)
        elif on_warning:
            on_warning(f"{name} from {base_url} is not checked against Stanford's published sha256 (custom --url)")
        _check_tar(archive, limits)
        count = safe_extract(archive, _extract_target(archive, dest, key), limits, _reserved(dest))
        marker.write_text(f"{count}\n")
        report.append({"archive": name, "status": "extracted", "members": count, "verified": bool(published)})
    return report
