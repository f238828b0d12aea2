"""Measure what a faster engine, a reduced precision or an export costs in accuracy, and record it: the numbers
the accuracy guard (``engines.guard``) reads.

Held-out images, in order of preference: the test split of ``--dataset`` (the user asked for it), the test split
of the model's training run (its own dataset, seed and split rules), the test split of the default dataset (ready
models), else images from the store (labelled ones first, since only they give accuracies). int8 calibration uses
the matching training split, or other stored images, never the held-out ones. Agreement with the fp32 model needs no
labels, so a test split smaller than the guard's minimum is topped up with validation, then training images (an
int8 export's accuracy check is not: it keeps to held-out images).

Nobody has to run a command for these checks: ``train`` measures them at its end (``held_out_images`` of its own
splits), and ``predict`` at auto measures a ready ImageNet model once on stored images when the store has enough
(``measure_once``).

Each image is decoded once and run through the fp32 torch reference and every candidate.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.engines import Choice, Engine, guard, load_engine
from dogbreed.engines import cpu as cpu_features
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource
from dogbreed.store.db import database_path

NO_IMAGES_HINT = (
    "no held-out images to check on: pass --dataset DIR (a Stanford-layout dataset) or store photos with "
    "'dogbreed upload' (with --ground-truth for accuracies)"
)
BATCH = 16
SEED = 0


@dataclass
class ImageSet:
    """Images to check or calibrate on, read lazily (a few hundred photos never sit in memory at once), with their
    WordNet-id labels where known. Iterating gives the encoded bytes; it can be iterated more than once (NNCF does).
    """

    description: str
    refs: list[Path | int] = field(default_factory=list)  # files, or stored image ids
    labels: list[str | None] = field(default_factory=list)
    db: Path | None = None

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def labelled(self) -> int:
        return sum(label is not None for label in self.labels)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in range(0, len(self.refs), 64):
            yield from self._read(self.refs[chunk : chunk + 64])

    def _read(self, refs: list[Path | int]) -> list[bytes]:
        """The bytes of files and of stored images (one store read for the chunk's ids); b"" for one that cannot
        be read, which fails to decode later and is skipped there."""
        from dogbreed.files import NotReadable, read_regular_file
        from dogbreed.imaging import MAX_BYTES

        ids = [r for r in refs if isinstance(r, int)]
        blobs: dict[int, bytes] = {}
        if ids:
            from dogbreed.store import connect
            from dogbreed.store.images import get_blobs

            conn = connect(self.db, readonly=True)
            try:
                blobs = get_blobs(conn, ids)
            finally:
                conn.close()
        out = []
        for ref in refs:
            if isinstance(ref, int):
                out.append(blobs.get(ref, b""))
                continue
            try:
                out.append(read_regular_file(ref, MAX_BYTES))
            except NotReadable:
                out.append(b"")
        return out


# ---------------------------------------------------------------- which images


@dataclass
class _Dataset:
    root: Path
    test: list[tuple[Path | int, str]]  # a file, or a stored image's id, with its label
    train: list[tuple[Path | int, str]]
    what: str  # "run 3's dataset /x" or "/x"
    db: Path | None = None  # the store the stored images come from
    val: list[tuple[Path | int, str]] = field(default_factory=list)


def _dataset(conn: sqlite3.Connection, root: Path | None, run: Any, what: str) -> _Dataset | None:
    """The splits of ``root`` (and of the stored images a run recorded), made as training made them (the run's
    seed, validation fraction and per-breed limit: ``datasets.split_params``); None when it is not a usable
    dataset."""
    from dogbreed.datasets import open_dataset, run_sources, split_params
    from dogbreed.labels import vocabulary

    store = None
    if run is not None:
        root, store = run_sources(conn, database_path(conn), run)
    try:
        data = open_dataset(root, **split_params(run), verify=False, store=store, vocabulary=vocabulary(conn))
    except (DogbreedError, OSError, ValueError):
        return None
    return _splits(data, what, database_path(conn))


def _splits(data: Any, what: str, db: Path | None) -> _Dataset:
    """An ``OpenedDataset``'s splits as (file or stored image id, breed key) lists; ``db``: the store stored images
    come from."""

    def refs(samples) -> list[tuple[Path | int, str]]:
        return [
            (s.image_id if s.image_id is not None else data.index.images_dir / s.path, data.index.classes[s.label].wnid)
            for s in samples
        ]

    root = Path(data.root) if data.root else db
    return _Dataset(root, refs(data.test), refs(data.train), what, db, refs(data.val))


def held_out_images(
    data: Any, what: str, limit: int, db: Path | None = None, minimum: int = guard.MIN_IMAGES
) -> ImageSet:
    """Images to measure agreement on from an ``OpenedDataset`` (``db``: the store its stored images are in): a
    seeded sample of up to ``limit`` test images, topped up with validation, then training images up to ``minimum``
    when the test split is smaller (agreement with the fp32 model needs no labels, and a model agrees with itself on
    images it trained on no more readily than on others). The description says which."""
    return _topped_up(_splits(data, what, db), limit, minimum)


def _topped_up(found: _Dataset, limit: int, minimum: int) -> ImageSet:
    chosen = _sample(found.test, limit)
    parts = [f"{len(chosen)} of {len(found.test)} images of the test split"]
    for name, items in (("validation", found.val), ("training", found.train)):
        short = min(minimum, limit) - len(chosen)
        if short <= 0 or not items:
            continue
        extra = _sample(items, short)
        chosen += extra
        parts.append(f"{len(extra)} of the {name} split")
    refs, labels = [p for p, _ in chosen], [w for _, w in chosen]
    return ImageSet(f"{' + '.join(parts)} of {found.what}", refs, labels, found.db)


def _find_dataset(conn: sqlite3.Connection, source: ModelSource, dataset: Path | None) -> _Dataset | None:
    if dataset is not None:
        found = _dataset(conn, Path(dataset), None, str(dataset))
        if found is None:
            raise DogbreedError(f"--dataset {dataset} is not a usable dataset (no Images/ folder of Stanford breeds)")
        return found
    if source.kind in ("checkpoint", "export"):
        from dogbreed.models.sources import training_run

        run = training_run(conn, source)
        if run is not None:
            return _dataset(conn, None, run, f"run {run.id}'s dataset {run.dataset}")
        return None
    from dogbreed.config import resolve_paths

    default = resolve_paths().dataset
    return _dataset(conn, default, None, str(default)) if (default / "Images").is_dir() else None


def _sample(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return random.Random(SEED).sample(items, n)


def _from_dataset(found: _Dataset, part: str, n: int) -> ImageSet:
    items = _sample(found.test if part == "test" else found.train, n)
    total = len(found.test if part == "test" else found.train)
    what = "test split" if part == "test" else "training split"
    return ImageSet(
        f"{len(items)} of {total} images of the {what} of {found.what}",
        [p for p, _ in items],
        [w for _, w in items],
        found.db,
    )


def _store_images(conn: sqlite3.Connection, limit: int) -> tuple[list[tuple[int, str]], list[int]]:
    """(labelled (id, wnid), unlabelled ids), each shuffled with a fixed seed."""
    from dogbreed.store.images import labelled_ids, list_images

    labelled = labelled_ids(conn)
    seen = {i for i, _ in labelled}
    unlabelled = [r.id for r in list_images(conn, limit=limit + len(labelled)) if r.id not in seen]
    rng = random.Random(SEED)
    rng.shuffle(labelled)
    rng.shuffle(unlabelled)
    return labelled, unlabelled


def export_images(
    conn: sqlite3.Connection, source: ModelSource, dataset: Path | None, n_check: int, n_calibration: int = 0
) -> tuple[ImageSet | None, ImageSet | None]:
    """(held-out images for the check, calibration images for int8), disjoint; either may be empty."""
    found = _find_dataset(conn, source, dataset)
    if found is not None and found.test:
        if not n_calibration:  # agreement alone: a small test split is topped up
            return _topped_up(found, n_check, guard.MIN_IMAGES), None
        return _from_dataset(found, "test", n_check), _from_dataset(found, "train", n_calibration)
    labelled, unlabelled = _store_images(conn, n_check + n_calibration)
    total = len(labelled) + len(unlabelled)
    if total == 0:
        return None, None
    n_held = min(n_check, total if not n_calibration else max(total - n_calibration, total // 2))
    ordered = [(i, w) for i, w in labelled] + [(i, None) for i in unlabelled]
    held_items, rest = ordered[:n_held], ordered[n_held:]
    why = f"the dataset {found.root} has no test images" if found is not None else "no dataset found for this model"
    db = database_path(conn)
    held = ImageSet(
        f"{len(held_items)} stored images ({sum(w is not None for _, w in held_items)} labelled; {why})",
        [i for i, _ in held_items],
        [w for _, w in held_items],
        db,
    )
    calib = None
    if n_calibration:
        rest = sorted(rest, key=lambda item: item[1] is not None)[:n_calibration]  # unlabelled first
        calib = ImageSet(f"{len(rest)} stored images ({why})", [i for i, _ in rest], [w for _, w in rest], db)
    return held, calib


# ---------------------------------------------------------------- measuring


@dataclass
class CheckResult:
    engine: str
    precision: str
    device: str
    target_key: str | None
    n: int
    agreement: float
    labelled: int
    reference_accuracy: float | None
    accuracy: float | None
    seconds: float  # this candidate's compute time over the n images (not a benchmark: same process, same run)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _top1(engine: Engine, batch: np.ndarray) -> np.ndarray:
    return np.asarray(engine.predict(batch).probs).argmax(axis=1)


@dataclass
class _Tops:
    """The top-1 answers of the reference and of each candidate over the same decoded images."""

    reference: Engine
    candidates: list[tuple[Engine, str | None]]
    ref: list[np.ndarray] = field(default_factory=list)
    cand: list[list[np.ndarray]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cand = [[] for _ in self.candidates]
        self.seconds = [0.0] * len(self.candidates)

    def add(self, arrays: list[np.ndarray]) -> None:
        batch = np.stack(arrays)
        self.ref.append(_top1(self.reference, batch))
        for i, (engine, _) in enumerate(self.candidates):
            start = time.perf_counter()
            self.cand[i].append(_top1(engine, batch))
            self.seconds[i] += time.perf_counter() - start


def _collect(tops: _Tops, images: ImageSet, on_progress: Callable[[int, int], None] | None) -> None:
    """Decode every image once and run it through the reference and every candidate, a batch at a time."""
    from dogbreed.imaging import ImageRejected, preprocess

    prep = tops.reference.spec.preprocessing
    arrays: list[np.ndarray] = []
    done = 0
    for data, label in zip(images, images.labels):
        done += 1
        try:
            arrays.append(preprocess(data, prep))
            tops.labels.append(label)
        except ImageRejected:
            continue
        if len(arrays) == BATCH:
            tops.add(arrays)
            arrays.clear()
            if on_progress:
                on_progress(done, len(images))
    if arrays:
        tops.add(arrays)
    if on_progress:
        on_progress(done, len(images))


def _results(tops: _Tops) -> list[CheckResult]:
    classes = np.array(tops.reference.spec.classes)
    ref = np.concatenate(tops.ref)
    mask = np.array([label is not None for label in tops.labels])
    truth = np.array([label or "" for label in tops.labels])

    def accuracy(top: np.ndarray) -> float | None:
        return float((classes[top][mask] == truth[mask]).mean()) if mask.any() else None

    results = []
    for (engine, target), parts, secs in zip(tops.candidates, tops.cand, tops.seconds):
        top = np.concatenate(parts)
        results.append(
            CheckResult(
                engine.name,
                engine.precision,
                engine.device.split(":")[0],
                target,
                len(ref),
                float((top == ref).mean()),
                int(mask.sum()),
                accuracy(ref),
                accuracy(top),
                secs,
            )
        )
    return results


def measure(
    reference: Engine,
    candidates: list[tuple[Engine, str | None]],
    images: ImageSet,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[CheckResult]:
    """Top-1 agreement of each (engine, target key) with ``reference`` on ``images``, and accuracies where they
    are labelled. Images that cannot be decoded are left out."""
    for engine, _ in candidates:
        if engine.spec.classes != reference.spec.classes or engine.spec.preprocessing != reference.spec.preprocessing:
            raise DogbreedError("the model to check does not have the reference model's classes and preprocessing")
    tops = _Tops(reference, candidates)
    _collect(tops, images, on_progress)
    if not tops.ref:
        raise DogbreedError(f"none of the {len(images)} held-out images could be decoded ({images.description})")
    return _results(tops)


def record(conn: sqlite3.Connection, model_key: str, results: list[CheckResult], data: str) -> None:
    from dogbreed.store.evaluations import add_check

    for r in results:
        add_check(
            conn,
            model_key=model_key,
            engine=r.engine,
            precision=r.precision,
            data=data,
            n=r.n,
            agreement=r.agreement,
            target_key=r.target_key,
            reference_accuracy=r.reference_accuracy,
            accuracy=r.accuracy,
            device=r.device,
            labelled=r.labelled,
        )


def candidates_for(device: str) -> list[tuple[str, str]]:
    """The (engine, precision) pairs worth checking on this device: the faster ones this machine really has."""
    import importlib.util

    kind = device.split(":")[0]
    if kind == "cuda":
        import torch

        return [("torch", "fp16")] + ([("torch", "bf16")] if torch.cuda.is_bf16_supported() else [])
    if kind != "cpu":
        return []
    bf16, _ = cpu_features.native_bf16()
    pairs = [("torch", "bf16")] if bf16 else []
    if importlib.util.find_spec("openvino") is not None:
        pairs += [("openvino", "fp32")] + ([("openvino", "bf16")] if bf16 else [])
    return pairs


def _reference(source: ModelSource, device: str) -> Engine:
    engine = load_engine(source, Choice("torch", "fp32", device))
    engine.set_threads(_cores())
    return engine


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _load(source: ModelSource, engine: str, precision: str, device: str) -> Engine:
    loaded = load_engine(source, Choice(engine, precision, device))
    loaded.set_threads(_cores())
    return loaded


def check_model(
    conn: sqlite3.Connection,
    source: ModelSource,
    images: ImageSet,
    device: str = "cpu",
    on_progress: Callable[[int, int], None] | None = None,
) -> list[CheckResult]:
    """Measure and record every faster engine/precision this machine offers for ``source`` (a checkpoint or a
    ready model) against its fp32 torch self."""
    if source.kind == "export":
        raise DogbreedError(f"{source.ref} is an exported model: its check was recorded by 'dogbreed export'")
    pairs = candidates_for(device)
    if not pairs:
        raise DogbreedError(
            f"nothing faster to check on {device}: no native bf16 here ({cpu_features.detect().describe()}) "
            "and OpenVINO is not installed"
        )
    reference = _reference(source, device)
    loaded = [(_load(source, engine, precision, device), None) for engine, precision in pairs]
    results = measure(reference, loaded, images, on_progress)
    record(conn, source.key, results, images.description)
    return results


def check_export(
    conn: sqlite3.Connection,
    source: ModelSource,
    exported: ModelSource,
    precision: str,
    images: ImageSet,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[CheckResult]:
    """Measure and record an export (``exported``, made from ``source``) against ``source`` at fp32 in torch: the
    export as it is (int8, or f32) and, for an fp32 export on a CPU with native bf16, at bf16 too."""
    pairs = [("openvino", precision)]
    if precision == "fp32" and cpu_features.native_bf16()[0]:
        pairs.append(("openvino", "bf16"))
    reference = _reference(source, "cpu")
    loaded = [(_load(exported, engine, p, "cpu"), exported.key) for engine, p in pairs]
    results = measure(reference, loaded, images, on_progress)
    record(conn, source.key, results, images.description)
    return results


# ---------------------------------------------------------------- measured without being asked

AUTO_CHECK_IMAGES = 128  # a ready model's one automatic check: above the guard's minimum, seconds per engine
TRAIN_CHECK_IMAGES = 200  # what train measures its model on at its end (a seeded sample of the test split)


def needs_check(conn: sqlite3.Connection, source: ModelSource, device: str) -> bool:
    """Whether predict at auto should measure ``source`` before choosing: a ready ImageNet model with no check
    recorded on this device kind, on a machine that has something faster to check. (A trained model was measured
    by ``train``; an export by ``export``.)"""
    from dogbreed.store.evaluations import checks_for

    if source.kind != "ready":
        return False
    kind = device.split(":")[0]
    if any((c.device or "cpu") == kind and c.target_key is None for c in checks_for(conn, source.key)):
        return False
    return bool(candidates_for(device))


def measure_once(
    conn: sqlite3.Connection,
    source: ModelSource,
    device: str,
    on_start: Callable[[ImageSet], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImageSet | None:
    """Measure and record ``source``'s checks on a seeded sample of ``AUTO_CHECK_IMAGES`` held-out images (the
    default dataset's test split, else stored images) when there are at least the guard's minimum; None, measuring
    nothing, when there are fewer."""
    images, _ = export_images(conn, source, None, AUTO_CHECK_IMAGES)
    if images is None or len(images) < guard.MIN_IMAGES:
        return None
    if on_start:
        on_start(images)
    check_model(conn, source, images, device, on_progress)
    return images
