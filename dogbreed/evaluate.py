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

SPLITS = ("test", "val", "train")
DEFAULT_BATCH = 64
MOST_CONFUSED = 10


# ---------------------------------------------------------------- metrics


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, float]:
    """Top-1 accuracy, top-5 accuracy and macro F1 (over the classes present in truth or prediction),
    all from scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    y_pred = probs.argmax(axis=1)
    k = min(5, num_classes)
    labels = list(range(num_classes))
    top5 = 1.0 if k >= num_classes else top_k_accuracy_score(y_true, probs, k=k, labels=labels)
    return {
        "acc": float(accuracy_score(y_true, y_pred)),
        "top5": float(top5),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def build_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    keys: list[str],
    most_confused: int = MOST_CONFUSED,
) -> dict[str, Any]:
    """The full report: accuracy, top-5, macro F1, per-breed precision / recall / F1 / support (breeds in the truth
    or the predictions), the most-confused pairs, and the predictions themselves (``y_true``, ``y_pred``, ``paths``:
    what the confusion matrix is drawn from)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from dogbreed.breeds import display_name

    n = len(classes)
    y_pred = probs.argmax(axis=1)
    summary = compute_metrics(y_true, probs, n)
    labels = list(range(n))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    np.fill_diagonal(cm, 0)
    off = np.argwhere(cm > 0)
    pairs = sorted(((int(cm[i, j]), int(i), int(j)) for i, j in off), key=lambda t: (-t[0], t[1], t[2]))
    return {
        "n": int(len(y_true)),
        "accuracy": summary["acc"],
        "top5": summary["top5"],
        "macro_f1": summary["macro_f1"],
        "per_breed_f1": {classes[i]: float(f1[i]) for i in present},
        "per_breed": [
            {
                "breed": classes[i],
                "name": display_name(classes[i]),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in present
        ],
        "most_confused": [
            {"true": classes[i], "predicted": classes[j], "count": c} for c, i, j in pairs[:most_confused]
        ],
        "classes": classes,
        "y_true": [int(v) for v in y_true],
        "y_pred": [int(v) for v in y_pred],
        "paths": keys,
    }


def accuracy_within(y_true: np.ndarray, probs: np.ndarray, allowed: list[int]) -> float:
    """Accuracy when the answer is restricted to the ``allowed`` classes (the breeds the data has)."""
    restricted = np.asarray(allowed)[probs[:, allowed].argmax(axis=1)]
    return float((restricted == y_true).mean())


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
    batch_size: int = DEFAULT_BATCH
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


def _pick_dataset(root: Path, split: str, run: Any, on_stage: Callable[[str], None]) -> _Picked:
    """A split of a dataset folder, made as training made it; images that fail verification left out, as training
    leaves them out."""
    from dogbreed.datasets import open_dataset, split_params
    from dogbreed.datasets.loaders import DatasetImages

    if split not in SPLITS:
        raise DogbreedError(f"unknown split {split!r}; use {', '.join(SPLITS)}")
    root = Path(root).expanduser().resolve()  # the record must name it from anywhere
    data = open_dataset(root, **split_params(run), require=(split,), on_stage=on_stage)
    samples = data.part(split)

    def make(labels: list[int], transform: Any) -> Any:
        return DatasetImages(data.index, samples, transform, labels)

    wnids = [data.index.classes[s.label].wnid for s in samples]
    return _Picked(str(root), split, wnids, make, dict(data.left_out[split]), list(data.notes))


def _pick_store(conn: Any, db_path: Path) -> _Picked:
    from dogbreed.datasets.loaders import StoreImages
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


def run_of(conn: Any, source: Any) -> Any:
    """The training run a model came from, when this store has it (by run id, or by the checkpoint's sha256)."""
    from dogbreed.store import runs

    if source.run_id is not None:
        return runs.get_run(conn, source.run_id)
    if source.kind == "checkpoint":
        return runs.find_by_checkpoint(conn, source.key)
    return None


def imagenet_overlap(source: Any, run: Any, meta: Any = None) -> bool:
    """Whether the model's weights come from ImageNet training (a ready model, or trained from ImageNet weights):
    Stanford Dogs images come from ImageNet, so its scores there are optimistic. Asks the run's parameters when the
    store has the run, else the checkpoint's own record (``meta``, read when not given)."""
    if source.kind == "ready":
        return True
    if run is not None:
        params = run.params or {}
        return bool(params.get("imagenet_overlap", params.get("pretrained") or params.get("weights")))
    if source.kind != "checkpoint":
        return False
    if meta is None:
        from dogbreed.model import read_checkpoint

        meta, _, _ = read_checkpoint(source.ref)
    return bool(meta.metrics.get("imagenet_overlap") or meta.imagenet_head)


def run(
    db_path: Path,
    request: EvalRequest,
    on_progress: Callable[[int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> EvalOutcome:
    """Evaluate one model on one set of labelled pictures, record it, and return the report."""
    from dogbreed import engines, sources
    from dogbreed.store import evaluations, open_store

    stage = on_stage or (lambda text: None)
    conn = open_store(db_path)
    try:
        source = request.source or sources.resolve(conn)
        training_run = run_of(conn, source)
        picked = _pick(conn, db_path, request, training_run, stage)  # bad data fails before the model loads
        checks = evaluations.checks_for(conn, source.key)  # auto picks what predict would pick
        choice = engines.choose(source, request.device, request.engine, request.precision, checks)
        stage(f"loading {source.name} ({choice.engine} {choice.precision} on {choice.device})")
        engine = engines.load_engine(source, choice)
        report, seconds = _measure(engine, picked, request, on_progress)
        overlap = imagenet_overlap(source, training_run)
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
    from dogbreed.datasets.loaders import EvalTransform, loader

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
