"""Evaluation: how good a model is on labelled pictures, measured exactly as ``predict`` would run it.

- The model is loaded by predict's engine (``engines.choose`` / ``load_engine``) and every picture goes through
  predict's preprocessing (``imaging.preprocess``, with the model's own resize, crop, interpolation, mean, std).
  Training scores its test split through this very code, so ``eval`` of a run on its test split reproduces the
  test accuracy the run stored, to the last digit.
- Data: a split of a dataset folder, made as training makes it (``datasets.open_dataset`` with the run's seed,
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
    """Run ``engine.predict`` over decoded batches (``datasets.loaders.Batch``): the probabilities, labels and names."""
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
    names: dict[str, str] = field(default_factory=dict)  # the names of own breeds among ``wnids``


def _label_space(model_classes: tuple[str, ...], data_wnids: Iterable[str]) -> tuple[list[str], list[int], list[str]]:
    """(label space, the data's labels in it, the data's breeds the model does not know)."""
    space = list(model_classes)
    unknown = [w for w in dict.fromkeys(data_wnids) if w not in model_classes]
    space += unknown
    index = {w: i for i, w in enumerate(space)}
    return space, sorted({index[w] for w in data_wnids}), unknown


def _unknown_note(unknown: list[str], n_images: int, own: dict[str, str]) -> str:
    from dogbreed.breeds import display_name

    names = ", ".join(display_name(w, own) for w in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    return (
        f"the model does not know {len(unknown)} breed(s) of the data ({names}): their {n_images} picture(s) "
        "count as mistakes"
    )


def _pick_dataset(conn: Any, where: _Where, split: str, run: Any, on_stage: Callable[[str], None]) -> _Picked:
    """A split of a dataset folder and/or of the stored images a run recorded, made as training made it; images
    that fail verification left out, as training leaves them out."""
    from dogbreed import labels
    from dogbreed.datasets import open_dataset, split_params
    from dogbreed.datasets.loaders import DatasetImages

    if split not in SPLITS:
        raise DogbreedError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    vocabulary = labels.vocabulary(conn)
    data = open_dataset(
        where.root, **split_params(run), require=(split,), on_stage=on_stage, store=where.store, vocabulary=vocabulary
    )
    samples = data.part(split)

    def make(labels: list[int], transform: Any) -> Any:
        return DatasetImages(data.index, samples, transform, labels)

    wnids = [data.index.classes[s.label].wnid for s in samples]
    names = {b.wnid: b.name for b in data.index.classes if b.own}
    return _Picked(where.description, split, wnids, make, dict(data.left_out[split]), list(data.notes), names)


@dataclass(frozen=True)
class _Where:
    """The data a split is made of: a dataset folder, the stored images a run recorded, or both."""

    root: Path | None
    store: Any = None  # datasets.StorePart
    description: str = ""


def _run_data(conn: Any, db_path: Path, run: Any) -> _Where:
    from dogbreed.datasets import run_sources

    root, store = run_sources(conn, db_path, run)
    return _Where(root, store, run.dataset)


def _pick_store(conn: Any, db_path: Path) -> _Picked:
    from dogbreed.datasets.loaders import StoreImages
    from dogbreed.labels import vocabulary
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

    names = {b.wnid: b.name for b in vocabulary(conn).own}
    return _Picked("store", "store", [w for _, w in labelled], make, names=names)


def _loader_workers(requested: int | None, n: int, batch: int) -> int:
    if requested is not None:
        return requested
    import os

    return 0 if n <= 2 * batch else min(4, max(1, (os.cpu_count() or 2) - 1))


def evaluate_model(
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
    if request.dataset is not None:
        root = Path(request.dataset).expanduser().resolve()  # the record must name it from anywhere
        return _pick_dataset(conn, _Where(root, description=str(root)), request.split, training_run, stage)
    if training_run is not None:
        return _pick_dataset(conn, _run_data(conn, db_path, training_run), request.split, training_run, stage)
    if request.default_dataset is None:
        raise DogbreedError("say which data: --dataset DIR (with --split) or --store")
    root = Path(request.default_dataset).expanduser().resolve()
    return _pick_dataset(conn, _Where(root, description=str(root)), request.split, None, stage)


def _measure(
    engine: Any, picked: _Picked, request: EvalRequest, on_progress: Callable[[int, int], None] | None
) -> tuple[dict[str, Any], float]:
    """Score the picked pictures through the engine, in the model's label space: (report, seconds)."""
    from dogbreed.datasets.loaders import EvalTransform, loader

    space, data_labels, unknown = _label_space(tuple(engine.spec.classes), picked.wnids)
    if unknown:
        picked.notes.append(_unknown_note(unknown, sum(w in unknown for w in picked.wnids), picked.names))
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
    names = {**picked.names, **engine.spec.names}
    report = build_report(scored.y_true, scored.probs, space, scored.keys, names=names)
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
