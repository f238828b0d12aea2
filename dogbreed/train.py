"""Training: explicit, flag-driven, with honest metrics, resumable, on one process or many.

- The official split decides train vs test; validation (model selection) is carved from the training part; the
  test part is scored once, at the end, with the best epoch's weights, through predict's engine and preprocessing
  (``evaluate.score``): ``dogbreed eval`` of the run on its test split gives the very same numbers.
- Each architecture gets its own published preprocessing (``preprocessing_for``), recorded in the checkpoint.
- Metrics come from scikit-learn (``evaluate.compute_metrics`` / ``build_report``), not hand-written formulas.
- Extractor mode runs the frozen backbone over the (centre-cropped) images once and trains the head on those
  cached features; epochs after the first then cost a small fraction of it. What is traded away: random crops and
  flips for the head (use ``cache_features=False`` to keep them).
- Mixed precision (``mixed_precision.choose``): bf16 autocast where the hardware has it, fp16 with a gradient
  scaler on other CUDA GPUs, else fp32.
- Every run is recorded in the store (parameters, epochs, test report, checkpoint and its sha256, precision,
  timings, status). After every epoch the full training state (weights, optimizer, scheduler, gradient scaler,
  every rank's RNG state, the epochs so far, the best weights) is written atomically to the run's
  ``last_checkpoint_path``, so an interrupted, failed or killed run continues with ``resume`` exactly where its
  last completed epoch left it. Ctrl-C keeps the best checkpoint and marks the run interrupted; SIGTERM (what
  torchrun sends when another rank dies) marks it failed.
- Under torchrun (``distributed.py``) every rank trains a DistributedDataParallel replica on its share; rank 0
  alone writes the store, the checkpoints and the console.
"""

from __future__ import annotations

import copy
import math
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dogbreed import distributed, imaging
from dogbreed.dataset import DatasetIndex, Sample, make_splits, scan, verify
from dogbreed.distributed import Context
from dogbreed.errors import DogbreedError
from dogbreed.evaluate import build_report, compute_metrics, score
from dogbreed.files import safe_name
from dogbreed.imagesets import Batch, DatasetImages, EvalTransform, loader
from dogbreed.imaging import Preprocessing
from dogbreed.mixed_precision import Precision
from dogbreed.model import (
    CheckpointMeta,
    Classifier,
    build_model,
    check_input_size,
    read_checkpoint,
    resolve_arch,
    save_checkpoint,
    select_device,
)
from dogbreed.pause import pause_point
from dogbreed.store import connect
from dogbreed.store import runs as run_rows

STATE_KEY = "train_state"  # where a last-state checkpoint keeps what resuming needs


@dataclass
class TrainConfig:
    dataset: Path
    checkpoints_dir: Path
    model: str | None = "ResNet"  # None: the warm-start source's architecture (else ResNet)
    mode: str | None = "extractor"  # None: the warm-start source's mode (else extractor)
    epochs: int = 10
    batch: int = 64
    lr: float = 1e-3
    image_size: int | None = None  # None: the architecture's own crop size (or the warm-start source's)
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
    precision: str = "auto"
    init_from: str | None = None  # warm start: a run id or a dogbreed checkpoint path
    tensorboard: Path | None = None

    def params(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, Any], checkpoints_dir: Path) -> TrainConfig:
        """The configuration a run was started with (keys of older or newer versions ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in known}
        values["checkpoints_dir"] = Path(values.get("checkpoints_dir") or checkpoints_dir)
        for key in ("dataset", "weights", "tensorboard"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)


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
    precision: str = "fp32"
    resumed_after: int | None = None  # the epoch a resumed run continued from


class Terminated(BaseException):
    """SIGTERM arrived (torchrun stops the other ranks this way when one dies). A BaseException, like Ctrl-C, so
    that no ``except Exception`` on the way swallows it."""


# ---------------------------------------------------------------- data


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


@dataclass
class _Data:
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    unreadable: dict[str, str]
    official: bool


def _prepare_data(config: TrainConfig, listener: Listener, ctx: Context) -> _Data:
    """Scan, split and verify the dataset; unreadable images are left out of every split. Rank 0 verifies; the
    others take its verdict."""
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
    bad: dict[str, str] = {}
    if ctx.main:
        listener.stage("verifying dataset images (cached after the first run)")
        bad = verify(index)
    bad = distributed.broadcast(ctx, bad)
    for path, reason in sorted(bad.items()):
        listener.warn(f"skipping unreadable dataset image {path}: {reason}")
    train_s, val_s, test_s = (
        [s for s in part if s.path not in bad] for part in (splits.train, splits.val, splits.test)
    )
    return _Data(index, train_s, val_s, test_s, bad, splits.official)


def _in_order(parts: list[Any], order: list[str]) -> list[int]:
    """Positions that put gathered items (keyed by path) back in the order of ``order``."""
    where = {key: i for i, key in enumerate(order)}
    return sorted(range(len(parts)), key=lambda i: where[parts[i]])


# ---------------------------------------------------------------- loops


def _train_epoch(
    model: nn.Module,
    batches,
    optimizer,
    device,
    listener: Listener,
    skipped: set[str],
    amp: Precision,
    scaler,
    ctx: Context,
) -> tuple[float, float, float]:
    """One pass over the training data: (mean loss, accuracy, macro F1) of the predictions made while training,
    over every rank's batches."""
    from sklearn.metrics import f1_score

    model.train()
    loss_fn = nn.CrossEntropyLoss()
    total_loss, seen = 0.0, 0
    ys, preds = [], []
    for x, y, _keys, failed in batches:
        skipped.update(failed)
        # BatchNorm cannot train on a single sample; under DDP every rank must take the same steps
        if not distributed.all_agree(ctx, x is not None and len(y) >= 2):
            listener.advance(len(failed) + (0 if y is None else len(y)))
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise DogbreedError(
                f"the training loss became {value} (diverged); lower --lr (now {optimizer.param_groups[0]['lr']:g})"
            )
        total_loss += value * len(y)
        seen += len(y)
        ys.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
        listener.advance(len(y) + len(failed), loss=total_loss / seen)
    local = (total_loss, seen, _cat(ys), _cat(preds))
    parts = distributed.gather(ctx, local)
    total_loss = sum(p[0] for p in parts)
    seen = sum(p[1] for p in parts)
    y_all, pred_all = _cat([p[2] for p in parts]), _cat([p[3] for p in parts])
    if not seen:
        return 0.0, 0.0, 0.0
    f1 = float(f1_score(y_all, pred_all, average="macro", zero_division=0))
    return total_loss / seen, float((y_all == pred_all).mean()), f1


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


