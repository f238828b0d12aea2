"""Training: explicit, flag-driven, with honest metrics.

- The official split decides train vs test; validation (model selection) is carved from the training part; the
  test part is evaluated once, at the end, with the best epoch's weights.
- Metrics come from scikit-learn, not hand-written formulas.
- Extractor mode runs the frozen backbone over the (centre-cropped) images once and trains the head on those
  cached features; epochs after the first then cost a small fraction of it. What is traded away: random crops and
  flips for the head (use ``cache_features=False`` to keep them).
- Every run is recorded in the store (parameters, epochs, test report, checkpoint and its sha256, timings,
  status); Ctrl-C keeps the best checkpoint so far and marks the run interrupted.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dogbreed import imaging
from dogbreed.dataset import DatasetIndex, Sample, make_splits, scan, verify
from dogbreed.errors import DogbreedError
from dogbreed.files import read_regular_file, safe_name
from dogbreed.imaging import Preprocessing
from dogbreed.model import CheckpointMeta, Classifier, build_model, resolve_arch, save_checkpoint, select_device
from dogbreed.store import connect
from dogbreed.store import runs as run_rows


@dataclass
class TrainConfig:
    dataset: Path
    checkpoints_dir: Path
    model: str = "ResNet"
    mode: str = "extractor"
    epochs: int = 10
    batch: int = 64
    lr: float = 1e-3
    image_size: int | None = None  # None: the architecture's own crop size
    pretrained: bool = True
    weights: Path | None = None
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    limit_per_class: int | None = None
    name: str | None = None
    save: bool = True
    cache_features: bool = True
    val_fraction: float = 0.1

    def params(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


class Listener:
    """Receives training events; the CLI renders them (progress bars, an epoch table). Does nothing here."""

    def stage(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1, loss: float | None = None) -> None: ...

    def stop(self) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Evaluation(NamedTuple):
    loss: float
    y_true: np.ndarray
    probs: np.ndarray
    paths: list[str]


@dataclass
class TrainResult:
    run_id: int
    status: str
    checkpoint: Path | None
    best_epoch: int | None
    best_val_acc: float | None
    test: dict[str, Any] | None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- data


class ImageFiles(Dataset):
    """Dataset images as tensors; a file that fails to decode comes back as None and is skipped by the batch."""

    def __init__(self, index: DatasetIndex, samples: list[Sample], transform):
        self.root, self.samples, self.transform = index.images_dir, samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            data = read_regular_file(self.root / sample.path, imaging.MAX_BYTES)
            return self.transform(data), sample.label, sample.path
        except Exception:
            return None, sample.label, sample.path


class Batch(NamedTuple):
    x: torch.Tensor | None
    y: torch.Tensor | None
    paths: list[str]  # the images in x, in order
    failed: list[str]  # images of this batch that could not be decoded


def _collate(items) -> Batch:
    good = [(x, y, path) for x, y, path in items if x is not None]
    failed = [path for x, _, path in items if x is None]
    if not good:
        return Batch(None, None, [], failed)
    return Batch(
        torch.stack([x for x, _, _ in good]), torch.tensor([y for _, y, _ in good]), [p for *_, p in good], failed
    )


class TrainTransform:
    """RandomResizedCrop (with the model's interpolation) + horizontal flip, then the same normalisation as
    evaluation."""

    def __init__(self, prep: Preprocessing):
        from torchvision.transforms import Compose, InterpolationMode, RandomHorizontalFlip, RandomResizedCrop

        self.prep = prep
        mode = InterpolationMode(prep.interpolation)
        self.augment = Compose([RandomResizedCrop(prep.crop_size, interpolation=mode), RandomHorizontalFlip()])

    def __call__(self, data: bytes) -> torch.Tensor:
        img = imaging.load_rgb(data, min_side=self.prep.resize_size)
        return torch.from_numpy(imaging.normalise(self.augment(img), self.prep))


class EvalTransform:
    """Exactly the preprocessing `predict` uses."""

    def __init__(self, prep: Preprocessing):
        self.prep = prep

    def __call__(self, data: bytes) -> torch.Tensor:
        return torch.from_numpy(imaging.preprocess(data, self.prep))


def _loader(dataset: Dataset, batch: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=_collate,
        generator=generator,
        persistent_workers=False,
    )


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
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], paths: list[str], most_confused: int = 10
) -> dict:
    """Final report on the test split: accuracy, top-5, macro F1, per-breed F1, most-confused pairs."""
    from sklearn.metrics import confusion_matrix, f1_score

    n = len(classes)
    y_pred = probs.argmax(axis=1)
    summary = compute_metrics(y_true, probs, n)
    per_breed = f1_score(y_true, y_pred, average=None, labels=list(range(n)), zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(n)))
    np.fill_diagonal(cm, 0)
    pairs = sorted(((int(cm[i, j]), i, j) for i in range(n) for j in range(n) if cm[i, j]), reverse=True)
    return {
        "n": int(len(y_true)),
        "accuracy": summary["acc"],
        "top5": summary["top5"],
        "macro_f1": summary["macro_f1"],
        "per_breed_f1": {classes[i]: float(f) for i, f in enumerate(per_breed)},
        "most_confused": [
            {"true": classes[i], "predicted": classes[j], "count": c} for c, i, j in pairs[:most_confused]
        ],
        "classes": classes,
        "y_true": [int(v) for v in y_true],
        "y_pred": [int(v) for v in y_pred],
        "paths": paths,
    }


# ---------------------------------------------------------------- loops


def _train_epoch(
    model: nn.Module, loader, optimizer, device, listener: Listener, skipped: set[str]
) -> tuple[float, float, float]:
    """One pass over the training data: (mean loss, accuracy, macro F1) of the predictions made while training."""
    from sklearn.metrics import f1_score

    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total_loss, correct, seen = 0.0, 0, 0
    ys, preds = [], []
    for x, y, _paths, failed in loader:
        skipped.update(failed)
        if x is None or len(y) < 2:  # BatchNorm cannot train on a single sample
            listener.advance(len(failed) + (0 if y is None else len(y)))
            continue
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise DogbreedError(
                f"the training loss became {loss.item()} (diverged); lower --lr "
                f"(now {optimizer.param_groups[0]['lr']:g})"
            )
        total_loss += loss.item() * len(y)
        predicted = logits.argmax(1)
        correct += int((predicted == y).sum())
        seen += len(y)
        ys.append(y.cpu().numpy())
        preds.append(predicted.cpu().numpy())
        listener.advance(len(y) + len(failed), loss=total_loss / seen)
    f1 = float(f1_score(np.concatenate(ys), np.concatenate(preds), average="macro", zero_division=0)) if ys else 0.0
    return total_loss / max(seen, 1), correct / max(seen, 1), f1


@torch.inference_mode()
def _evaluate(forward, loader, device, listener: Listener, skipped: set[str]) -> Evaluation:
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, ys, probs, paths = 0.0, [], [], []
    for x, y, batch_paths, failed in loader:
        skipped.update(failed)
        if x is None:
            listener.advance(len(failed))
            continue
        logits = forward(x.to(device)).float()
        total += float(loss_fn(logits, y.to(device)))
        ys.append(y.numpy())
        probs.append(torch.softmax(logits, 1).cpu().numpy())
        paths.extend(batch_paths)
        listener.advance(len(y) + len(failed))
    if not ys:
        raise DogbreedError("no readable images to evaluate on")
    y_all = np.concatenate(ys)
    return Evaluation(total / len(y_all), y_all, np.concatenate(probs), paths)


@torch.inference_mode()
def _extract(
    model: Classifier, loader, device, listener: Listener, skipped: set[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    feats, labels = [], []
    for x, y, _paths, failed in loader:
        skipped.update(failed)
        if x is not None:
            feats.append(model.features(x.to(device)).float().cpu())
            labels.append(y)
        listener.advance(len(failed) + (0 if y is None else len(y)))
    if not feats:
        raise DogbreedError("no readable images to extract features from")
    return torch.cat(feats), torch.cat(labels)


def _head_loader(feats: torch.Tensor, labels: torch.Tensor, batch: int, shuffle: bool, seed: int) -> DataLoader:
    def collate(items) -> Batch:
        return Batch(torch.stack([f for f, _ in items]), torch.stack([y for _, y in items]), [], [])

    drop_last = shuffle and len(labels) % batch == 1  # never leave BatchNorm a batch of one
    return DataLoader(
        TensorDataset(feats, labels),
        batch_size=batch,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
    )


# ---------------------------------------------------------------- the run


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _skipped(verified_bad: dict[str, str], failed_during_run: set[str]) -> dict[str, str]:
    skipped = dict(verified_bad)
    for path in failed_during_run:
        skipped.setdefault(path, "could not be decoded during training")
    return skipped


@dataclass
class _Data:
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    unreadable: dict[str, str]
    official: bool


def _prepare_data(config: TrainConfig, listener: Listener) -> _Data:
    """Scan, split and verify the dataset; unreadable images are left out of every split."""
    index = scan(config.dataset)
    splits = make_splits(
        index, seed=config.seed, val_fraction=config.val_fraction, limit_per_class=config.limit_per_class
    )
    for note in splits.notes:
        listener.warn(note)
    if not splits.train or not splits.val or not splits.test:
        raise DogbreedError(
            f"{config.dataset} is too small to split into train/validation/test "
            f"({len(splits.train)}/{len(splits.val)}/{len(splits.test)}); add images"
        )
    listener.stage("verifying dataset images (cached after the first run)")
    bad = verify(index)
    for path, reason in sorted(bad.items()):
        listener.warn(f"skipping unreadable dataset image {path}: {reason}")
    train_s, val_s, test_s = (
        [s for s in part if s.path not in bad] for part in (splits.train, splits.val, splits.test)
    )
    return _Data(index, train_s, val_s, test_s, bad, splits.official)


class _FullFitter:
    """Each epoch: the images (augmented) through the trainable network, then validation."""

    def __init__(
        self, model: Classifier, data: _Data, config: TrainConfig, prep: Preprocessing, device, listener: Listener
    ):
        self.model, self.data, self.device, self.listener = model, data, device, listener
        self.skipped: set[str] = set()
        train_set = ImageFiles(data.index, data.train, TrainTransform(prep))
        val_set = ImageFiles(data.index, data.val, EvalTransform(prep))
        self.train_loader = _loader(train_set, config.batch, True, config.workers, config.seed)
        self.val_loader = _loader(val_set, config.batch, False, config.workers, config.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)

    def epoch(self, n: int) -> tuple[tuple[float, float, float], Evaluation]:
        self.listener.start(f"epoch {n}: train", len(self.data.train))
        trained = _train_epoch(self.model, self.train_loader, self.optimizer, self.device, self.listener, self.skipped)
        self.listener.stop()
        self.model.eval()
        self.listener.start(f"epoch {n}: validate", len(self.data.val))
        val = _evaluate(self.model, self.val_loader, self.device, self.listener, self.skipped)
        self.listener.stop()
        return trained, val


class _CachedHeadFitter:
    """Extractor mode with cached features: the frozen backbone sees each (centre-cropped) image once, in
    epoch 1; every epoch then trains the head alone on the stored feature vectors."""

    def __init__(
        self, model: Classifier, data: _Data, config: TrainConfig, prep: Preprocessing, device, listener: Listener
    ):
        self.model, self.data, self.config, self.device, self.listener = model, data, config, device, listener
        self.prep = prep
        self.skipped: set[str] = set()
        self.optimizer = torch.optim.AdamW(model.head.parameters(), lr=config.lr, weight_decay=1e-4)
        self.features: tuple | None = None

    def _extract_all(self, n: int) -> tuple:
        cfg, data = self.config, self.data
        ev = EvalTransform(self.prep)
        self.listener.start(f"epoch {n}: backbone features (once)", len(data.train) + len(data.val))
        parts = tuple(
            _extract(
                self.model,
                _loader(ImageFiles(data.index, part, ev), cfg.batch, False, cfg.workers, cfg.seed),
                self.device,
                self.listener,
                self.skipped,
            )
            for part in (data.train, data.val)
        )
        self.listener.stop()
        return parts

    def epoch(self, n: int) -> tuple[tuple[float, float, float], Evaluation]:
        if self.features is None:
            self.features = self._extract_all(n)
        (train_x, train_y), (val_x, val_y) = self.features
        self.listener.start(f"epoch {n}: head", len(train_y))
        head_loader = _head_loader(train_x, train_y, self.config.batch, True, self.config.seed + n)
        trained = _train_epoch(self.model.head, head_loader, self.optimizer, self.device, self.listener, set())
        self.listener.stop()
        self.model.head.eval()
        val = _evaluate(self.model.head, _head_loader(val_x, val_y, 4096, False, 0), self.device, Listener(), set())
        return trained, val


class _Run:
    """One training run: its store record, its checkpoint, and the best epoch so far."""

    def __init__(
        self, config: TrainConfig, db_path: Path, arch: str, device, classes: list[list[str]], prep: Preprocessing
    ):
        self.config, self.conn = config, connect(db_path)
        self.id = run_rows.start_run(
            self.conn,
            name=config.name or f"{arch}-{config.mode}",
            model=arch,
            mode=config.mode,
            device=str(device),
            dataset=str(config.dataset),
            params=config.params(),
            num_classes=len(classes),
            owner_pid=os.getpid(),
        )
        self.meta = CheckpointMeta(
            arch,
            config.mode,
            classes,
            image_size=prep.crop_size,
            mean=list(prep.mean),
            std=list(prep.std),
            run_id=self.id,
            resize_size=prep.resize_size,
            interpolation=prep.interpolation,
        )
        stem = safe_name(config.name or f"{arch}-{config.mode}")  # a name never becomes a path
        self.checkpoint = Path(config.checkpoints_dir) / f"{stem}-run{self.id}.pt"
        self.started = time.perf_counter()
        self.best_state: dict | None = None
        self.result = TrainResult(self.id, "running", None, None, None, None)

    def end_epoch(self, model: nn.Module, row: dict[str, Any]) -> None:
        """Store the epoch; when validation accuracy improves, keep the weights and write the checkpoint."""
        run_rows.add_epoch(self.conn, self.id, row)
        self.result.epochs.append(row)
        if self.result.best_val_acc is not None and row["val_acc"] <= self.result.best_val_acc:
            return
        self.best_state = copy.deepcopy(model.state_dict())
        self.result.best_epoch, self.result.best_val_acc = row["epoch"], row["val_acc"]
        self.meta.metrics = {"best_epoch": row["epoch"], **{k: row[k] for k in ("val_acc", "val_top5", "val_f1")}}
        values: dict[str, Any] = {"best_epoch": row["epoch"], "best_val_acc": row["val_acc"]}
        if self.config.save:
            values["checkpoint_sha256"] = save_checkpoint(self.checkpoint, model, self.meta)
            values["checkpoint_path"] = str(self.checkpoint.resolve())
            self.result.checkpoint = self.checkpoint
        run_rows.update_run(self.conn, self.id, **values)

    def finish(self, model: nn.Module, report: dict[str, Any], skipped: dict[str, str]) -> None:
        self.meta.metrics.update(
            {"test_acc": report["accuracy"], "test_top5": report["top5"], "test_f1": report["macro_f1"]}
        )
        values: dict[str, Any] = {}
        if self.config.save:  # the final file carries the test metrics too
            values["checkpoint_sha256"] = save_checkpoint(self.checkpoint, model, self.meta)
        self.result.status, self.result.test, self.result.skipped = "finished", report, skipped
        run_rows.update_run(
            self.conn,
            self.id,
            status="finished",
            test_acc=report["accuracy"],
            test_top5=report["top5"],
            test_macro_f1=report["macro_f1"],
            test_report=report,
            skipped=skipped,
            **self._ended(),
            **values,
        )

    def stop(self, status: str, skipped: dict[str, str] | None = None, error: str | None = None) -> None:
        self.result.status, self.result.skipped = status, skipped or {}
        run_rows.update_run(self.conn, self.id, status=status, skipped=skipped or {}, error=error, **self._ended())

    def _ended(self) -> dict[str, Any]:
        from dogbreed.store import utcnow

        return {"finished_at": utcnow(), "duration_s": time.perf_counter() - self.started}


def _epoch_row(
    epoch: int, trained: tuple[float, float, float], val: Evaluation, num_classes: int, lr: float, seconds: float
) -> dict:
    m = compute_metrics(val.y_true, val.probs, num_classes)
    loss, acc, f1 = trained
    return {
        "epoch": epoch,
        "train_loss": loss,
        "train_acc": acc,
        "train_f1": f1,
        "val_loss": val.loss,
        "val_acc": m["acc"],
        "val_top5": m["top5"],
        "val_f1": m["macro_f1"],
        "lr": lr,
        "seconds": seconds,
    }


def preprocessing_for(arch: str, image_size: int | None) -> Preprocessing:
    """The architecture's own published preprocessing (torchvision's weights transforms: resize, crop,
    interpolation, mean, std); an explicit ``image_size`` sets the crop and scales the resize with it."""
    from dogbreed import zoo

    try:
        prep = zoo.describe(arch).preprocessing
    except DogbreedError:  # an architecture without published weights: the classic ImageNet recipe
        return Preprocessing.for_crop(image_size or 224)
    if image_size is None or image_size == prep.crop_size:
        return prep
    resize = int(round(image_size * prep.resize_size / prep.crop_size))
    return Preprocessing(image_size, resize, prep.interpolation, prep.mean, prep.std)


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise DogbreedError("--epochs must be at least 1")
    if not math.isfinite(config.lr) or config.lr <= 0:
        raise DogbreedError(f"--lr must be a positive number, not {config.lr}")
    if not 0 <= config.seed < 2**32:
        raise DogbreedError("--seed must be from 0 to 2^32 - 1")
    if config.image_size is not None and not 16 <= config.image_size <= 1024:
        raise DogbreedError("--image-size must be from 16 to 1024 pixels")


def train(config: TrainConfig, db_path: Path, listener: Listener | None = None) -> TrainResult:
    """Train, select the best epoch on validation, report on test, record everything. See the module doc."""
    listener = listener or Listener()
    _check_config(config)
    arch = resolve_arch(config.model)
    _seed_everything(config.seed)
    device, warning = select_device(config.device)
    if warning:
        listener.warn(warning)
    data = _prepare_data(config, listener)
    classes = [[b.wnid, b.name] for b in data.index.classes]
    prep = preprocessing_for(arch, config.image_size)
    pretrained = config.pretrained and config.weights is None
    model = build_model(arch, config.mode, len(classes), pretrained=pretrained, weights_file=config.weights)
    model = model.to(device)
    run = _Run(config, db_path, arch, device, classes, prep)
    listener.stage(
        f"run {run.id}: {arch} {config.mode} on {device}, {len(classes)} breeds, {len(data.train)} train / "
        f"{len(data.val)} val / {len(data.test)} test images ({'official' if data.official else 'seeded'} split); "
        f"input {prep.crop_size} px (resize {prep.resize_size}, {prep.interpolation})"
    )
    if pretrained or config.weights is not None:
        from dogbreed.zoo import IMAGENET_CAVEAT

        listener.warn(IMAGENET_CAVEAT)
    cached = config.mode == "extractor" and config.cache_features
    if cached:
        listener.stage(
            "extractor mode: backbone features are computed once from centre crops, so the head trains without "
            "random crops or flips (--no-cache-features keeps them, at a full forward pass per epoch)"
        )
    fitter = (_CachedHeadFitter if cached else _FullFitter)(model, data, config, prep, device, listener)
    try:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fitter.optimizer, T_max=config.epochs)
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            lr = fitter.optimizer.param_groups[0]["lr"]
            trained, val = fitter.epoch(epoch)
            scheduler.step()
            row = _epoch_row(epoch, trained, val, len(classes), lr, time.perf_counter() - start)
            run.end_epoch(model, row)
            listener.epoch({**row, "best": run.result.best_epoch == epoch})
        listener.stage(f"evaluating epoch {run.result.best_epoch} on the test split ({len(data.test)} images)")
        model.load_state_dict(run.best_state)
        model.eval()
        ev = EvalTransform(prep)
        test_loader = _loader(ImageFiles(data.index, data.test, ev), config.batch, False, config.workers, config.seed)
        listener.start("test", len(data.test))
        test = _evaluate(model, test_loader, device, listener, fitter.skipped)
        listener.stop()
        report = build_report(test.y_true, test.probs, [c[0] for c in classes], test.paths)
        report["imagenet_overlap"] = pretrained or config.weights is not None
        run.finish(model, report, _skipped(data.unreadable, fitter.skipped))
    except KeyboardInterrupt:
        run.stop("interrupted", _skipped(data.unreadable, fitter.skipped))
    except BaseException as exc:
        run.stop("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        listener.close()
        run.conn.close()
    return run.result
