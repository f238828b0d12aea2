"""Evaluation: how good a model is on labelled pictures, measured exactly as ``predict`` would run it.

- The model is loaded by predict's engine (``engines.choose`` / ``load_engine``) and every picture goes through
  predict's preprocessing (``imaging.preprocess``, with the model's own resize, crop, interpolation, mean, std).
  Training scores its test split through this very code, so ``eval`` of a run on its test split reproduces the
  test accuracy the run stored, to the last digit.
- Data: a split of a dataset folder, made as training makes it (``dataset.make_splits`` with the run's seed,
  validation fraction and per-breed limit, dataset images that fail verification left out), or the store's
  labelled images (their latest ground truth).
- Label space: the model's own classes. A picture of a breed the model does not know can never be right and
  counts as a mistake. A model that knows breeds the data does not have (a ready ImageNet model scored on a few
  breeds) is scored as predict runs it, over all of its breeds; ``accuracy_data_breeds`` adds its accuracy when
  its answer is restricted to the data's breeds, which is what a model trained on those breeds alone competes
  with.
- Metrics from scikit-learn: top-1, top-5, macro F1 (over the breeds present in the truth or the predictions),
  per-breed precision / recall / F1 / support, and the most-confused pairs. Every evaluation is recorded in the
  store (``evaluations``) and listed by ``stats``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dogbreed.errors import DogbreedError
from dogbreed.metrics import accuracy_within, build_report

SPLITS = ("test", "val", "train")
EVAL_BATCH = 64


# ---------------------------------------------------------------- scoring through an engine


class Scored(NamedTuple):
    y_true: np.ndarray
    probs: np.ndarray  # (N, number of the model's classes)
    keys: list[str]
    failed: list[str]  # pictures that could not be decoded (left out)


def score(engine: Any, batches: Iterable[Any], on_batch: Callable[[int], None] | None = None) -> Scored:
    """Run ``engine.predict`` over decoded batches (``imagesets.Batch``): the probabilities, labels and names."""
    ys, probs, keys, failed = [], [], [], []
    for batch in batches:
        failed.extend(batch.failed)
        if batch.x is not None:
            probs.append(engine.predict(batch.x.numpy()).probs)
            ys.append(batch.y.numpy())
            keys.extend(batch.keys)
        if on_batch:
            on_batch(len(batch.keys) + len(batch.failed))
    classes = len(engine.spec.classes)
    if not ys:
        return Scored(np.zeros(0, dtype=np.int64), np.zeros((0, classes), dtype=np.float32), [], failed)
    return Scored(np.concatenate(ys), np.concatenate(probs), keys, failed)


# ---------------------------------------------------------------- the eval use case


@dataclass
class EvalRequest:
    """Which model (None: the default, see ``sources.resolve``), which data (a dataset ``split``, or the store's
    labelled images with ``store``) and how to run it."""

    source: Any = None  # sources.ModelSource
    dataset: Path | None = None  # None: the run's dataset
    default_dataset: Path | None = None  # when neither the request nor the run names one
    split: str = "test"
    store: bool = False
    device: str = "auto"
    engine: str = "auto"
    precision: str = "auto"
    batch_size: int = EVAL_BATCH
    loader_workers: int | None = None  # None: a few when there is enough to decode
    record: bool = True


@dataclass
class EvalOutcome:
    source: Any
    choice: Any
    data: str  # the dataset folder, or "store"
    split: str  # test | val | train | store
    report: dict[str, Any]
    seconds: float
    run_id: int | None = None
    evaluation_id: int | None = None
    imagenet_overlap: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Picked:
    """The labelled pictures to score, chosen (and checked) before any model is loaded."""

    description: str  # the dataset folder, or "store"
    split: str
    wnids: list[str]  # each picture's breed
    make: Callable[[list[int], Any], Any]  # (labels, transform) -> a torch Dataset of (tensor, label, key)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _label_space(model_classes: tuple[str, ...], data_wnids: Iterable[str]) -> tuple[list[str], list[int], list[str]]:
    """(label space, the data's labels in it, the data's breeds the model does not know)."""
    space = list(model_classes)
    unknown = [w for w in dict.fromkeys(data_wnids) if w not in model_classes]
    space += unknown
    index = {w: i for i, w in enumerate(space)}
    return space, sorted({index[w] for w in data_wnids}), unknown


def _unknown_note(unknown: list[str], n_images: int) -> str:
    from dogbreed.breeds import display_name

    names = ", ".join(display_name(w) for w in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    return (
        f"the model does not know {len(unknown)} breed(s) of the data ({names}): their {n_images} picture(s) "
        "count as mistakes"
    )


def split_params(run: Any) -> dict[str, Any]:
    """The seed, validation fraction and per-breed limit a run split its dataset with (the defaults without one)."""
    params = (run.params if run is not None else None) or {}
    return {
        "seed": int(params.get("seed", 0)),
        "val_fraction": float(params.get("val_fraction", 0.1)),
        "limit_per_class": params.get("limit_per_class"),
    }


def _pick_dataset(root: Path, split: str, run: Any, on_stage: Callable[[str], None]) -> _Picked:
    """A split of a dataset folder, made as training made it; images that fail verification left out, as training
    leaves them out."""
    from dogbreed.dataset import make_splits, scan, verify
    from dogbreed.imagesets import DatasetImages

    if split not in SPLITS:
        raise DogbreedError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    root = Path(root).expanduser().resolve()  # the record must name it from anywhere
    index = scan(root)
    splits = make_splits(index, **split_params(run))
    samples = getattr(splits, split)
    if not samples:
        raise DogbreedError(f"the {split} split of {root} is empty; choose another --split or add images")
    on_stage("verifying dataset images (cached after the first run)")
    bad = verify(index)
    skipped = {s.path: bad[s.path] for s in samples if s.path in bad}
    samples = [s for s in samples if s.path not in bad]

    def make(labels: list[int], transform: Any) -> Any:
        return DatasetImages(index, samples, transform, labels)

    wnids = [index.classes[s.label].wnid for s in samples]
    return _Picked(str(root), split, wnids, make, skipped, list(splits.notes))


def _pick_store(conn: Any, db_path: Path) -> _Picked:
    from dogbreed.imagesets import StoreImages
    from dogbreed.store.images import labelled_ids

    labelled = labelled_ids(conn)
    if not labelled:
        raise DogbreedError(
            "the store has no labelled images to evaluate on; upload some with --ground-truth BREED or "
            "--label-from-folder, or evaluate on a dataset with --dataset"
        )
    ids = [i for i, _ in labelled]

    def make(labels: list[int], transform: Any) -> Any:
        return StoreImages(db_path, ids, labels, transform)

    return _Picked("store", "store", [w for _, w in labelled], make)


def _loader_workers(requested: int | None, n: int, batch: int) -> int:
    if requested is not None:
        return requested
    import os

    return 0 if n <= 2 * batch else min(4, max(1, (os.cpu_count() or 2) - 1))


def run(
    db_path: Path,
    request: EvalRequest,
    on_progress: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Evaluate one model on one set of labelled pictures, record it, and return the report."""
    from dogbreed import engines
    from dogbreed.models import sources
    from dogbreed.store import evaluations, open_store

    stage = on_stage or (lambda text: None)
    conn = open_store(db_path)
    try:
        source = request.source or sources.resolve(conn)
        training_run = sources.training_run(conn, source)
        picked = _pick(conn, db_path, request, training_run, stage)  # bad data fails before the model loads
        choice = engines.choose_for(conn, source, request.device, request.engine, request.precision)
        stage(f"loading {source.name} ({choice.engine} {choice.precision} on {choice.device})")
        engine = engines.load_engine(source, choice)
        report, seconds = _measure(engine, picked, request, on_progress)
        overlap = sources.imagenet_overlap(source, training_run)
        report["imagenet_overlap"] = overlap
        outcome = EvalOutcome(
            source,
            choice,
            picked.description,
            picked.split,
            report,
            seconds,
            run_id=training_run.id if training_run else None,
            imagenet_overlap=overlap,
            skipped=report["skipped"],
            notes=picked.notes,
        )
        if request.record:
            outcome.evaluation_id = evaluations.add_evaluation(
                conn,
                source.identity,
                run_id=outcome.run_id,
                engine=choice.engine,
                precision=choice.precision,
                device=choice.device,
                data=picked.description if not request.store else f"store {db_path}",
                split=picked.split,
                report=report,
                seconds=seconds,
            )
        return outcome
    finally:
        conn.close()


