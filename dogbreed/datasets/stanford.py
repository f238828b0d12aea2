"""The Stanford Dogs dataset: layout, official split, seeded stratified splits, verify scan, download.

Layout, as Stanford ships it::

    <dataset>/Images/n02085620-Chihuahua/n02085620_10074.jpg
    <dataset>/lists/train_list.mat, test_list.mat   (MATLAB: file_list, 1-based labels)

Downloads and archives come from the network, so nothing in them is trusted: Stanford's archives must match their
published sha256, and every download and extraction is bounded (``download``, ``archive``).
"""

from __future__ import annotations

import json
import os
import random
import tarfile
import urllib.parse
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.breeds import Breed, breed_from_folder
from dogbreed.datasets.archive import Limits, check_tar, safe_extract
from dogbreed.datasets.download import already_downloaded, fetch, verify_published
from dogbreed.errors import DogbreedError
from dogbreed.files import NotReadable, read_regular_file
from dogbreed.imaging import IMAGE_SUFFIXES, MAX_BYTES

STANFORD_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
ARCHIVES = {"images": "images.tar", "lists": "lists.tar", "annotation": "annotation.tar"}
VERIFY_CACHE = ".dogbreed-verify.json"
MAX_LIST_BYTES = 16 * 2**20  # Stanford's train_list.mat is 330 KB
MAX_LIST_EXPANDED = 256 * 2**20  # what a list's compressed parts may inflate to


STORE_PREFIX = "store:"  # a sample from the store: "store:<image id>"


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the images folder ("n02085620-Chihuahua/n02085620_10074.jpg"), or "store:<image id>"
    label: int  # index into DatasetIndex.classes

    @property
    def image_id(self) -> int | None:
        """The store image this sample is (None for a file)."""
        return int(self.path[len(STORE_PREFIX) :]) if self.path.startswith(STORE_PREFIX) else None


@dataclass
class DatasetIndex:
    root: Path  # the dataset folder (for the store alone: the store file)
    classes: list[Breed]
    samples: list[Sample]
    layout: str = "stanford"  # stanford | folders | store, or "stanford+store" / "folders+store"
    images_root: Path | None = None  # what file samples are relative to (default: <root>/Images)
    store: Path | None = None  # the store that "store:N" samples come from

    @property
    def images_dir(self) -> Path:
        return self.images_root or self.root / "Images"

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

    if index.layout == "store":
        return {}  # stored images were decoded when they were stored
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
        if sample.image_id is not None:
            continue  # a stored image was decoded when it was stored
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


def published_checksums(base_url: str) -> dict[str, tuple[int, str]] | None:
    """{archive: (size, sha256)} when ``base_url`` is Stanford's own; None for a custom URL (nothing to check)."""
    return PUBLISHED if base_url.rstrip("/") == STANFORD_URL.rstrip("/") else None


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
        if not already_downloaded(archive):
            fetch(base_url.rstrip("/") + "/" + name, archive, limits, published[0] if published else None, on_progress)
        if published:
            verify_published(archive, *published, publisher="Stanford")
        elif on_warning:
            on_warning(f"{name} from {base_url} is not checked against Stanford's published sha256 (custom --url)")
        check_tar(archive, limits)
        count = safe_extract(archive, _extract_target(archive, dest, key), limits, _reserved(dest))
        marker.write_text(f"{count}\n")
        report.append({"archive": name, "status": "extracted", "members": count, "verified": bool(published)})
    return report
