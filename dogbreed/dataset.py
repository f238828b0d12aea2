"""The Stanford Dogs dataset: layout, official split, seeded stratified splits, verify scan, download.

Layout, as Stanford ships it::

    <dataset>/Images/n02085620-Chihuahua/n02085620_10074.jpg
    <dataset>/lists/train_list.mat, test_list.mat   (MATLAB: file_list, 1-based labels)
"""

from __future__ import annotations

import http.client
import json
import os
import random
import tarfile
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed.breeds import Breed, breed_from_folder
from dogbreed.errors import DogbreedError
from dogbreed.imaging import IMAGE_SUFFIXES

STANFORD_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
ARCHIVES = {"images": "images.tar", "lists": "lists.tar", "annotation": "annotation.tar"}
VERIFY_CACHE = ".dogbreed-verify.json"


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
            f"no Images/ folder in {root}; fetch the dataset with 'dogbreed dataset download --dir {root}' "
            "or pass --dataset DIR"
        )
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    breeds: list[tuple[Breed, Path]] = []
    for folder in folders:
        breed = breed_from_folder(folder.name)
        if breed is None:
            raise DogbreedError(
                f"dataset folder {folder} is not one of the 120 Stanford breeds (expected names like "
                "n02085620-Chihuahua); move it out of Images/"
            )
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


def _read_mat_list(path: Path) -> list[str]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        entries = mat["file_list"].ravel()
    except Exception as exc:
        raise DogbreedError(f"cannot read split list {path}: {exc}") from None
    names = []
    for entry in entries:
        name = str(entry.ravel()[0]) if hasattr(entry, "ravel") else str(entry)
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
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
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
        if cached and cached[:2] == key:
            reason = cached[2]
        else:
            try:
                validate(path.read_bytes())
                reason = None
            except ImageRejected as exc:
                reason = str(exc)
            except OSError as exc:
                reason = f"cannot read: {exc.strerror}"
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


def _fetch(url: str, target: Path, on_progress: Callable[[str, int, int | None], None] | None) -> None:
    """Download ``url`` to ``target``, resuming ``target.part`` with an HTTP Range request when one exists."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete
            os.replace(part, target)
            return
        raise DogbreedError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DogbreedError(f"cannot download {url}: {reason}; check the connection or --url") from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        with open(part, "ab" if resumed else "wb") as fh:
            try:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(target.name, done, total)
            except (http.client.IncompleteRead, OSError) as exc:
                fh.write(getattr(exc, "partial", b""))
                done += len(getattr(exc, "partial", b""))
    if total is not None and done < total:
        raise DogbreedError(
            f"download of {url} stopped at {done:,} of {total:,} bytes; run the same command again to resume"
        )
    os.replace(part, target)


def _check_tar(path: Path) -> None:
    """A truncated or non-tar file fails here, before anything is extracted.

    tarfile stops quietly at a short read, so check it ourselves: every member's data must lie inside the file,
    and the end-of-archive block (zeros) must follow the last member.
    """
    size = path.stat().st_size
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DogbreedError(f"{path} is not a tar archive ({exc}); delete it and download again") from None
    if not members:
        raise DogbreedError(f"{path} is an empty archive; delete it and download again")
    last = max(members, key=lambda m: m.offset_data)
    end = last.offset_data + -(-last.size // 512) * 512
    with open(path, "rb") as fh:
        fh.seek(end)
        trailer = fh.read(512)
    if end > size or len(trailer) < 512 or trailer.strip(b"\0"):
        raise DogbreedError(f"{path} is truncated ({size:,} bytes); delete it and download again")


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract with tarfile's 'data' filter: no member may land outside ``dest`` (no ../, absolute paths,
    links out, devices). Returns the number of members extracted."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise DogbreedError(f"refusing to extract {archive}: {exc}") from None
    return len(members)


def _extract_target(archive: Path, dest: Path, key: str) -> Path:
    """Stanford's lists.tar holds bare *.mat files: they belong in <dataset>/lists/."""
    if key != "lists":
        return dest
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    return dest if all(n.startswith("lists/") or n == "lists" for n in names) else dest / "lists"


def download(
    dest: Path,
    base_url: str = STANFORD_URL,
    *,
    annotations: bool = False,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> list[dict]:
    """Fetch and extract the archives into ``dest``; archives already extracted are skipped (idempotent)."""
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
        if not archive.exists():
            _fetch(base_url.rstrip("/") + "/" + name, archive, on_progress)
        _check_tar(archive)
        count = safe_extract(archive, _extract_target(archive, dest, key))
        marker.write_text(f"{count}\n")
        report.append({"archive": name, "status": "extracted", "members": count})
    return report
