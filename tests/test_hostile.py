"""Hostile input: what an attacker or a careless user feeds dogbreed, built here, and the promise each time.

The promise: bounded time and memory; nothing written outside the target; a one-line error (no traceback) that
names the file or id; the good items of a batch stored; the store intact (PRAGMA integrity_check and
foreign_key_check). Every input is made by the test itself: crafted tars (a symlink chain that defeats tarfile's
own filter on Python 3.11.7, sparse members, links), a 127.0.0.1 server that misbehaves (endless, dripping,
silent, lying about Range), FIFOs, /dev/zero links, non-UTF-8 and ESC names, crafted checkpoints, pictures that
decode huge under a memory ulimit, a read-only or full file system (a private mount namespace), a killed worker.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from dogbreed.datasets import stanford as dataset
from dogbreed.datasets.synthetic import make_synthetic
from dogbreed.errors import DogbreedError
from tests.conftest import make_checkpoint
from tests.images import encode, jpeg_bytes, picture, png_bomb, write
from tests.pausing import Gate
from tests.servers import Server

ESC_NAME = "evil\x1b[2J\x1b]0;pwned\x07[/][bold red]x"  # clears the screen, retitles it, breaks Rich markup


# ---------------------------------------------------------------- what every case asserts


def one_error_line(output: str, *needles: str) -> str:
    """The output holds exactly one 'Error:' line, no traceback, and the line names each needle."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def store_intact(db: Path) -> None:
    """integrity_check and foreign_key_check pass (a store that was never created is intact too)."""
    if not db.exists():
        return
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def runs_recorded(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


def no_terminal_escapes(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output, repr(output)


def dogbreed(*args, timeout: float = 60, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """``python -m dogbreed ARGS`` in a child process (for what could hang, or needs its own limits or mounts)."""
    cmd = [*(prefix or []), sys.executable, "-m", "dogbreed", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)


def bytes_read() -> int:
    """What this process has read so far (read(2) and friends, from the page cache too): a test of "never reads"
    that no machine's speed can fool."""
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def output_of(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


@cache
def namespaces_work() -> bool:
    """Private mount namespaces (unshare -rm): a read-only or full file system without touching the machine."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


def mounted(setup: str, listing: Path | None = None) -> list[str]:
    """A command prefix that runs the command in a private mount namespace after ``setup`` (mount commands); with
    ``listing``, what that folder holds afterwards (seen from inside) is printed as a last 'LEFT:' line."""
    if not namespaces_work():
        pytest.skip("no user/mount namespaces here (unshare -rm) to make a read-only or full file system")
    if listing is None:
        return ["unshare", "-rm", "sh", "-c", f'{setup} && exec "$0" "$@"']
    q = shlex.quote(str(listing))
    return ["unshare", "-rm", "sh", "-c", f'{setup} || exit 99; "$0" "$@"; rc=$?; echo "LEFT:$(ls -A {q})"; exit $rc']


def read_only(folder: Path, listing: bool = False) -> list[str]:
    q = shlex.quote(str(folder))
    return mounted(f"mount --bind {q} {q} && mount -o remount,bind,ro {q}", folder if listing else None)


def full_disk(folder: Path, size: str, listing: bool = False) -> list[str]:
    return mounted(f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}", folder if listing else None)


def unprivileged() -> list[str]:
    """Run as an ordinary user, so that file permissions apply (root reads everything)."""
    if os.geteuid() != 0:
        return []
    probe = ["unshare", "--map-user=1000", "--map-group=1000", "true"]
    if not shutil.which("unshare") or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("running as root without unshare --map-user: permissions cannot be tested")
    return probe[:-1]


# ---------------------------------------------------------------- archives: crafted tars

CHAIN_STEPS = "abcdefghijklmnop"


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o644
    return info, data


def tar_bytes(*members: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def symlink_chain_tar(escape: str) -> bytes:
    """CVE-2025-4517's shape: nested links whose resolved path overflows PATH_MAX, so os.path.realpath gives up and
    tarfile's 'data' filter (Python <= 3.11.12 / 3.12.10 / 3.13.3) believes the last link stays inside, then a
    file written through it. On this Python the stdlib filter alone lets this archive write to ``escape``."""
    comp = "d" * 247
    members, path = [], ""
    for step in CHAIN_STEPS:
        members.append(_member(os.path.join(path, comp), tarfile.DIRTYPE))
        members.append(_member(os.path.join(path, step), tarfile.SYMTYPE, link=comp))
        path = os.path.join(path, comp)
    linkpath = os.path.join(*CHAIN_STEPS, "l" * 254)
    members.append(_member(linkpath, tarfile.SYMTYPE, link="../" * len(CHAIN_STEPS)))
    members.append(_member("escape", tarfile.SYMTYPE, link=f"{linkpath}/{escape}"))
    members.append(_member("escape/pwned.txt", data=b"gotcha"))
    return tar_bytes(*members)


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def gnu_sparse_tar(name: str = "Images/n02085620-Chihuahua/huge.jpg", real_size: int = 20 * 10**9) -> bytes:
    """An old-GNU sparse member: 512 bytes stored, 20 GB once extracted ('S' header with one sparse extent)."""
    info = tarfile.TarInfo(name)
    info.size = 512
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[386:398], block[398:410] = b"%011o\0" % (real_size - 512), b"%011o\0" % 512  # one extent at the end
    block[483:495] = b"%011o\0" % real_size
    return _with_checksum(block) + b"\xff" * 512 + b"\0" * 1024


def pax_sparse_tar(real_size: int = 20 * 10**9) -> bytes:
    """A PAX 1.0 sparse member (what GNU tar --sparse --format=pax writes): a 51 KB file planting 20 GB."""
    info = tarfile.TarInfo("Images/n02085620-Chihuahua/GNUSparseFile.0/huge.jpg")
    sparse_map = b"1\n%d\n512\n" % (real_size - 512)
    data = sparse_map.ljust(512, b"\0") + b"\xff" * 512
    info.size = len(data)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "Images/n02085620-Chihuahua/huge.jpg",
        "GNU.sparse.realsize": str(real_size),
    }
    return tar_bytes((info, data))


def huge_pax_header_tar() -> bytes:
    info = tarfile.TarInfo("Images/a.jpg")
    info.pax_headers = {"comment": "x" * (3 << 20)}
    return tar_bytes((info, b""))


def device_member(kind: bytes) -> tuple:
    info, data = _member("Images/dev", kind)
    info.devmajor, info.devminor = 1, 3
    return info, data


REFUSED_MEMBERS = {
    "symlink inside": (tar_bytes(_member("Images/a.jpg", tarfile.SYMTYPE, link="b.jpg")), "symbolic link"),
    "symlink outside": (tar_bytes(_member("Images", tarfile.SYMTYPE, link="/tmp")), "symbolic link"),
    "hard link": (tar_bytes(_member("a", data=b"x"), _member("Images/b", tarfile.LNKTYPE, link="a")), "hard link"),
    "character device": (tar_bytes(device_member(tarfile.CHRTYPE)), "character device"),
    "block device": (tar_bytes(device_member(tarfile.BLKTYPE)), "block device"),
    "fifo": (tar_bytes(_member("Images/pipe", tarfile.FIFOTYPE)), "FIFO"),
    "gnu sparse 20 GB": (gnu_sparse_tar(), "sparse"),
    "pax sparse 20 GB": (pax_sparse_tar(), "sparse"),
    "absolute path": (tar_bytes(_member("/tmp/dogbreed-absolute.txt", data=b"x")), "absolute"),
    "dot-dot": (tar_bytes(_member("../escaped.txt", data=b"x")), ".."),
    "dot-dot inside": (tar_bytes(_member("Images/../../escaped.txt", data=b"x")), ".."),
    "huge pax header": (huge_pax_header_tar(), "header"),
}


def _entries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("case", sorted(REFUSED_MEMBERS))
def test_an_archive_with_anything_but_files_and_folders_is_refused_whole(tmp_path, case):
    data, reason = REFUSED_MEMBERS[case]
    archive = write(tmp_path / "images.tar", data)
    dest = tmp_path / "x" / "y" / "dest"
    with pytest.raises(DogbreedError, match="refusing to extract") as caught:
        dataset.safe_extract(archive, dest)
    assert reason in str(caught.value)
    assert _entries(tmp_path / "x") in ([], ["y"], ["y", "y/dest"])  # nothing extracted, nothing beside it
    assert not Path("/tmp/dogbreed-absolute.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_symlink_chain_that_defeats_tarfiles_filter_writes_nothing_anywhere(cli, tmp_path):
    """The issue's security case end to end: the crafted images.tar served over HTTP and run through
    'dataset download'."""
    dest = tmp_path / "a" / "dataset"
    outside = tmp_path / "outside"
    outside.mkdir()
    lists = tar_bytes(_member("train_list.mat", data=b"x"))
    with Server({"images.tar": symlink_chain_tar("../../outside"), "lists.tar": lists}) as srv:
        result = cli("dataset", "download", "--dataset", dest, "--url", srv.url, expect=1)
    one_error_line(result.output, "refusing to extract", "symbolic link")
    assert list(outside.iterdir()) == []
    assert {p.name for p in dest.iterdir()} == {"images.tar"}  # downloaded, refused, nothing extracted
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


LIMITS = dataset.Limits(max_members=20, max_total_bytes=10_000, max_member_bytes=4_000, max_header_bytes=64 * 1024)

BOUNDED = {
    "too many members": (tar_bytes(*(_member(f"Images/{i}.jpg") for i in range(25))), "members"),
    "too many bytes in all": (tar_bytes(*(_member(f"Images/{i}.jpg", data=b"x" * 3000) for i in range(4))), "in all"),
    "one member too big": (tar_bytes(_member("Images/big.jpg", data=b"x" * 5000)), "allowed for one file"),
    "pax size record": (tar_bytes(_member("Images/a.jpg", data=b"x")).replace(b"path=", b"size=", 1), "size"),
}


@pytest.mark.parametrize("case", sorted(BOUNDED))
def test_member_count_and_sizes_are_bounded(tmp_path, case):
    data, reason = BOUNDED[case]
    if case == "pax size record":  # a pax header that overrides a member's size (members beyond 8 GiB)
        info = tarfile.TarInfo("Images/a.jpg")
        info.pax_headers = {"size": "5"}
        data = tar_bytes((info, b"x" * 5))
    archive = write(tmp_path / "images.tar", data)
    with pytest.raises(DogbreedError, match="refusing to extract") as caught:
        dataset.safe_extract(archive, tmp_path / "dest", LIMITS)
    assert reason in str(caught.value)
    assert _entries(tmp_path / "dest") == []


@pytest.mark.parametrize(
    "name", ["images.tar", "lists.tar.part", ".images.tar.extracted", ".dogbreed-verify.json", "./images.tar"]
)
def test_a_member_may_not_overwrite_dogbreeds_own_files(tmp_path, name):
    archive = write(tmp_path / "dataset" / "images.tar", tar_bytes(_member(name, data=b"planted")))
    before = archive.read_bytes()
    with pytest.raises(DogbreedError, match="dogbreed keeps there"):
        dataset.safe_extract(archive, archive.parent, reserved=dataset._reserved(archive.parent))
    assert archive.read_bytes() == before


@pytest.mark.parametrize(
    "members, reason",
    [
        ([_member("Images/a", data=b"1"), _member("Images/a/b.jpg", data=b"2")], "which is a file"),
        ([_member("Images/a.jpg", data=b"1"), _member("Images/a.jpg", data=b"2")], "appears twice"),
        ([_member("Images/a", tarfile.DIRTYPE), _member("Images/a", data=b"2")], "appears twice"),
    ],
    ids=["file-then-folder", "duplicate-file", "folder-then-file"],
)
def test_conflicting_members_are_refused(tmp_path, members, reason):
    archive = write(tmp_path / "images.tar", tar_bytes(*members))
    with pytest.raises(DogbreedError, match=reason):
        dataset.safe_extract(archive, tmp_path / "dest")
    assert _entries(tmp_path / "dest") == []


def test_a_link_already_in_the_dataset_folder_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dataset"
    dest.mkdir()
    (dest / "Images").symlink_to(outside)
    archive = write(tmp_path / "images.tar", tar_bytes(_member("Images/a.jpg", data=b"x")))
    with pytest.raises(DogbreedError, match="outside"):
        dataset.safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_an_existing_file_is_replaced_not_written_through(tmp_path):
    """A hard link already in the dataset folder (to a file elsewhere) is unlinked, never written through."""
    precious = write(tmp_path / "precious.txt", b"keep me")
    dest = tmp_path / "dataset"
    (dest / "Images").mkdir(parents=True)
    os.link(precious, dest / "Images" / "a.jpg")
    archive = write(tmp_path / "images.tar", tar_bytes(_member("Images/a.jpg", data=b"new")))
    assert dataset.safe_extract(archive, dest) == 1
    assert (dest / "Images" / "a.jpg").read_bytes() == b"new" and precious.read_bytes() == b"keep me"


def test_a_compressed_archive_is_not_inflated(tmp_path):
    bomb = gzip.compress(tar_bytes(_member("Images/a.jpg", data=b"\0" * 5_000_000)), compresslevel=9)
    archive = write(tmp_path / "images.tar", bomb)
    with pytest.raises(DogbreedError, match="not a tar archive"):
        dataset.safe_extract(archive, tmp_path / "dest")


def test_a_well_formed_archive_extracts_exactly_its_files(tmp_path):
    files = {"Images/n02085620-Chihuahua/a.jpg": b"a" * 700, "Images/n02085620-Chihuahua/b.jpg": b"b"}
    members = [_member("Images", tarfile.DIRTYPE), _member("./", tarfile.DIRTYPE)]
    members += [_member(name, data=data) for name, data in files.items()]
    archive = write(tmp_path / "images.tar", tar_bytes(*members))
    dest = tmp_path / "dataset"
    assert dataset.safe_extract(archive, dest) == 3  # the folder and two files; "./" is the target itself
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == files


# ---------------------------------------------------------------- downloads: a misbehaving 127.0.0.1 server


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    """images.tar and lists.tar of a small synthetic dataset, laid out as Stanford ships them."""
    root = tmp_path_factory.mktemp("served") / "synthetic"
    make_synthetic(root, breeds=2, per_class=6, size=(40, 30), lists=True)
    images = [_member(f"Images/{p.parent.name}/{p.name}", data=p.read_bytes()) for p in sorted(root.rglob("*.jpg"))]
    lists = [_member(p.name, data=p.read_bytes()) for p in sorted((root / "lists").glob("*.mat"))]
    return {"images.tar": tar_bytes(*images), "lists.tar": tar_bytes(*lists)}


def sums(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()}


def test_the_default_download_is_checked_against_stanfords_published_sha256(cli, tmp_path):
    """No network needed: an images.tar already in the folder is what the default download would extract."""
    assert dataset.published_checksums(dataset.STANFORD_URL) == dataset.PUBLISHED
    assert dataset.PUBLISHED["images.tar"] == (
        793579520,
        "a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
    )
    assert dataset.published_checksums("http://127.0.0.1:1/mirror/") is None
    dest = tmp_path / "dataset"
    write(dest / "images.tar", tar_bytes(_member("Images/n02085620-Chihuahua/a.jpg", data=jpeg_bytes())))
    result = cli("dataset", "download", "--dataset", dest, expect=1)
    one_error_line(result.output, "not Stanford's images.tar", "bytes instead of 793,579,520", "deleted")
    assert _entries(dest) == []  # refused before extraction, and the impostor is gone


def test_a_server_file_that_fails_its_sha256_is_deleted_unextracted(tmp_path, archives):
    expected = sums(archives)
    expected["images.tar"] = (expected["images.tar"][0], "0" * 64)  # same size, other content
    with Server(archives) as srv, pytest.raises(DogbreedError, match="sha256"):
        dataset.download(tmp_path / "d", srv.url, checksums=expected)
    assert _entries(tmp_path / "d") == []


def test_verified_archives_extract_and_a_custom_url_is_flagged_unverified(cli, tmp_path, archives):
    with Server(archives) as srv:
        report = dataset.download(tmp_path / "a", srv.url, checksums=sums(archives))
        assert [r["verified"] for r in report] == [True, True]
        result = cli("dataset", "download", "--dataset", tmp_path / "b", "--url", srv.url)
    assert "not checked against Stanford's published sha256" in result.output
    assert len(dataset.scan(tmp_path / "b").samples) == 12


def test_an_endless_response_stops_at_the_size_limit(tmp_path):
    limits = dataset.Limits(max_download_bytes=4 << 20, stall_s=5)
    with Server({}, {"images.tar": "endless"}) as srv:
        with pytest.raises(DogbreedError, match="more than 4,194,304"):
            dataset.download(tmp_path / "d", srv.url, limits=limits)
        sent = srv.sent["images.tar"]
    # the client hung up by itself: one that read on would only have returned at the server's end, its cap
    assert sent < Server.ENDLESS_CAP
    assert _entries(tmp_path / "d") == []  # the oversized part is not kept


def test_an_announced_terabyte_is_refused_before_reading(tmp_path):
    with Server({}, {"images.tar": "liar"}) as srv, pytest.raises(DogbreedError, match="1,000,000,000,000 bytes"):
        dataset.download(tmp_path / "d", srv.url)
    assert _entries(tmp_path / "d") == []


@pytest.mark.parametrize("behaviour", ["drip", "silent"])
def test_a_dripping_or_silent_server_is_given_up_on_in_bounded_time(tmp_path, archives, behaviour):
    """1 byte / 0.2 s and 1 byte / 20 s: both end as one 'stalled' line; the part is kept for a resume."""
    limits = dataset.Limits(stall_s=1.0, min_progress_bytes=1024)
    started = time.monotonic()
    with Server(archives, {"images.tar": behaviour}) as srv, pytest.raises(DogbreedError, match="stalled") as caught:
        dataset.download(tmp_path / "d", srv.url, limits=limits)
    # "bounded": the 1 s window, not the 60 s default (nor the hours the server would drip); the slack is for a
    # busy machine, where waking up after the window can take a while
    assert time.monotonic() - started < 20
    assert "run the same command again to resume" in str(caught.value)


def test_headers_that_never_end_hit_the_deadline(cli, tmp_path):
    started = time.monotonic()
    with Server({}, {"images.tar": "header_drip"}) as srv:
        result = cli("dataset", "download", "--dataset", tmp_path / "d", "--url", srv.url, "--timeout", "2", expect=1)
    assert time.monotonic() - started < 30  # the 2 s deadline, not the server's end after 60 s (slack: busy CI)
    one_error_line(result.output, "took longer than 2 s")


def test_the_deadline_keeps_the_part_and_the_next_run_resumes(tmp_path, archives):
    """The server sends half the archive at once, then holds: the deadline (long enough for that half to arrive
    on a busy machine) ends the download part-way whatever the timing, and the next run resumes from the part."""
    limits = dataset.Limits(deadline_s=2)
    with Server(archives, {"images.tar": "half_then_hold"}) as srv:
        with pytest.raises(DogbreedError, match="took longer than 2 s"):
            dataset.download(tmp_path / "d", srv.url, limits=limits)
        part = tmp_path / "d" / "images.tar.part"
        have = part.stat().st_size
        assert 0 < have <= len(archives["images.tar"]) // 2
        srv.behaviour.clear()
        dataset.download(tmp_path / "d", srv.url, checksums=sums(archives))
    assert ("images.tar", f"bytes={have}-") in srv.requests
    assert len(dataset.scan(tmp_path / "d").samples) == 12


@pytest.mark.parametrize("behaviour", ["wrong_offset", "no_content_range", "ignores_range"])
def test_a_resume_answered_with_other_bytes_never_corrupts_the_archive(tmp_path, archives, behaviour):
    dest = tmp_path / "d"
    data = archives["images.tar"]
    write(dest / "images.tar.part", data[: len(data) // 3])
    with Server(archives, {"images.tar": behaviour}) as srv:
        dataset.download(dest, srv.url, checksums=sums(archives))  # sha256 checked: byte for byte the original
    assert any(rng for name, rng in srv.requests if name == "images.tar")  # it did try to resume
    assert len(dataset.scan(dest).samples) == 12


@pytest.mark.parametrize("url", ["file:///etc/", "ftp://127.0.0.1:9/", "redirect"])
def test_only_http_and_https_are_fetched(cli, tmp_path, url):
    with Server({}, {"images.tar": "to_file"}) as srv:
        result = cli(
            "dataset", "download", "--dataset", tmp_path / "d", "--url", srv.url if url == "redirect" else url, expect=1
        )
    one_error_line(result.output)
    assert not (tmp_path / "d" / "images.tar").exists()


def test_a_part_file_that_is_a_link_is_not_written_through(cli, tmp_path, archives):
    precious = write(tmp_path / "precious", b"keep")
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "images.tar.part").symlink_to(precious)
    with Server(archives) as srv:
        result = cli("dataset", "download", "--dataset", dest, "--url", srv.url, expect=1)
    one_error_line(result.output, "images.tar.part", "not a regular file")
    assert precious.read_bytes() == b"keep"


def test_a_download_onto_a_full_disk_is_one_line(tmp_path, archives):
    dest = tmp_path / "d"
    dest.mkdir()
    with Server(archives) as srv:
        proc = dogbreed("dataset", "download", "--dataset", dest, "--url", srv.url, prefix=full_disk(dest, "16k"))
    assert proc.returncode == 1
    one_error_line(output_of(proc), "the disk is full")


def test_an_archive_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    os.mkfifo(dest / "images.tar")
    proc = dogbreed("dataset", "download", "--dataset", dest, "--url", "http://127.0.0.1:9/", timeout=30)
    assert proc.returncode == 1
    one_error_line(output_of(proc), "not a regular file")


# ---------------------------------------------------------------- the dataset folder itself


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    make_synthetic(root, breeds=2, per_class=8, size=(40, 30), lists=True)
    return root


def test_the_verify_scan_never_reads_a_20gb_sparse_file(cli, small_dataset):
    folder = small_dataset / "Images" / "n02085620-Chihuahua"
    with open(folder / "huge.jpg", "wb") as fh:
        fh.truncate(20 * 2**30)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    write(small_dataset / dataset.VERIFY_CACHE, b'["planted", "cache"]')
    before = bytes_read()
    report = cli.json("dataset", "info", "--dataset", small_dataset)
    assert bytes_read() - before < 1 << 30  # counted, not timed: the 20 GB file and /dev/zero were not read
    assert report["images"] == 17  # the FIFO and the device are not pictures; the huge file is one, unreadable
    assert [(u["path"].split("/")[-1], "limit" in u["reason"]) for u in report["unreadable"]] == [("huge.jpg", True)]


def _mat_v5(elements: bytes) -> bytes:
    header = b"MATLAB 5.0 MAT-file, crafted".ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM"
    return header + elements


def _inflating_mat(size: int = 300 << 20) -> bytes:
    co = zlib.compressobj(9)
    body = b"".join(co.compress(b"\0" * (1 << 20)) for _ in range(size >> 20)) + co.flush()
    return _mat_v5(struct.pack("<II", 15, len(body)) + body)


def _savemat(**variables) -> bytes:
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables)
    return buf.getvalue()


def _cells(*entries) -> object:
    import numpy as np

    cells = np.empty((len(entries), 1), dtype=object)
    for i, entry in enumerate(entries):
        cells[i, 0] = entry
    return cells


BAD_LISTS = {
    "an empty cell": lambda np: _savemat(file_list=_cells(np.array(["n02085620-Chihuahua/x.jpg"]), np.array([]))),
    "numbers, not names": lambda np: _savemat(file_list=np.array([[1.0], [2.0]])),
    "no file_list": lambda np: _savemat(labels=np.array([[1]])),
    "not a MAT file": lambda np: b"train_list\n" * 10,
    "inflates to 300 MB": lambda np: _inflating_mat(),
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_a_broken_split_list_is_one_line_naming_it(cli, small_dataset, case):
    import numpy as np

    write(small_dataset / "lists" / "train_list.mat", BAD_LISTS[case](np))
    started = time.monotonic()
    result = cli("dataset", "info", "--dataset", small_dataset, "--no-verify", expect=1)
    assert time.monotonic() - started < 10
    one_error_line(result.output, "train_list.mat")


def test_two_folders_for_one_breed_are_refused_not_trained_twice(cli, small_dataset):
    twin = small_dataset / "Images" / "n02085620-chihuahua-copy"
    shutil.copytree(small_dataset / "Images" / "n02085620-Chihuahua", twin)
    for command in (["dataset", "info", "--no-verify"], ["train", "--no-pretrained", "--epochs", "1"]):
        result = cli(*command, "--dataset", small_dataset, expect=1)
        one_error_line(result.output, "two folders for Chihuahua", "n02085620-chihuahua-copy")
    assert runs_recorded(cli.db) == 0


# ---------------------------------------------------------------- upload: files that are not files


@pytest.fixture
def hostile_folder(tmp_path) -> tuple[Path, int]:
    """12 good pictures, plus a FIFO, a /dev/zero link, a symlink loop, a 20 GB sparse file, a non-UTF-8 name
    and an ESC name (both good pictures). Returns (folder, number of good pictures)."""
    folder = tmp_path / "upload"
    for i in range(12):
        write(folder / f"good{i:02d}.jpg", jpeg_bytes(seed=100 + i))
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "loop1.jpg").symlink_to("loop2.jpg")
    (folder / "loop2.jpg").symlink_to("loop1.jpg")
    with open(folder / "sparse.jpg", "wb") as fh:
        fh.truncate(20 * 2**30)
    write(Path(os.fsdecode(os.fsencode(folder) + b"/latin1-caf\xe9.jpg")), jpeg_bytes(seed=200))
    write(folder / f"{ESC_NAME.replace('/', '_')}.jpg", jpeg_bytes(seed=201))
    return folder, 14


def test_a_folder_of_traps_stores_every_good_picture_and_refuses_each_trap(home, hostile_folder):
    folder, good = hostile_folder
    started = time.monotonic()
    proc = dogbreed("upload", folder, timeout=60)
    assert time.monotonic() - started < 30
    out = output_of(proc)
    assert proc.returncode == 1 and "Traceback" not in out
    no_terminal_escapes(out)
    assert f"{good} new, 0 duplicate, 5 refused" in out
    for name, reason in [
        ("fifo.jpg", "not a regular file (a FIFO)"),
        ("zero.jpg", "not a regular file (a device)"),
        ("loop1.jpg", "symbolic links"),
        ("sparse.jpg", "over the 100 MB limit"),
    ]:
        assert any(name in line and reason in line for line in out.splitlines()), (name, out)
    db = home / "dogbreed.db"
    names = [r[0] for r in sqlite3.connect(db).execute("SELECT filename FROM images")]
    assert len(names) == good and "latin1-caf\ufffd.jpg" in names
    store_intact(db)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-to-dev-zero", "dev-null"])
def test_a_special_file_named_explicitly_is_not_a_regular_file(home, tmp_path, kind):
    path = {"dev-zero": Path("/dev/zero"), "dev-null": Path("/dev/null")}.get(kind, tmp_path / "x.jpg")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    proc = dogbreed("upload", path, timeout=30)
    out = output_of(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "not a regular file" in out and "no such file" not in out


def test_predict_of_a_fifo_refuses_it_and_ends(home, tmp_path, checkpoint):
    os.mkfifo(tmp_path / "photo.jpg")
    proc = dogbreed("predict", tmp_path / "photo.jpg", "-c", checkpoint, "-w", "0", timeout=120)
    out = output_of(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "not a regular file (a FIFO)" in out and "nothing to predict" in out


def test_unreadable_folders_and_files_are_refusals_and_the_rest_is_stored(home, tmp_path):
    prefix = unprivileged()
    folder = tmp_path / "photos"
    for i in range(3):
        write(folder / f"ok{i}.jpg", jpeg_bytes(seed=300 + i))
    write(folder / "locked" / "hidden.jpg", jpeg_bytes(seed=310))
    write(folder / "secret.jpg", jpeg_bytes(seed=311))
    write(folder / "sealed" / "inside.jpg", jpeg_bytes(seed=312))
    (folder / "locked").chmod(0o000)
    (folder / "secret.jpg").chmod(0o000)
    (folder / "sealed").chmod(0o600)  # listable names, no search permission
    try:
        proc = dogbreed("upload", folder, prefix=prefix, timeout=60)
    finally:
        for p in ("locked", "sealed", "secret.jpg"):
            (folder / p).chmod(0o755)
    out = output_of(proc)
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert "3 new, 0 duplicate" in out
    assert any("locked" in line and "cannot list folder" in line for line in out.splitlines()), out
    assert any("secret.jpg" in line and "Permission denied" in line for line in out.splitlines()), out
    store_intact(home / "dogbreed.db")


def test_an_empty_path_argument_is_refused_not_read_as_the_current_folder(cli, tmp_path, monkeypatch):
    write(tmp_path / "cwd" / "private.jpg", jpeg_bytes())
    monkeypatch.chdir(tmp_path / "cwd")
    result = cli("upload", "", " ", "--json", expect=1)
    assert [r["reason"] for r in json.loads(result.stdout)["results"]] == [
        "an empty path names nothing (an unset variable?)"
    ] * 2
    assert cli.sql("SELECT COUNT(*) FROM images") == [(0,)]


def test_non_utf8_dataset_and_checkpoint_paths_are_one_line_not_a_traceback(cli, tmp_path, checkpoint):
    """Linux names may be any bytes; the store keeps text. Training from such a folder or predicting with such a
    checkpoint says so in one line, and records nothing half-way."""
    data = Path(os.fsdecode(os.fsencode(tmp_path) + b"/donn\xe9es"))
    make_synthetic(data, breeds=2, per_class=6, size=(40, 30))
    result = cli("train", "--dataset", data, *TINY_TRAIN, expect=1)
    one_error_line(result.output, "not valid UTF-8", "donn\ufffdes")
    assert runs_recorded(cli.db) == 0
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/mod\xe8le.pt"))
    shutil.copy(checkpoint, odd)
    result = cli("predict", write(tmp_path / "a.jpg", jpeg_bytes()), "-c", odd, "-w", "0", expect=1)
    one_error_line(result.output, "not valid UTF-8")
    assert cli.sql("SELECT COUNT(*) FROM jobs") == [(0,)]
    store_intact(cli.db)


def test_a_non_utf8_breed_folder_with_label_from_folder_is_one_refusal(cli, tmp_path):
    folder = tmp_path / "Images"
    write(folder / "n02085620-Chihuahua" / "a.jpg", jpeg_bytes(seed=1))
    write(Path(os.fsdecode(os.fsencode(folder) + b"/n0208\xff-Odd/b.jpg")), jpeg_bytes(seed=2))
    result = cli("upload", folder, "--label-from-folder", "--json", expect=1)
    statuses = sorted((r["status"], r["reason"] or "") for r in json.loads(result.stdout)["results"])
    assert statuses[0][0] == "new" and statuses[1][0] == "refused" and "not a Stanford breed folder" in statuses[1][1]


def _cut_with_end_marker(data: bytes) -> bytes:
    return data[: len(data) // 3] + b"\xff\xd9"


def _claims_huge(data: bytes) -> bytes:
    """A baseline JPEG whose frame header claims 14000x14000 over 80x60 of real data."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", 14000, 14000) + data[sof + 9 :]


def _progressive_over_the_limit() -> bytes:
    from PIL import Image

    return encode(Image.new("L", (8200, 8200), 90), "JPEG", progressive=True, quality=30)


def _rgba_png(width: int, height: int) -> bytes:
    """A valid RGBA PNG of any size built row by row (a 14000x14000 one is 786 MB decoded, 0.8 MB on disk)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    co = zlib.compressobj(9)
    row = b"\0" + b"\x80\x40\x20\x80" * width
    body = b"".join(co.compress(row) for _ in range(height)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


BAD_PICTURES = {
    "jpeg cut to a third, end marker appended": (lambda: _cut_with_end_marker(jpeg_bytes((320, 240))), "truncated"),
    "jpeg header claiming 14000x14000": (lambda: _claims_huge(jpeg_bytes((80, 60))), "truncated"),
    "progressive jpeg over 64 MP": (_progressive_over_the_limit, "progressive JPEG"),
    "png header claiming 30000x30000": (png_bomb, "pixels"),
    "14000x14000 rgba png": (lambda: _rgba_png(14000, 14000), "pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_PICTURES))
def test_pictures_that_lie_about_their_size_are_refused_cheaply(cli, tmp_path, case):
    make, reason = BAD_PICTURES[case]
    path = write(tmp_path / "bad.img", make())
    result = cli("upload", path, "--json", expect=1)
    item = json.loads(result.stdout)["results"][0]
    assert item["status"] == "refused" and reason in item["reason"], item
    assert cli.sql("SELECT COUNT(*) FROM images") == [(0,)]


# ---------------------------------------------------------------- memory: big pictures under an address-space limit

_LIMITED = """
import atexit, resource, runpy, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def report():
    status = open("/proc/self/status").read()
    sys.stderr.write("VMPEAK %s\\n" % status.split("VmPeak:")[1].split()[0])
atexit.register(report)
sys.argv = ["dogbreed"] + sys.argv[2:]
runpy.run_module("dogbreed", run_name="__main__")
"""


def limited(limit: int, *args) -> tuple[subprocess.CompletedProcess, int]:
    """``dogbreed ARGS`` under RLIMIT_AS = ``limit`` bytes (0: none); (process, its peak address space in bytes)."""
    cmd = [sys.executable, "-c", _LIMITED, str(limit), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    peaks = [int(line.split()[1]) * 1024 for line in proc.stderr.splitlines() if line.startswith("VMPEAK")]
    return proc, (peaks[-1] if peaks else 0)


BIG_PICTURE_BUDGET = 1 << 30  # address space a picture may add to a command, whatever it claims


@pytest.fixture(scope="module")
def big_pictures(tmp_path_factory) -> dict[str, Path]:
    """The largest pictures dogbreed accepts, in their costliest shapes: 64 MP RGBA PNG square and 64,000,000 x 1
    (a row of 256 MB), and a 64 MP progressive JPEG without chroma subsampling (coefficients kept whole)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("big")
    progressive = encode(Image.new("RGB", (8000, 8000), (90, 60, 30)), "JPEG", progressive=True, subsampling=0)
    return {
        "small.png": write(folder / "small.png", encode(picture((64, 48), mode="RGBA"), "PNG")),
        "square.png": write(folder / "square.png", _rgba_png(8000, 8000)),
        "wide.png": write(folder / "wide.png", _rgba_png(64_000_000, 1)),
        "progressive.jpg": write(folder / "progressive.jpg", progressive),
    }


def test_predict_and_view_of_the_biggest_pictures_stay_within_a_memory_budget(home, big_pictures, checkpoint):
    """Under RLIMIT_AS: each command's peak with a 64x48 picture is the baseline (torch alone maps ~3 GB); the
    biggest accepted pictures may add at most BIG_PICTURE_BUDGET. Before the fixes one 14000x14000 PNG took
    5.5 GB in predict and 11.4 GB in view."""
    small = big_pictures["small.png"]
    big = [big_pictures[k] for k in ("square.png", "wide.png", "progressive.jpg")]
    base_proc, predict_base = limited(0, "predict", small, "-c", checkpoint, "-w", "0", "-q")
    assert base_proc.returncode == 0, base_proc.stderr
    proc, peak = limited(predict_base + BIG_PICTURE_BUDGET, "predict", *big, "-c", checkpoint, "-w", "0", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout)
    assert outcome["done"] == 3 and outcome["failed"] == 0
    _, view_base = limited(0, "view", "1", "-o", home / "v1.png")
    assert view_base > 0
    for image_id in (2, 3, 4):
        proc, peak = limited(view_base + BIG_PICTURE_BUDGET, "view", image_id, "-o", home / f"v{image_id}.png")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (home / f"v{image_id}.png").stat().st_size > 0
    store_intact(home / "dogbreed.db")


# ---------------------------------------------------------------- untrusted text on the terminal


def test_esc_sequences_and_markup_in_names_never_reach_the_terminal(cli, tmp_path, checkpoint):
    from dogbreed.store import connect
    from dogbreed.store import runs as run_rows

    folder = tmp_path / "evil"
    write(folder / f"{ESC_NAME.replace('/', '_')}.jpg", jpeg_bytes(seed=400))
    evil_checkpoint = tmp_path / f"{ESC_NAME.replace('/', '_')}.pt"
    shutil.copy(checkpoint, evil_checkpoint)
    outputs = [cli("upload", folder).output]
    outputs.append(cli("upload", write(tmp_path / "b.jpg", jpeg_bytes(seed=401)), "--filename", ESC_NAME).output)
    outputs.append(cli("predict", "--all", "-c", evil_checkpoint, "-w", "0").output)
    conn = connect(cli.db)
    run_id = run_rows.start_run(
        conn,
        name=ESC_NAME,
        model="resnet18",
        mode="extractor",
        device="cpu",
        dataset=f"/data/{ESC_NAME}",
        params={},
        num_classes=2,
    )
    run_rows.update_run(conn, run_id, status="failed", error=ESC_NAME, checkpoint_path=f"/ck/{ESC_NAME}.pt")
    conn.close()
    for args in (
        ["list"],
        ["list", "--csv"],
        ["show", "1"],
        ["show", "2"],
        ["tasks"],
        ["tasks", "1"],
        ["stats"],
        ["stats", str(run_id)],
        ["stats", "--csv"],
        ["models"],
    ):
        outputs.append(cli(*args).output)
    for output in outputs:
        no_terminal_escapes(output)
    assert any("[/][bold red]x" in output for output in outputs)  # markup printed literally, not interpreted


def test_csv_output_never_hands_a_spreadsheet_a_formula(cli, tmp_path):
    for i, name in enumerate(['=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)", "plain.jpg"]):
        cli("upload", write(tmp_path / f"{i}.jpg", jpeg_bytes(seed=700 + i)), "--filename", name)
    import csv

    rows = list(csv.DictReader(io.StringIO(cli("list", "--csv").stdout)))
    assert [r["filename"] for r in rows] == ['\'=HYPERLINK("http://evil")', "'+1+1", "'-2+3", "'@SUM(A1)", "plain.jpg"]
    assert [r["filename"] for r in cli.json("list")][0] == '=HYPERLINK("http://evil")'  # JSON keeps the data as is


# ---------------------------------------------------------------- the store file


def _dev_null_companions() -> set[str]:
    return {p for p in ("/dev/null-journal", "/dev/null-wal", "/dev/null-shm") if os.path.exists(p)}


def test_db_dev_null_creates_nothing(cli, tmp_path):
    before = _dev_null_companions()
    from dogbreed.cli import app

    for args in (["list"], ["upload", write(tmp_path / "a.jpg", jpeg_bytes())], ["stats"]):
        result = cli.runner.invoke(app, ["--db", "/dev/null", *map(str, args)], catch_exceptions=False)
        assert result.exit_code == 1
        one_error_line(result.output, "/dev/null", "not a regular file")
    assert _dev_null_companions() == before
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_db_that_is_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "store.db")
    proc = dogbreed("--db", tmp_path / "store.db", "list", timeout=30)
    assert proc.returncode == 1
    one_error_line(output_of(proc), "not a regular file")


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_someone_elses_sqlite_file_is_left_byte_for_byte_alone(tmp_path, journal):
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.execute("INSERT INTO accounts (owner) VALUES ('alice')")
    conn.commit()
    conn.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for args in (["list"], ["stats"], ["upload", tmp_path / "none.jpg"]):
        proc = dogbreed("--db", path, *args, timeout=30)
        assert proc.returncode == 1
        one_error_line(output_of(proc), "not a dogbreed store", "accounts")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_read_only_or_full_file_system_is_one_line_without_blaming_the_file(home, tmp_path):
    folder = tmp_path / "stores"
    folder.mkdir()
    proc = dogbreed("--db", folder / "new.db", "list", prefix=read_only(folder))
    line = one_error_line(output_of(proc), "new.db")
    assert proc.returncode == 1 and "dogbreed database" not in line and "not writable" in line
    existing = folder / "existing.db"
    assert dogbreed("--db", existing, "list").returncode == 0
    proc = dogbreed("--db", existing, "upload", write(tmp_path / "a.jpg", jpeg_bytes()), prefix=read_only(folder))
    line = one_error_line(output_of(proc), "existing.db")
    assert "read-only" in line and "dogbreed database" not in line
    from PIL import Image

    photos = tmp_path / "photos"
    noise = random.Random(7)
    for i in range(20):
        write(photos / f"{i}.png", encode(Image.frombytes("RGB", (100, 100), noise.randbytes(30000)), "PNG"))
    full = tmp_path / "full"
    full.mkdir()
    proc = dogbreed("--db", full / "store.db", "upload", photos, prefix=full_disk(full, "256k"))
    line = one_error_line(output_of(proc), "full")
    assert proc.returncode == 1 and "dogbreed database" not in line


def test_a_store_name_with_uri_characters_is_that_file_and_no_other(tmp_path):
    """'#' and '?' in --db are part of the file name (an unquoted SQLite URI would open 'x' instead)."""
    decoy = write(tmp_path / "x", b"someone else's file")
    odd = tmp_path / "x#frag?mode=rw.db"
    assert dogbreed("--db", odd, "upload", write(tmp_path / "a.jpg", jpeg_bytes())).returncode == 0
    proc = dogbreed("--db", odd, "list", "--json")
    assert proc.returncode == 0 and [r["filename"] for r in json.loads(proc.stdout)] == ["a.jpg"]
    assert decoy.read_bytes() == b"someone else's file"
    store_intact(odd)


BIG = str(2**63)


@pytest.mark.parametrize(
    "args",
    [
        ["show", BIG],
        ["list", "--offset", BIG],
        ["list", "--after", str(2**64)],
        ["delete", "1", BIG],
        ["tasks", BIG],
        ["stats", BIG],
        ["view", BIG],
        ["predict", "--id", BIG],
        ["predict", "--run", BIG, "--id", "1"],
        ["models", "--default", f"run:{2**70}"],
        ["show", "-1"],
        ["delete", "-5"],
    ],
    ids=lambda a: " ".join(a)[:30],
)
def test_ids_and_offsets_beyond_sqlite_integers_are_refused_in_one_message(cli, args):
    result = cli(*args, expect=None)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    said = ("is not in the range", "too large", "No such option")
    assert any(s in result.output for s in said), result.output
    store_intact(cli.db)


# ---------------------------------------------------------------- crafted checkpoints and weights


@pytest.fixture(scope="module")
def good_payload(tmp_path_factory) -> dict:
    import torch

    path = make_checkpoint(tmp_path_factory.mktemp("payload") / "good.pt", seed=3)
    return torch.load(path, weights_only=True)


def _meta(payload: dict, **changes) -> dict:
    import copy

    crafted = copy.deepcopy(payload)
    for key, value in changes.items():
        if value is ...:
            crafted["meta"].pop(key)
        else:
            crafted["meta"][key] = value
    return crafted


def _state(payload: dict, change) -> dict:
    crafted = dict(payload)
    crafted["state_dict"] = change(dict(payload["state_dict"]))
    return crafted


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dogbreed-pwned",))


def _crafted_checkpoints(payload: dict) -> dict[str, tuple[Callable[[], object], str]]:
    """name -> (what to write, made on demand, and the words the refusal must say)."""
    import torch

    first = next(iter(payload["state_dict"]))
    return {
        "zero bytes": (lambda: b"", "empty"),
        "a text file": (lambda: b"not a checkpoint at all\n", "text file"),
        "a jpeg": (lambda: jpeg_bytes(), "JPEG"),
        "a list": (lambda: [1, 2, 3], "not a dogbreed checkpoint"),
        "a tensor": (lambda: torch.zeros(3), "not a dogbreed checkpoint"),
        "a plain state dict": (lambda: payload["state_dict"], "plain state dict"),
        "a pickled object": (lambda: {**payload, "extra": _Evil()}, "pickled Python objects"),
        "meta is a list": (lambda: {**payload, "meta": [1]}, "no metadata"),
        "no arch": (lambda: _meta(payload, arch=...), "'arch' is missing"),
        "arch is a number": (lambda: _meta(payload, arch=5), "'arch'"),
        "arch is code": (lambda: _meta(payload, arch="__import__('os').system('id')"), "'arch'"),
        "unknown arch": (lambda: _meta(payload, arch="resnet9000"), "unknown model"),
        "bad mode": (lambda: _meta(payload, mode="root"), "'mode'"),
        "classes a string": (lambda: _meta(payload, classes="n02085620"), "'classes'"),
        "classes not pairs": (lambda: _meta(payload, classes=[["n02085620", 1], ["n02085782"]]), "'classes'"),
        "classes unknown": (lambda: _meta(payload, classes=[["n00000000", "x"], ["n02085782", "y"]]), "'n00000000'"),
        "classes twice": (lambda: _meta(payload, classes=[["n02085620", "a"]] * 120), "twice"),
        "image_size 30000": (lambda: _meta(payload, image_size=30000), "'image_size'"),
        "image_size true": (lambda: _meta(payload, image_size=True), "'image_size'"),
        "image_size text": (lambda: _meta(payload, image_size="224"), "'image_size'"),
        "resize_size 1e9": (lambda: _meta(payload, resize_size=10**9), "'resize_size'"),
        "mean nan": (lambda: _meta(payload, mean=[float("nan"), 0.5, 0.5]), "'mean'"),
        "std zero": (lambda: _meta(payload, std=[0.0, 1.0, 1.0]), "'std'"),
        "std two values": (lambda: _meta(payload, std=[1.0, 1.0]), "'std'"),
        "interpolation unknown": (lambda: _meta(payload, interpolation="lanczos"), "'interpolation'"),
        "metrics a list": (lambda: _meta(payload, metrics=[1]), "'metrics'"),
        "run_id text": (lambda: _meta(payload, run_id="1; DROP TABLE runs"), "'run_id'"),
        "imagenet_head without its layer": (lambda: _meta(payload, imagenet_head=True), "missing key"),
        "newer version": (lambda: {**payload, "version": 99}, "newer dogbreed"),
        "version text": (lambda: {**payload, "version": "2"}, "newer dogbreed"),
        "state_dict a list": (lambda: {**payload, "state_dict": [1]}, "no usable weights"),
        "state_dict with a number": (lambda: _state(payload, lambda s: {**s, "x": 1}), "no usable weights"),
        "state_dict missing a key": (
            lambda: _state(payload, lambda s: {k: v for k, v in s.items() if k != first}),
            "missing",
        ),
        "state_dict extra key": (lambda: _state(payload, lambda s: {**s, "evil.weight": torch.zeros(1)}), "unexpected"),
        "state_dict wrong shape": (lambda: _state(payload, lambda s: {**s, first: s[first][:1]}), "shape"),
        "state_dict integers": (
            lambda: _state(
                payload, lambda s: {k: v.to(torch.int64) if v.is_floating_point() else v for k, v in s.items()}
            ),
            "wrong kind",
        ),
        "state_dict complex": (
            lambda: _state(
                payload, lambda s: {k: v.to(torch.complex64) if v.is_floating_point() else v for k, v in s.items()}
            ),
            "wrong kind",
        ),
    }


def _write_crafted(path: Path, content: object) -> Path:
    import torch

    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


CRAFTED_NAMES = sorted(_crafted_checkpoints({"state_dict": {"w": None}}))


@pytest.mark.parametrize("case", CRAFTED_NAMES)
def test_a_crafted_checkpoint_is_one_line_and_leaves_no_job_behind(cli, tmp_path, good_payload, case):
    make, reason = _crafted_checkpoints(good_payload)[case]
    path = _write_crafted(tmp_path / "crafted.pt", make())
    cli("upload", write(tmp_path / "a.jpg", jpeg_bytes()))
    result = cli("predict", "--id", "1", "--checkpoint", path, "-w", "0", expect=1)
    one_error_line(result.output, reason)
    assert cli.sql("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')") == [(0,)]
    assert not Path("/tmp/dogbreed-pwned").exists()
    result = cli("models", "--default", path, expect=1)  # nor can it be pinned as the default
    one_error_line(result.output)
    assert cli.sql("SELECT COUNT(*) FROM settings") == [(0,)]
    store_intact(cli.db)


def _deflated(path: Path) -> Path:
    """``path`` rewritten with every zip entry deflated: what torch.save never writes, and what makes a 70 KB file
    allocate 64 MB (or gigabytes) inside torch.load."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    bomb = path.with_name("bomb.pt")
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for name, data in entries:
            target.writestr(name, data)
    return bomb


@pytest.mark.parametrize("flag", ["--checkpoint", "--weights"])
def test_a_checkpoint_that_inflates_inside_torch_load_is_refused(cli, tmp_path, good_payload, flag):
    import torch

    honest = tmp_path / "honest.pt"
    if flag == "--checkpoint":
        torch.save({**good_payload, "padding": torch.zeros(16 << 20)}, honest)
    else:
        torch.save({"fc.weight": torch.zeros(16 << 20)}, honest)
    bomb = _deflated(honest)
    assert honest.stat().st_size - bomb.stat().st_size > 60 << 20  # 64 MB of tensor from a few kilobytes
    model = ["--checkpoint", bomb] if flag == "--checkpoint" else ["--model", "resnet18", "--weights", bomb]
    result = cli("predict", write(tmp_path / "a.jpg", jpeg_bytes()), *model, expect=1)
    one_error_line(result.output, "compressed data")


def test_the_pickle_refusal_is_a_whole_sentence_that_never_suggests_weights_only_false(cli, tmp_path, good_payload):
    path = _write_crafted(tmp_path / "pickled.pt", {**good_payload, "extra": _Evil()})
    line = one_error_line(cli("predict", "x.jpg", "-c", path, expect=1).output)
    assert line.rstrip().endswith("use a plain state dict or a dogbreed checkpoint")
    assert "weights_only" not in line and "False" not in line


def test_half_and_double_precision_weights_are_cast_not_refused(cli, tmp_path, good_payload):
    import torch

    for dtype in (torch.float16, torch.float64):
        crafted = _state(
            good_payload, lambda s, d=dtype: {k: v.to(d) if v.is_floating_point() else v for k, v in s.items()}
        )
        path = _write_crafted(tmp_path / f"{dtype}.pt".replace("torch.", ""), crafted)
        out = cli.json("predict", write(tmp_path / "a.jpg", jpeg_bytes()), "-c", path, "-w", "0")
        assert out["done"] == 1 and out["failed"] == 0


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty"),
        ("list", "holds a list"),
        ("tensor", "holds a Tensor"),
        ("pickle", "pickled Python objects"),
        ("checkpoint", "dogbreed checkpoint"),
        ("integers", "wrong kind"),
    ],
    ids=["zero", "list", "tensor", "pickle", "checkpoint", "integers"],
)
def test_crafted_weights_files_are_one_line(cli, tmp_path, good_payload, imagenet_weights, content, reason):
    import torch

    made = {
        "list": [1, 2],
        "tensor": torch.ones(2),
        "pickle": {"fc.weight": torch.zeros(1), "x": _Evil()},
        "checkpoint": good_payload,
        "integers": {k: v.to(torch.int32) if v.is_floating_point() else v for k, v in imagenet_weights.items()},
    }
    path = _write_crafted(tmp_path / "w.pth", content if isinstance(content, bytes) else made[content])
    result = cli("predict", write(tmp_path / "a.jpg", jpeg_bytes()), "--model", "resnet18", "--weights", path, expect=1)
    one_error_line(result.output, reason)


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory) -> dict:
    import torch

    from tests.conftest import imagenet_state_dict

    return torch.load(imagenet_state_dict(tmp_path_factory.mktemp("inet") / "w.pth", 207), weights_only=True)


def test_a_model_that_outputs_nan_fails_its_jobs_cleanly(cli, tmp_path, good_payload):
    import torch

    crafted = _state(
        good_payload,
        lambda s: {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in s.items()},
    )
    path = _write_crafted(tmp_path / "nan.pt", crafted)
    folder = tmp_path / "photos"
    for i in range(3):
        write(folder / f"{i}.jpg", jpeg_bytes(seed=500 + i))
    result = cli("predict", folder, "-c", path, "-w", "0", "--json", expect=1)
    out = json.loads(result.stdout)
    assert out["done"] == 0 and out["failed"] == 3
    assert all("NaN" in r["error"] for r in out["results"])
    assert cli.sql("SELECT status, COUNT(*) FROM jobs GROUP BY status") == [("failed", 3)]
    assert cli.sql("SELECT COUNT(*) FROM predictions") == [(0,)]
    store_intact(cli.db)


def test_the_background_worker_fails_jobs_whose_model_cannot_load(cli, tmp_path, checkpoint):
    from dogbreed.models import sources
    from dogbreed.store import connect
    from dogbreed.store import jobs as job_rows

    cli("upload", write(tmp_path / "a.jpg", jpeg_bytes()), write(tmp_path / "b.jpg", jpeg_bytes(seed=5)))
    broken = shutil.copy(checkpoint, tmp_path / "soon-broken.pt")
    source = sources.from_checkpoint(broken)
    conn = connect(cli.db)
    job_ids = job_rows.plan(conn, [1, 2], source.identity, only_missing=False)
    conn.close()
    Path(broken).write_bytes(b"truncated")
    cmd = [sys.executable, "-m", "dogbreed.worker", "--db", str(cli.db), "--source", source.to_json()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    rows = cli.sql("SELECT id, status, error FROM jobs ORDER BY id")
    assert [r[:2] for r in rows] == [(job_ids[0], "failed"), (job_ids[1], "failed")]
    assert all("could not be loaded" in r[2] for r in rows)


# ---------------------------------------------------------------- processes: deletes, kills, dead owners


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmdline = fh.read()
            except OSError:
                continue
            if int(fields[1]) == pid and b"resource_tracker" not in cmdline:
                kids.append(int(entry))
    return kids


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory) -> Path:
    """A model slow enough (192 px inputs) that a run lasts long enough to be interfered with."""
    return make_checkpoint(tmp_path_factory.mktemp("slow") / "slow.pt", image_size=192)


@pytest.fixture
def many_uploaded(home, tmp_path) -> Path:
    folder = tmp_path / "many"
    for i in range(64):
        write(folder / f"{i:03d}.jpg", jpeg_bytes(size=(160, 120), seed=600 + i))
    assert dogbreed("upload", folder, "-q").returncode == 0
    return home / "dogbreed.db"


def _paused_predict(db: Path, checkpoint: Path, gate: Gate, *args: str, batch: int) -> tuple[subprocess.Popen, int]:
    """``predict --all`` in its own session, held at its pause point once its first batch is recorded (its next
    batches claimed and in flight, the rest queued); returns (process, jobs done so far)."""
    cmd = [sys.executable, "-m", "dogbreed", "predict", "--all", "-c", str(checkpoint), "-b", str(batch), *args]
    proc = gate.start(cmd)
    gate.wait(proc)
    conn = sqlite3.connect(db, timeout=60)
    done = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    conn.close()
    assert done >= batch
    return proc, done


def _images_by_job_status(conn: sqlite3.Connection, after_job: int) -> dict[str, list[int]]:
    """{status: image ids} of the jobs numbered above ``after_job`` (one run's)."""
    by: dict[str, list[int]] = {}
    for image_id, status in conn.execute("SELECT image_id, status FROM jobs WHERE id > ? ORDER BY id", (after_job,)):
        by.setdefault(status, []).append(image_id)
    return by


def _last_job(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
    finally:
        conn.close()


def test_images_deleted_while_predict_runs_are_dropped_and_the_rest_finish(many_uploaded, slow_checkpoint, gate):
    """Deletes land while the run holds claimed batches (paused after its first record, so certainly mid-run),
    then more while it claims, predicts and records again."""
    db = many_uploaded
    for trial in range(2):
        gate.arm()
        before = _last_job(db)
        proc, _ = _paused_predict(db, slow_checkpoint, gate, "-w", "2", "-q", batch=4)
        conn = sqlite3.connect(db, timeout=60)
        conn.execute("PRAGMA foreign_keys = ON")
        ids = [r[0] for r in conn.execute("SELECT id FROM images")]
        random.Random(trial).shuffle(ids)
        jobs = _images_by_job_status(conn, before)
        paused = [jobs["done"][0], *jobs["running"][:2], jobs["queued"][-1]]  # recorded, in flight, still queued
        for image_id in paused:
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            conn.commit()
        assert proc.poll() is None
        gate.open()
        for image_id in [i for i in ids if i not in paused][:8]:  # while it runs, or after: both must hold
            conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
            conn.commit()
            time.sleep(0.01)
        conn.close()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert "Traceback" not in out + err and "FOREIGN KEY" not in out + err
        store_intact(db)
        check = sqlite3.connect(db)
        left = check.execute("SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done')").fetchone()[0]
        unpredicted = check.execute(
            "SELECT COUNT(*) FROM images WHERE id NOT IN (SELECT image_id FROM predictions)"
        ).fetchone()[0]
        check.close()
        assert left == 0 and unpredicted == 0


def test_ctrl_c_during_predict_stores_what_is_done_and_says_how_to_finish(many_uploaded, slow_checkpoint, gate):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the workers leave it to the parent, which
    hands its claimed jobs back, says what finishes them and exits 130; --pending then finishes exactly those."""
    db = many_uploaded
    proc, done = _paused_predict(db, slow_checkpoint, gate, "-w", "2", "-q", batch=2)
    os.killpg(proc.pid, signal.SIGINT)  # the run is held mid-way: the Ctrl-C cannot come after its end
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert f"'dogbreed predict --pending --checkpoint {slow_checkpoint.resolve()}' finishes them" in err
    store_intact(db)
    check = sqlite3.connect(db)
    statuses = dict(check.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    check.close()
    assert "running" not in statuses and statuses.get("queued", 0) > 0 and statuses["done"] >= done >= 2, statuses
    finish = dogbreed("predict", "--pending", "-c", slow_checkpoint, "-q", "--json", timeout=180)
    assert finish.returncode == 0 and json.loads(finish.stdout)["done"] == statuses["queued"], finish.stderr


def test_a_killed_pool_worker_is_replaced_and_the_run_finishes(many_uploaded, slow_checkpoint, gate):
    db = many_uploaded
    proc, _ = _paused_predict(db, slow_checkpoint, gate, "-w", "2", "-q", batch=2)
    workers = _children(proc.pid)
    assert len(workers) == 2, workers  # both started: the run is held with batches in flight on each
    os.kill(workers[0], signal.SIGKILL)  # what the OOM killer does
    gate.open()
    out, err = proc.communicate(timeout=180)
    assert "Traceback" not in out + err and "BrokenProcessPool" not in out + err
    check = sqlite3.connect(db)
    statuses = dict(check.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
    check.close()
    if proc.returncode == 0:
        assert statuses == {"done": 64}
    else:  # died twice: a clear line, and the unfinished jobs are back in the queue
        one_error_line(err, "predict --pending")
        assert set(statuses) <= {"done", "queued"}
    store_intact(db)


def test_jobs_of_a_dead_process_read_as_abandoned_not_running(cli, tmp_path):
    cli("upload", write(tmp_path / "a.jpg", jpeg_bytes()))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    conn = sqlite3.connect(cli.db)
    conn.execute(
        "INSERT INTO jobs (image_id, model_key, model_ref, model_name, status, owner_pid, created_at) "
        "VALUES (1, 'k', 'r', 'n', 'running', ?, '2026-01-01')",
        (dead.pid,),
    )
    conn.commit()
    conn.close()
    assert [j["status"] for j in cli.json("tasks")] == ["abandoned"]
    assert [j["id"] for j in cli.json("tasks", "--status", "abandoned")] == [1]


def test_stale_checkpoint_temporaries_are_cleaned_by_the_next_save(tmp_path):
    from dogbreed.formats.torchfile import atomic_torch_save

    stale = write(tmp_path / ".run1.pt.abc123.tmp", b"\0" * 1000)
    fresh = write(tmp_path / ".run2.pt.def456.tmp", b"\0" * 10)  # a save in progress elsewhere: left alone
    old = time.time() - 7200
    os.utime(stale, (old, old))
    atomic_torch_save({"x": 1}, tmp_path / "run3.pt")
    assert not stale.exists() and fresh.exists() and (tmp_path / "run3.pt").is_file()


# ---------------------------------------------------------------- training: options, names, disks

TINY_TRAIN = ["--no-pretrained", "--image-size", "32", "--epochs", "1", "--loader-workers", "0", "-b", "8"]


@pytest.mark.parametrize(
    "option",
    [
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--lr", "-inf"],
        ["--lr", "0"],
        ["--seed", str(2**32)],
        ["--seed", str(2**64)],
        ["--seed", "-1"],
        ["--epochs", "0"],
        ["--image-size", "100000"],
        ["--model", "vit_b_16"],  # at TINY_TRAIN's 32 px: ViT takes only 224
        ["--model", "maxvit_t"],  # 32 px is too small for its 7x7 windows
    ],
    ids=lambda o: " ".join(o),
)
def test_impossible_training_options_are_refused_before_a_run_is_recorded(cli, small_dataset, option):
    result = cli("train", "--dataset", small_dataset, *TINY_TRAIN, *option, expect=None)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert runs_recorded(cli.db) == 0


def test_a_run_name_never_becomes_a_path(cli, small_dataset, home):
    out = cli.json("train", "--dataset", small_dataset, *TINY_TRAIN, "--name", "../../../etc/evil\x1b[2J")
    checkpoint = Path(out["checkpoint"]).resolve()
    assert checkpoint.parent == (home / "checkpoints").resolve()
    assert "/" not in checkpoint.name and "\x1b" not in checkpoint.name
    assert not (home / "etc").exists()


@pytest.mark.parametrize("disk", ["read-only", "full"])
def test_training_onto_a_read_only_or_full_disk_is_one_line_and_no_run_stays_running(home, small_dataset, disk):
    checkpoints = home / "checkpoints"
    checkpoints.mkdir(parents=True)
    assert dogbreed("list").returncode == 0  # the store lives elsewhere in the same home
    prefix = read_only(checkpoints, listing=True) if disk == "read-only" else full_disk(checkpoints, "1m", True)
    proc = dogbreed("train", "--dataset", small_dataset, *TINY_TRAIN, prefix=prefix, timeout=180)
    out = output_of(proc)
    line = one_error_line(out, "cannot write", str(checkpoints))
    assert [x for x in out.splitlines() if x.startswith("LEFT:")] == ["LEFT:"]  # no temporary left on that disk
    assert proc.returncode == 1
    assert ("read-only" if disk == "read-only" else "the disk is full") in line
    assert "dogbreed database" not in line and "enforce fail" not in line
    conn = sqlite3.connect(home / "dogbreed.db")
    assert conn.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    conn.close()


# ---------------------------------------------------------------- figures: where they may be written


@pytest.fixture
def viewable(cli, tmp_path, checkpoint) -> None:
    cli("predict", write(tmp_path / "a.jpg", jpeg_bytes()), "-c", checkpoint, "-w", "0")


def test_view_output_into_a_missing_folder_is_created(cli, tmp_path, viewable):
    target = tmp_path / "new" / "nested" / "v.png"
    cli("view", "1", "-o", target)
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("where", ["under-a-file", "fifo", "device", "link-to-device", "folder-is-the-file"])
def test_view_output_to_a_bad_place_is_one_line_and_never_blocks_or_replaces_it(home, tmp_path, viewable, where):
    (tmp_path / "afile").write_text("x")
    if where == "under-a-file":
        target, needle = tmp_path / "afile" / "v.png", "not a folder"
    elif where == "fifo":
        target, needle = tmp_path / "out.png", "a FIFO"
        os.mkfifo(target)
    elif where in ("device", "link-to-device"):
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        target, needle = device, "a device"
        if where == "link-to-device":
            target = tmp_path / "link.png"
            target.symlink_to(device)
    else:
        target, needle = tmp_path / "afile", ""
        os.remove(target)
        (tmp_path / "afile").mkdir()
        (tmp_path / "afile" / "view-1.png").mkdir()  # 'view -o DIR' writes DIR/view-1.png: a folder is there
        needle = "a folder"
    before = os.lstat(target).st_mode if os.path.lexists(target) else None
    proc = dogbreed("view", "1", "-o", target, timeout=60)
    assert proc.returncode == 1
    one_error_line(output_of(proc), needle)
    if before is not None:
        assert os.lstat(target).st_mode == before  # still the FIFO, the device, the link


def test_view_and_plot_into_a_read_only_folder_are_one_line(home, tmp_path, viewable):
    folder = tmp_path / "figures"
    folder.mkdir()
    proc = dogbreed("view", "1", "-o", folder / "v.png", prefix=read_only(folder))
    assert proc.returncode == 1
    one_error_line(output_of(proc), "read-only")
    os.mkfifo(folder / "curves.png")
    from dogbreed.store import connect
    from dogbreed.store import runs as run_rows

    conn = connect(home / "dogbreed.db")
    run_id = run_rows.start_run(
        conn, name="r", model="resnet18", mode="extractor", device="cpu", dataset="d", params={}, num_classes=2
    )
    run_rows.add_epoch(conn, run_id, dict.fromkeys(run_rows._EPOCH_COLUMNS, 0.5) | {"epoch": 1})
    conn.close()
    proc = dogbreed("stats", run_id, "--plot", folder / "curves.png", timeout=60)
    assert proc.returncode == 1
    one_error_line(output_of(proc), "a FIFO")