def _pick(conn: Any, db_path: Path, request: EvalRequest, training_run: Any, stage: Callable[[str], None]) -> _Picked:
    if request.store:
        return _pick_store(conn, db_path)
    root = request.dataset or (Path(training_run.dataset) if training_run else request.default_dataset)
    if root is None:
        raise DogbreedError("say which data: --dataset DIR (with --split) or --store")
    return _pick_dataset(Path(root), request.split, training_run, stage)


def _measure(
    engine: Any, picked: _Picked, request: EvalRequest, on_progress: Callable[[int, int], None] | None
) -> tuple[dict[str, Any], float]:
    """Score the picked pictures through the engine, in the model's label space: (report, seconds)."""
    from dogbreed.imagesets import EvalTransform, loader

    space, data_labels, unknown = _label_space(tuple(engine.spec.classes), picked.wnids)
    if unknown:
        picked.notes.append(_unknown_note(unknown, sum(w in unknown for w in picked.wnids)))
    where = {w: i for i, w in enumerate(space)}
    dataset = picked.make([where[w] for w in picked.wnids], EvalTransform(engine.spec.preprocessing))
    total = len(dataset)
    workers = _loader_workers(request.loader_workers, total, request.batch_size)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(done, total)

    started = time.perf_counter()
    scored = score(_Padded(engine, len(space)), loader(dataset, request.batch_size, workers=workers), advance)
    seconds = time.perf_counter() - started
    if not len(scored.y_true):
        raise DogbreedError(f"none of the {total} picture(s) could be decoded; nothing to evaluate")
    report = build_report(scored.y_true, scored.probs, space, scored.keys)
    if len(data_labels) < len(space):
        report["accuracy_data_breeds"] = accuracy_within(scored.y_true, scored.probs, data_labels)
    report["data_breeds"] = len(data_labels)
    report["skipped"] = {**picked.skipped, **{key: "could not be decoded" for key in scored.failed}}
    return report, seconds


class _Padded:
    """An engine whose probabilities get zero columns for the data's breeds the model does not know."""

    def __init__(self, engine: Any, width: int):
        self.engine, self.spec, self.width = engine, engine.spec, width

    def predict(self, batch: np.ndarray) -> Any:
        scores = self.engine.predict(batch)
        extra = self.width - scores.probs.shape[1]
        if extra:
            scores.probs = np.pad(scores.probs, ((0, 0), (0, extra)))
        return scores