@torch.inference_mode()
def _evaluate(forward, batches, device, listener: Listener, skipped: set[str], amp: Precision) -> Evaluation:
    """Loss and probabilities over this process's batches (not yet gathered)."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, ys, probs, paths = 0.0, [], [], []
    for x, y, keys, failed in batches:
        skipped.update(failed)
        if x is None:
            listener.advance(len(failed))
            continue
        with amp.autocast():
            logits = forward(x.to(device))
        logits = logits.float()
        total += float(loss_fn(logits, y.to(device)))
        ys.append(y.numpy())
        probs.append(torch.softmax(logits, 1).cpu().numpy())
        paths.extend(keys)
        listener.advance(len(y) + len(failed))
    width = 0 if not probs else probs[0].shape[1]
    return Evaluation(total, _cat(ys), np.concatenate(probs) if probs else np.zeros((0, width)), paths)


def _gathered(ctx: Context, local: Evaluation, order: list[str]) -> Evaluation:
    """Every rank's share of an evaluation, in the order of ``order``, with the mean loss."""
    parts = distributed.gather(ctx, local)
    paths = [p for part in parts for p in part.paths]
    if not paths:
        raise DogbreedError("no readable images to evaluate on")
    ys = np.concatenate([part.y_true for part in parts])
    probs = np.concatenate([part.probs for part in parts if len(part.y_true)])
    at = _in_order(paths, order)
    return Evaluation(sum(part.loss for part in parts) / len(paths), ys[at], probs[at], [paths[i] for i in at])


@torch.inference_mode()
def _extract(
    model: Classifier, batches, device, listener: Listener, skipped: set[str], amp: Precision
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    model.eval()
    feats, labels, keys = [], [], []
    for x, y, batch_keys, failed in batches:
        skipped.update(failed)
        if x is not None:
            with amp.autocast():
                feats.append(model.features(x.to(device)).float().cpu())
            labels.append(y)
            keys.extend(batch_keys)
        listener.advance(len(failed) + (0 if y is None else len(y)))
    if not feats:
        return torch.zeros(0, model.feature_dim), torch.zeros(0, dtype=torch.long), []
    return torch.cat(feats), torch.cat(labels), keys


def _head_loader(
    feats: torch.Tensor, labels: torch.Tensor, batch: int, shuffle: bool, seed: int, sampler=None
) -> DataLoader:
    def collate(items) -> Batch:
        return Batch(torch.stack([f for f, _ in items]), torch.stack([y for _, y in items]), [], [])

    drop_last = shuffle and sampler is None and len(labels) % batch == 1  # never leave BatchNorm a batch of one
    return DataLoader(
        TensorDataset(feats, labels),
        batch_size=batch,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate,
    )


# ---------------------------------------------------------------- fitters


def _train_sampler(dataset, ctx: Context, seed: int):
    if not ctx.active:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed)


class _FullFitter:
    """Each epoch: the images (augmented) through the trainable network, then validation."""

    def __init__(
        self,
        model: Classifier,
        data: _Data,
        config: TrainConfig,
        prep: Preprocessing,
        device,
        listener,
        amp: Precision,
        ctx: Context,
    ):
        self.model, self.data, self.device, self.listener, self.amp, self.ctx = model, data, device, listener, amp, ctx
        self.skipped: set[str] = set()
        train_set = DatasetImages(data.index, data.train, TrainTransform(prep))
        self.sampler = _train_sampler(train_set, ctx, config.seed)
        self.train_loader = loader(
            train_set, config.batch, workers=config.workers, shuffle=True, seed=config.seed, sampler=self.sampler
        )
        val_share = [data.val[i] for i in ctx.shard(len(data.val))]
        val_set = DatasetImages(data.index, val_share, EvalTransform(prep))
        self.val_loader = loader(val_set, config.batch, workers=config.workers, seed=config.seed)
        self.net = distributed.wrap(ctx, model, device)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=1e-4)

    @property
    def generator(self) -> torch.Generator:
        return self.train_loader.generator

    def epoch(self, n: int, scaler) -> tuple[tuple[float, float, float], Evaluation]:
        if self.sampler is not None:
            self.sampler.set_epoch(n)
        self.listener.start(f"epoch {n}: train", len(self.data.train) // self.ctx.world)
        trained = _train_epoch(
            self.net,
            self.train_loader,
            self.optimizer,
            self.device,
            self.listener,
            self.skipped,
            self.amp,
            scaler,
            self.ctx,
        )
        self.listener.stop()
        self.model.eval()
        self.listener.start(f"epoch {n}: validate", len(self.val_loader.dataset))
        local = _evaluate(self.model, self.val_loader, self.device, self.listener, self.skipped, self.amp)
        self.listener.stop()
        return trained, _gathered(self.ctx, local, [s.path for s in self.data.val])


class _CachedHeadFitter:
    """Extractor mode with cached features: the frozen backbone sees each (centre-cropped) image once, in
    epoch 1, each rank a share, gathered so every rank holds all of them; every epoch then trains the head alone on
    the stored feature vectors."""

    def __init__(
        self,
        model: Classifier,
        data: _Data,
        config: TrainConfig,
        prep: Preprocessing,
        device,
        listener,
        amp: Precision,
        ctx: Context,
    ):
        self.model, self.data, self.config, self.device, self.listener = model, data, config, device, listener
        self.prep, self.amp, self.ctx = prep, amp, ctx
        self.skipped: set[str] = set()
        self.net = distributed.wrap(ctx, model.head, device)
        self.optimizer = torch.optim.AdamW(model.head.parameters(), lr=config.lr, weight_decay=1e-4)
        self.features: tuple | None = None
        self.generator = torch.Generator()  # unused: each epoch's head loader is seeded by the epoch

    def _extract_part(self, part: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, ctx = self.config, self.ctx
        share = [part[i] for i in ctx.shard(len(part))]
        batches = loader(
            DatasetImages(self.data.index, share, EvalTransform(self.prep)),
            cfg.batch,
            workers=cfg.workers,
            seed=cfg.seed,
        )
        feats, labels, keys = _extract(self.model, batches, self.device, self.listener, self.skipped, self.amp)
        parts = distributed.gather(ctx, (feats, labels, keys))
        keys = [k for p in parts for k in p[2]]
        if not keys:
            raise DogbreedError("no readable images to extract features from")
        at = _in_order(keys, [s.path for s in part])
        return torch.cat([p[0] for p in parts])[at], torch.cat([p[1] for p in parts])[at]

    def epoch(self, n: int, scaler) -> tuple[tuple[float, float, float], Evaluation]:
        if self.features is None:
            total = (len(self.data.train) + len(self.data.val)) // self.ctx.world
            self.listener.start(f"epoch {n}: backbone features (once)", total)
            self.features = (self._extract_part(self.data.train), self._extract_part(self.data.val))
            self.listener.stop()
        (train_x, train_y), (val_x, val_y) = self.features
        sampler = None
        if self.ctx.active:
            sampler = _train_sampler(TensorDataset(train_x, train_y), self.ctx, self.config.seed)
            sampler.set_epoch(n)
        head_loader = _head_loader(train_x, train_y, self.config.batch, True, self.config.seed + n, sampler)
        self.listener.start(f"epoch {n}: head", len(train_y) // self.ctx.world)
        trained = _train_epoch(
            self.net, head_loader, self.optimizer, self.device, self.listener, set(), self.amp, scaler, self.ctx
        )
        self.listener.stop()
        self.model.head.eval()
        val_batches = _head_loader(val_x, val_y, 4096, False, 0)
        local = _evaluate(self.model.head, val_batches, self.device, Listener(), set(), self.amp)
        # every rank holds every validation feature: each computes the same full validation
        return trained, Evaluation(local.loss / max(len(val_y), 1), local.y_true, local.probs, local.paths)


# ---------------------------------------------------------------- RNG state


def _rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """Every random stream this process draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "loader": generator.get_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device, generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _skipped(verified_bad: dict[str, str], failed_during_run: set[str]) -> dict[str, str]:
    skipped = dict(verified_bad)
    for path in failed_during_run:
        skipped.setdefault(path, "could not be decoded during training")
    return skipped


# ---------------------------------------------------------------- the run record


class _Run:
    """One training run: its store record and checkpoints (written by rank 0 only), and the best epoch so far
    (known to every rank)."""

    def __init__(self, config: TrainConfig, ctx: Context, meta: CheckpointMeta):
        self.config, self.ctx, self.meta = config, ctx, meta
        self.conn = None
        self.id = 0
        self.checkpoint = self.last = Path()
        self.started = time.perf_counter()
        self.best_state: dict | None = None
        self.result = TrainResult(0, "running", None, None, None, None)
        self.rows: list[dict[str, Any]] = []

    def open(self, db_path: Path, run_id: int | None, values: dict[str, Any]) -> None:
        """Rank 0: start the run record (or take over ``run_id``, resumed); every rank learns its id."""
        if self.ctx.main:
            self.conn = connect(db_path)
            if run_id is None:
                run_id = run_rows.start_run(self.conn, owner_pid=os.getpid(), **values)
        self.id = self.meta.run_id = self.result.run_id = distributed.broadcast(self.ctx, run_id)
        stem = safe_name(self.config.name or f"{self.meta.arch}-{self.meta.mode}")  # a name never becomes a path
        self.checkpoint = Path(self.config.checkpoints_dir) / f"{stem}-run{self.id}.pt"
        self.last = Path(self.config.checkpoints_dir) / f"{stem}-run{self.id}.last.pt"

    def restore(self, state: dict[str, Any], best_weights: dict, model: Classifier) -> None:
        """A resumed run: its epochs and best epoch as the saved state has them; the best checkpoint rewritten from
        the state (a kill between the two saves of an epoch leaves it one epoch behind)."""
        self.rows = list(state["epochs"])
        self.result.epochs = list(self.rows)
        self.result.best_epoch, self.result.best_val_acc = state["best_epoch"], state["best_val_acc"]
        self.result.resumed_after = state["epoch"]
        self.best_state = best_weights
        self.meta.metrics = dict(state.get("best_metrics") or {})
        if not self.ctx.main:
            return
        run_rows.reopen_run(self.conn, self.id, state["epoch"], os.getpid(), epochs=self.rows)
        values: dict[str, Any] = {"best_epoch": state["best_epoch"], "best_val_acc": state["best_val_acc"]}
        if self.config.save:
            current = copy.deepcopy(model.state_dict())
            model.load_state_dict(best_weights)
            values["checkpoint_sha256"] = save_checkpoint(self.checkpoint, model, self.meta)
            values["checkpoint_path"] = str(self.checkpoint.resolve())
            model.load_state_dict(current)
            self.result.checkpoint = self.checkpoint
        run_rows.update_run(self.conn, self.id, **values)

    def end_epoch(self, model: Classifier, row: dict[str, Any], training_state: dict[str, Any]) -> None:
        """Keep the best weights (every rank); rank 0 writes the training state, then the best checkpoint, then
        the store. Each file is written atomically; a kill between them is repaired by ``restore``."""
        improved = self._better(row)
        self.rows.append(row)
        self.result.epochs.append(row)
        if improved:
            self.best_state = copy.deepcopy(model.state_dict())
            self.result.best_epoch, self.result.best_val_acc = row["epoch"], row["val_acc"]
            self.meta.metrics = {
                "best_epoch": row["epoch"],
                **{k: row[k] for k in ("val_acc", "val_top5", "val_f1")},
                "imagenet_overlap": self.meta.metrics.get("imagenet_overlap", False),
            }
        if not self.ctx.main:
            return
        values: dict[str, Any] = {}
        if self.config.save:
            state = {
                **training_state,
                "epochs": self.rows,
                "best_epoch": self.result.best_epoch,
                "best_val_acc": self.result.best_val_acc,
                "best_metrics": dict(self.meta.metrics),
                "best_state": None if improved else self.best_state,  # None: the weights of this very epoch
            }
            save_checkpoint(self.last, model, self.meta, extra={STATE_KEY: state})
            values["last_checkpoint_path"] = str(self.last.resolve())
            if improved:
                values["checkpoint_sha256"] = save_checkpoint(self.checkpoint, model, self.meta)
                values["checkpoint_path"] = str(self.checkpoint.resolve())
                self.result.checkpoint = self.checkpoint
        run_rows.add_epoch(self.conn, self.id, row)
        run_rows.update_run(
            self.conn, self.id, best_epoch=self.result.best_epoch, best_val_acc=self.result.best_val_acc, **values
        )
        pause_point()  # tests only (DOGBREED_PAUSE_WHILE): act while the run is certainly under way

    def _better(self, row: dict[str, Any]) -> bool:
        """Higher validation accuracy wins; at equal accuracy, lower validation loss (a tie is common on small
        validation sets, and the lower loss is the surer model)."""
        best = self.result.best_val_acc
        if best is None or row["val_acc"] > best:
            return True
        kept = next(r for r in self.rows if r["epoch"] == self.result.best_epoch)
        return row["val_acc"] == best and row["val_loss"] < kept["val_loss"]

    def finish(self, model: Classifier, report: dict[str, Any], skipped: dict[str, str]) -> None:
        self.result.status, self.result.test, self.result.skipped = "finished", report, skipped
        if not self.ctx.main:
            return
        self.meta.metrics.update(
            {"test_acc": report["accuracy"], "test_top5": report["top5"], "test_f1": report["macro_f1"]}
        )
        values: dict[str, Any] = {}
        if self.config.save:  # the final file carries the test metrics too
            values["checkpoint_sha256"] = save_checkpoint(self.checkpoint, model, self.meta)
            self.last.unlink(missing_ok=True)  # a finished run is not resumed: its optimizer state goes
            values["last_checkpoint_path"] = None
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
        if self.ctx.main and self.conn is not None and self.id:
            run_rows.update_run(self.conn, self.id, status=status, skipped=skipped or {}, error=error, **self._ended())

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

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


# ---------------------------------------------------------------- model plan: architecture, weights, preprocessing


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


@dataclass
class _Plan:
    """What every rank needs to build the same model (rank 0 decides it; weights reach the others by broadcast)."""

    arch: str
    mode: str
    prep: Preprocessing
    imagenet_head: bool
    imagenet_overlap: bool
    init_from: str | None = None  # what the record says the weights came from
    notes: list[str] = field(default_factory=list)


@dataclass
class _Start:
    """Where the weights (and, when resuming, the rest of the training state) come from: rank 0 only."""

    weights: dict | None = None  # warm start: tensors to carry (name -> tensor)
    state: dict | None = None  # resume: the saved training state
    model_state: dict | None = None  # resume: the weights of the last completed epoch


def _warm_source(ref: str, conn) -> tuple[Any, Any]:
    """The checkpoint a warm start reads (a run id or a path) as a ModelSource, and its run when the store has
    it."""
    from dogbreed import sources
    from dogbreed.evaluate import run_of

    if ref.isdigit():
        source = sources.from_run(conn, int(ref))
    else:
        source = sources.from_checkpoint(ref)
        if source.kind != "checkpoint":
            raise DogbreedError(f"--from needs a dogbreed checkpoint (.pt), not an exported model: {ref}")
    return source, run_of(conn, source)


def _plan_warm_start(config: TrainConfig, classes: list[list[str]], db_path: Path) -> tuple[_Plan, _Start]:
    """--from: the source's architecture, mode and preprocessing unless the options say otherwise; its weights
    wherever they fit (the head only for the same breeds in the same mode)."""
    from dogbreed.evaluate import imagenet_overlap

    conn = connect(db_path)
    try:
        source, source_run = _warm_source(str(config.init_from), conn)
    finally:
        conn.close()
    meta, state, _ = read_checkpoint(source.ref)
    if config.model is not None and resolve_arch(config.model) != meta.arch:
        raise DogbreedError(
            f"--from {config.init_from} is a {meta.arch}; a warm start keeps the architecture (drop --model)"
        )
    mode = config.mode or meta.mode
    if config.image_size in (None, meta.image_size):
        prep = meta.preprocessing
    else:
        prep = preprocessing_for(meta.arch, config.image_size)
    same_head = mode == meta.mode and meta.wnids == [c[0] for c in classes]
    carried = {k: v for k, v in state.items() if k.startswith(("backbone.", "imagenet_fc.")) or same_head}
    notes = []
    if not same_head:
        why = f"{meta.mode} head -> {mode} head" if mode != meta.mode else "the dataset's breeds differ"
        notes.append(f"warm start from {source.name}: backbone carried over, the head starts fresh ({why})")
    overlap = imagenet_overlap(source, source_run, meta)
    label = f"run {source_run.id}" if source_run is not None else source.ref
    plan = _Plan(meta.arch, mode, prep, meta.imagenet_head and mode == "extractor", overlap, label, notes)
    return plan, _Start(weights=carried)


def _plan_fresh(config: TrainConfig) -> _Plan:
    arch = resolve_arch(config.model or "ResNet")
    mode = config.mode or "extractor"
    from_imagenet = config.pretrained or config.weights is not None
    keep = mode == "extractor" and from_imagenet
    return _Plan(arch, mode, preprocessing_for(arch, config.image_size), keep, from_imagenet)


def _build(plan: _Plan, config: TrainConfig, num_classes: int, ctx: Context, fresh: bool) -> Classifier:
    """The model on every rank. Only a fresh run on rank 0 reads ImageNet weights: warm starts and resumes load
    their own, and the other ranks get rank 0's by broadcast."""
    if ctx.main and fresh and plan.init_from is None:
        pretrained = config.pretrained and config.weights is None
        return build_model(
            plan.arch,
            plan.mode,
            num_classes,
            pretrained=pretrained,
            weights_file=config.weights,
            keep_imagenet_head=plan.imagenet_head,
        )
    return build_model(plan.arch, plan.mode, num_classes, keep_imagenet_head=plan.imagenet_head)


def _load_carried(model: Classifier, carried: dict, what: str) -> None:
    own = model.state_dict()
    fits = {k: v for k, v in carried.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not any(k.startswith("backbone.") for k in fits):
        raise DogbreedError(f"{what} does not fit this model (no backbone weights match)")
    model.load_state_dict(fits, strict=False)


# ---------------------------------------------------------------- checks


def _check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise DogbreedError("--epochs must be at least 1")
    if not math.isfinite(config.lr) or config.lr <= 0:
        raise DogbreedError(f"--lr must be a positive number, not {config.lr}")
    if not 0 <= config.seed < 2**32:
        raise DogbreedError("--seed must be from 0 to 2^32 - 1")
    if config.image_size is not None and not 16 <= config.image_size <= 1024:
        raise DogbreedError("--image-size must be from 16 to 1024 pixels")
    if config.init_from is not None and config.weights is not None:
        raise DogbreedError("--from already gives the starting weights; drop --weights")


def tensorboard_writer(folder: Path, run_id: int, name: str) -> Any:
    """A TensorBoard SummaryWriter logging into ``folder/run<ID>-<name>``; a one-line error without the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DogbreedError(
            "--tensorboard needs the tensorboard package: pip install tensorboard (or drop --tensorboard)"
        ) from None
    return SummaryWriter(log_dir=str(Path(folder) / f"run{run_id}-{safe_name(name)}"))


def check_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise DogbreedError(
            "--tensorboard needs the tensorboard package: pip install tensorboard (or drop --tensorboard)"
        ) from None


TENSORBOARD_SERIES = (
    ("loss/train", "train_loss"),
    ("loss/validation", "val_loss"),
    ("accuracy/train", "train_acc"),
    ("accuracy/validation", "val_acc"),
    ("top5/validation", "val_top5"),
    ("macro_f1/train", "train_f1"),
    ("macro_f1/validation", "val_f1"),
    ("lr", "lr"),
    ("seconds_per_epoch", "seconds"),
)


# ---------------------------------------------------------------- SIGTERM


class _SigtermAsException:
    """While training (main thread only), SIGTERM raises ``Terminated`` so the run is recorded as failed instead of
    the process vanishing mid-epoch with its record still 'running'. ``hold`` ignores further SIGTERMs while the
    end of the run is written; leaving restores the previous handler."""

    def __enter__(self) -> _SigtermAsException:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the run is being recorded as failed
        raise Terminated()

    def hold(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _is_peer_failure(exc: BaseException) -> bool:
    """An error of the collective layer: another rank died or hung up (gloo reports a reset connection as a plain
    RuntimeError naming itself)."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection reset", "closed"))


# ---------------------------------------------------------------- entry points


def train(config: TrainConfig, db_path: Path, listener: Listener | None = None) -> TrainResult:
    """Train, select the best epoch on validation, report on test, record everything. See the module doc."""
    return _session(db_path, listener, config=config)


def resume(
    run_id: int,
    db_path: Path,
    listener: Listener | None = None,
    *,
    checkpoints_dir: Path | None = None,
    **overrides: Any,
) -> TrainResult:
    """Continue run ``run_id`` from its last completed epoch, in the same record. ``overrides`` may change what
    does not alter the result's meaning: device, workers (data loading), dataset (moved), tensorboard."""
    allowed = {"device", "workers", "dataset", "tensorboard"}
    unknown = set(overrides) - allowed
    if unknown:
        raise DogbreedError(f"a resumed run keeps its own settings; these cannot change: {', '.join(sorted(unknown))}")
    return _session(db_path, listener, resume_id=run_id, overrides=overrides, checkpoints_dir=checkpoints_dir)


def _session(
    db_path: Path,
    listener: Listener | None,
    *,
    config: TrainConfig | None = None,
    resume_id: int | None = None,
    overrides: dict[str, Any] | None = None,
    checkpoints_dir: Path | None = None,
) -> TrainResult:
    listener = listener or Listener()
    device_request = (overrides or {}).get("device") or (config.device if config else "auto")
    ctx, rank_device = distributed.start(device_request)
    if not ctx.main:
        listener = Listener()  # rank 0 alone speaks
    try:
        state = model_state = None
        if resume_id is not None:
            config, state, model_state = _load_resume(db_path, resume_id, overrides or {}, checkpoints_dir, ctx)
        return _fit(config, db_path, listener, ctx, rank_device, resume_id, state, model_state)
    finally:
        listener.close()
        distributed.stop(ctx)


def _load_resume(
    db_path: Path, run_id: int, overrides: dict[str, Any], checkpoints_dir: Path | None, ctx: Context
) -> tuple[TrainConfig, dict | None, dict | None]:
    """Rank 0 reads the run and its saved state; every rank gets the configuration (and, later, by broadcast, the
    optimizer state)."""
    config = state = model_state = None
    if ctx.main:
        conn = connect(db_path)
        try:
            run_rows.mark_abandoned(conn)
            run = run_rows.get_run(conn, run_id)
        finally:
            conn.close()
        if run is None:
            raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
        if run.status == "finished":
            raise DogbreedError(
                f"run {run_id} already finished; to train further start a new run from it: --from {run_id}"
            )
        if run.status == "running":
            raise DogbreedError(f"run {run_id} is still running (its process is alive); stop it before resuming")
        if not run.last_checkpoint_path or not Path(run.last_checkpoint_path).is_file():
            raise DogbreedError(
                f"run {run_id} kept no training state to resume from (it ended before its first epoch, ran with "
                "--no-save, or its .last.pt file was removed); start a new run"
            )
        config = TrainConfig.from_params(run.params or {}, checkpoints_dir or Path(run.last_checkpoint_path).parent)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, Path(value) if key in ("dataset", "tensorboard") else value)
        meta, model_state, rest = read_checkpoint(run.last_checkpoint_path)
        state = _checked_state(rest.get(STATE_KEY), run.last_checkpoint_path, config.epochs)
        state = {**state, "meta": asdict(meta)}
    config = distributed.broadcast(ctx, config)
    return config, state, model_state


_STATE_TYPES = {
    "epoch": int,
    "optimizer": dict,
    "scheduler": dict,
    "epochs": list,
    "best_epoch": int,
    "best_val_acc": float,
    "rng": list,
}


def _checked_state(state: Any, path: str, epochs: int) -> dict:
    """A saved training state with the parts resuming reads, of the right types (a damaged or crafted file is a
    one-line error, not a traceback half-way through restoring)."""
    if not isinstance(state, dict):
        raise DogbreedError(f"{path} holds no training state to resume from")
    for key, kind in _STATE_TYPES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise DogbreedError(f"{path} holds a damaged training state ({key!r} is missing or not a {kind.__name__})")
    if not 1 <= state["epoch"] <= epochs or len(state["epochs"]) != state["epoch"]:
        raise DogbreedError(f"{path} holds a damaged training state (epoch {state['epoch']} of {epochs})")
    return state


def _fit(
    config: TrainConfig,
    db_path: Path,
    listener: Listener,
    ctx: Context,
    rank_device: torch.device | None,
    resume_id: int | None,
    state: dict | None,
    model_state: dict | None,
) -> TrainResult:
    from dogbreed import mixed_precision

    _check_config(config)
    config.dataset = Path(config.dataset).expanduser().resolve()  # the record must find it from anywhere
    if config.tensorboard is not None:
        check_tensorboard()
    _seed_everything(config.seed + ctx.rank)
    device = rank_device if rank_device is not None else _device(config, listener)
    amp = mixed_precision.choose(device, config.precision)
    if amp.warning:
        listener.warn(amp.warning)
    data = _prepare_data(config, listener, ctx)
    classes = [[b.wnid, b.name] for b in data.index.classes]
    plan, model = _model(config, db_path, classes, ctx, device, state, model_state, listener)
    device_label = f"{device} x{ctx.world} ({ctx.backend})" if ctx.active else str(device)
    run = _open_run(config, db_path, ctx, plan, classes, device_label, amp, resume_id)
    fitter, tb = None, None
    with _SigtermAsException() as guard:
        try:
            cached = plan.mode == "extractor" and config.cache_features
            fitter = (_CachedHeadFitter if cached else _FullFitter)(
                model, data, config, plan.prep, device, listener, amp, ctx
            )
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fitter.optimizer, T_max=config.epochs)
            scaler = amp.grad_scaler()
            shared = distributed.broadcast(ctx, _shareable(state))
            state = state if ctx.main else shared
            first = 1
            if state is not None:
                first = _restore(state, run, fitter, scheduler, scaler, device, ctx, listener, model)
                if ctx.main:
                    run_rows.update_run(run.conn, run.id, device=device_label, precision=amp.name)
            _announce(listener, run, plan, data, device_label, amp, cached, first)
            if ctx.main and config.tensorboard is not None:
                tb = tensorboard_writer(config.tensorboard, run.id, config.name or f"{plan.arch}-{plan.mode}")
            for epoch in range(first, config.epochs + 1):
                _one_epoch(epoch, run, fitter, scheduler, scaler, model, len(classes), device, ctx, listener, tb)
            _test_and_finish(run, model, data, classes, plan, device, ctx, listener, fitter)
        except KeyboardInterrupt:
            guard.hold()
            run.stop("interrupted", _skipped(data.unreadable, fitter.skipped if fitter else set()))
        except Terminated:
            run.stop("failed", error="terminated by SIGTERM (another training process failed, or it was stopped)")
            raise DogbreedError(
                f"training was terminated (SIGTERM); run {run.id} is marked failed; continue it with "
                f"'dogbreed train --resume {run.id}'"
            ) from None
        except BaseException as exc:
            guard.hold()
            if ctx.active and _is_peer_failure(exc):
                text = " ".join(str(exc).split())[:300]
                run.stop("failed", error=f"another training process failed: {text}")
                raise DogbreedError(
                    f"another training process failed; run {run.id} is marked failed; continue it with "
                    f"'dogbreed train --resume {run.id}'"
                ) from None
            run.stop("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            if tb is not None:
                tb.close()
            run.close()
    return run.result


def _device(config: TrainConfig, listener: Listener) -> torch.device:
    device, warning = select_device(config.device)
    if warning:
        listener.warn(warning)
    return device


def _model(
    config: TrainConfig,
    db_path: Path,
    classes: list[list[str]],
    ctx: Context,
    device: torch.device,
    state: dict | None,
    model_state: dict | None,
    listener: Listener,
) -> tuple[_Plan, Classifier]:
    """Rank 0 decides the model (fresh, warm-started or resumed) and loads its weights; every rank builds the same
    and receives rank 0's weights."""
    start, plan = _Start(), None
    if ctx.main:
        if state is not None:
            plan, start = _plan_resumed(state, config, classes), _Start(state=state, model_state=model_state)
        elif config.init_from is not None:
            plan, start = _plan_warm_start(config, classes, db_path)
        else:
            plan = _plan_fresh(config)
    plan = distributed.broadcast(ctx, plan)
    for text in plan.notes:
        listener.warn(text)
    model = _build(plan, config, len(classes), ctx, fresh=state is None)
    if start.weights is not None:
        _load_carried(model, start.weights, f"--from {config.init_from}")
    if start.model_state is not None:
        model.load_state_dict(start.model_state)
    model = model.to(device)
    if state is None:  # before any run is recorded (a resumed run already trained at this size)
        check_input_size(model, plan.arch, plan.prep.crop_size, device)
    distributed.sync_weights(ctx, model)
    return plan, model


def _open_run(
    config: TrainConfig,
    db_path: Path,
    ctx: Context,
    plan: _Plan,
    classes: list[list[str]],
    device_label: str,
    amp: Precision,
    resume_id: int | None,
) -> _Run:
    prep = plan.prep
    meta = CheckpointMeta(
        plan.arch,
        plan.mode,
        classes,
        image_size=prep.crop_size,
        mean=list(prep.mean),
        std=list(prep.std),
        resize_size=prep.resize_size,
        interpolation=prep.interpolation,
        metrics={"imagenet_overlap": plan.imagenet_overlap},
    )
    run = _Run(config, ctx, meta)
    params = {
        **config.params(),
        "model": plan.arch,
        "mode": plan.mode,
        "world_size": ctx.world,
        "imagenet_overlap": plan.imagenet_overlap,
    }
    values = {
        "name": config.name or f"{plan.arch}-{plan.mode}",
        "model": plan.arch,
        "mode": plan.mode,
        "device": device_label,
        "dataset": str(config.dataset),
        "params": params,
        "num_classes": len(classes),
        "precision": amp.name,
        "init_from": plan.init_from,
    }
    run.open(db_path, resume_id, values)
    run.result.precision = amp.name
    return run


def _one_epoch(
    epoch: int,
    run: _Run,
    fitter,
    scheduler,
    scaler,
    model: Classifier,
    num_classes: int,
    device: torch.device,
    ctx: Context,
    listener: Listener,
    tb,
) -> None:
    """Train and validate one epoch, then record it with the full training state (see ``_Run.end_epoch``)."""
    began = time.perf_counter()
    lr = fitter.optimizer.param_groups[0]["lr"]
    trained, val = fitter.epoch(epoch, scaler)
    scheduler.step()
    row = _epoch_row(epoch, trained, val, num_classes, lr, time.perf_counter() - began)
    training_state = {
        "epoch": epoch,
        "world_size": ctx.world,
        "optimizer": fitter.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": distributed.gather(ctx, _rng_state(device, fitter.generator)),
    }
    run.end_epoch(model, row, training_state)
    if tb is not None:
        for tag, key in TENSORBOARD_SERIES:
            tb.add_scalar(tag, row[key], epoch)
        tb.flush()
    listener.epoch({**row, "best": run.result.best_epoch == epoch})


def _test_and_finish(
    run: _Run,
    model: Classifier,
    data: _Data,
    classes: list[list[str]],
    plan: _Plan,
    device: torch.device,
    ctx: Context,
    listener: Listener,
    fitter,
) -> None:
    """The kept epoch's weights on the test split, once; the run finished with its report."""
    listener.stage(f"evaluating epoch {run.result.best_epoch} on the test split ({len(data.test)} images)")
    model.load_state_dict(run.best_state)
    model.eval()
    test = _score_test(model, run, data, run.config, device, ctx, listener)
    report = build_report(test.y_true, test.probs, [c[0] for c in classes], test.keys)
    report["imagenet_overlap"] = plan.imagenet_overlap
    failed = set().union(*distributed.gather(ctx, fitter.skipped)) | set(test.failed)
    run.finish(model, report, _skipped(data.unreadable, failed))


def _shareable(state: dict | None) -> dict | None:
    """The part of a saved state other ranks need (not the weights: those travel by ``sync_weights``)."""
    if state is None:
        return None
    return {k: v for k, v in state.items() if k != "best_state"}


def _plan_resumed(state: dict, config: TrainConfig, classes: list[list[str]]) -> _Plan:
    meta = state["meta"]
    if [c[0] for c in meta["classes"]] != [c[0] for c in classes]:
        raise DogbreedError(
            f"the dataset {config.dataset} no longer has the breeds this run trained on; resume with the same data"
        )
    prep = Preprocessing(meta["image_size"], meta["resize_size"], meta["interpolation"], meta["mean"], meta["std"])
    overlap = bool((meta.get("metrics") or {}).get("imagenet_overlap", False))
    return _Plan(meta["arch"], meta["mode"], prep, bool(meta["imagenet_head"]), overlap)


def _restore(
    state: dict, run: _Run, fitter, scheduler, scaler, device, ctx: Context, listener: Listener, model: Classifier
) -> int:
    """Optimizer, scheduler, gradient scaler and RNG state as they were after the saved epoch; the run record
    reopened. Returns the first epoch still to train."""
    try:
        fitter.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DogbreedError(
            f"run {run.id}'s saved optimizer state does not fit its model ({type(exc).__name__}: {exc}"[:300] + ")"
        ) from None
    rng = state.get("rng") or []
    if len(rng) == ctx.world:
        _set_rng_state(rng[ctx.rank], device, fitter.generator)
    else:
        listener.warn(
            f"this run was saved by {len(rng)} process(es) and resumes on {ctx.world}: random streams restart "
            "from the seed, so the remaining epochs will not repeat an uninterrupted run exactly"
        )
        _seed_everything(run.config.seed + 1000 * state["epoch"] + ctx.rank)
    best = None
    if ctx.main:
        best = state.get("best_state") or copy.deepcopy(model.state_dict())
    best = _broadcast_weights(ctx, best, model)
    run.restore(state, best, model)
    return int(state["epoch"]) + 1


def _broadcast_weights(ctx: Context, weights: dict | None, model: Classifier) -> dict:
    """Rank 0's ``weights`` (a state dict shaped like ``model``'s) on every rank."""
    if not ctx.active:
        return weights
    import torch.distributed as dist

    own = model.state_dict()
    if not ctx.main:
        weights = {k: torch.empty_like(v) for k, v in own.items()}
    out = {}
    for key, value in weights.items():
        tensor = value.to(own[key].device).contiguous()
        dist.broadcast(tensor, src=0)
        out[key] = tensor
    return out


def _announce(
    listener, run: _Run, plan: _Plan, data: _Data, device_label: str, amp: Precision, cached: bool, first: int
) -> None:
    prep = plan.prep
    resumed = f", resumed after epoch {first - 1}" if first > 1 else ""
    start = f", warm start from {plan.init_from}" if plan.init_from else ""
    listener.stage(
        f"run {run.id}: {plan.arch} {plan.mode} on {device_label} at {amp.name}, {len(data.index.classes)} breeds, "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images "
        f"({'official' if data.official else 'seeded'} split); input {prep.crop_size} px (resize "
        f"{prep.resize_size}, {prep.interpolation}){start}{resumed}"
    )
    listener.stage(f"precision: {amp.note}")
    if plan.imagenet_overlap:
        from dogbreed.zoo import IMAGENET_CAVEAT

        listener.warn(IMAGENET_CAVEAT)
    if cached:
        listener.stage(
            "extractor mode: backbone features are computed once from centre crops, so the head trains without "
            "random crops or flips (--no-cache-features keeps them, at a full forward pass per epoch)"
        )


def _score_test(
    model: Classifier, run: _Run, data: _Data, config: TrainConfig, device, ctx: Context, listener: Listener
):
    """The best weights on the test split through predict's engine and preprocessing (each rank a share), exactly
    as ``dogbreed eval`` scores them."""
    from dogbreed import engines, sources
    from dogbreed.evaluate import Scored

    temporary = None
    if ctx.main and config.save and run.result.checkpoint is not None:
        weights_file = run.checkpoint  # written when the best epoch ended: these very weights
    else:
        fd, temporary = tempfile.mkstemp(prefix=".dogbreed-test-", suffix=".pt")
        os.close(fd)
        save_checkpoint(temporary, model, copy.deepcopy(run.meta))
        weights_file = Path(temporary)
    try:
        source = sources.from_checkpoint(weights_file)
        engine = engines.load_engine(source, engines.choose(source, str(device), "torch", "fp32"))
        share = [data.test[i] for i in ctx.shard(len(data.test))]
        images = DatasetImages(data.index, share, EvalTransform(engine.spec.preprocessing))
        listener.start("test", len(share))
        local = score(engine, loader(images, config.batch, workers=config.workers), listener.advance)
        listener.stop()
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    parts = distributed.gather(ctx, local)
    keys = [k for p in parts for k in p.keys]
    if not keys:
        raise DogbreedError("no readable images to evaluate on")
    at = _in_order(keys, [s.path for s in data.test])
    y = np.concatenate([p.y_true for p in parts])[at]
    probs = np.concatenate([p.probs for p in parts if len(p.y_true)])[at]
    return Scored(y, probs, [keys[i] for i in at], [f for p in parts for f in p.failed])
