"""The record of one training run: its row in the store, its epochs (``store.runs.EpochRecord``), the best epoch so
far, its checkpoints (the kept one and the ``.last.pt`` training state), and its TensorBoard log.

Rank 0 alone writes the store and the files; every rank knows the best epoch and its weights.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.files import safe_name
from dogbreed.formats.checkpoint import CheckpointMeta, save_checkpoint
from dogbreed.metrics import compute_metrics
from dogbreed.pause import pause_point
from dogbreed.store import connect
from dogbreed.store import runs as run_rows
from dogbreed.store.runs import EpochRecord
from dogbreed.train import distributed
from dogbreed.train.config import TrainConfig, TrainResult
from dogbreed.train.distributed import Context
from dogbreed.train.loops import Evaluation
from dogbreed.train.state import STATE_KEY


def epoch_record(
    epoch: int, trained: tuple[float, float, float], val: Evaluation, num_classes: int, lr: float, seconds: float
) -> EpochRecord:
    """An epoch's figures: training's own (loss, accuracy, macro F1) and validation's."""
    m = compute_metrics(val.y_true, val.probs, num_classes)
    loss, acc, f1 = trained
    return EpochRecord(
        epoch=epoch,
        train_loss=loss,
        train_acc=acc,
        train_f1=f1,
        val_loss=val.loss,
        val_acc=m["acc"],
        val_top5=m["top5"],
        val_f1=m["macro_f1"],
        lr=lr,
        seconds=seconds,
    )


def skipped_images(verified_bad: dict[str, str], failed_during_run: set[str]) -> dict[str, str]:
    """Every image the run went without, and why."""
    skipped = dict(verified_bad)
    for path in failed_during_run:
        skipped.setdefault(path, "could not be decoded during training")
    return skipped


class RunRecorder:
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
        self.rows: list[EpochRecord] = []

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

    def restore(self, state: dict[str, Any], best_weights: dict, model: Any) -> None:
        """A resumed run: its epochs and best epoch as the saved state has them; the best checkpoint rewritten from
        the state (a kill between the two saves of an epoch leaves it one epoch behind)."""
        self.rows = [EpochRecord.from_dict(row) for row in state["epochs"]]
        self.result.epochs = [row.as_dict() for row in self.rows]
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

    def resumed_on(self, device: str, precision: str) -> None:
        """Rank 0: a resumed run records where it now runs (another device or precision than before, maybe)."""
        if self.ctx.main:
            run_rows.update_run(self.conn, self.id, device=device, precision=precision)

    def end_epoch(self, model: Any, row: EpochRecord, training_state: dict[str, Any]) -> None:
        """Keep the best weights (every rank); rank 0 writes the training state, then the best checkpoint, then
        the store. Each file is written atomically; a kill between them is repaired by ``restore``."""
        improved = self._better(row)
        self.rows.append(row)
        self.result.epochs.append(row.as_dict())
        if improved:
            self.best_state = copy.deepcopy(model.state_dict())
            self.result.best_epoch, self.result.best_val_acc = row.epoch, row.val_acc
            self.meta.metrics = {
                "best_epoch": row.epoch,
                **{k: getattr(row, k) for k in ("val_acc", "val_top5", "val_f1")},
                "imagenet_overlap": self.meta.metrics.get("imagenet_overlap", False),
                "synthetic": self.meta.metrics.get("synthetic", False),
            }
        if not self.ctx.main:
            return
        values: dict[str, Any] = {}
        if self.config.save:
            state = {
                **training_state,
                "epochs": [r.as_dict() for r in self.rows],  # plain values: torch.load(weights_only=True) reads them
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

    def _better(self, row: EpochRecord) -> bool:
        """Higher validation accuracy wins; at equal accuracy, lower validation loss (a tie is common on small
        validation sets, and the lower loss is the surer model)."""
        best = self.result.best_val_acc
        if best is None or row.val_acc > best:
            return True
        kept = next(r for r in self.rows if r.epoch == self.result.best_epoch)
        return row.val_acc == best and row.val_loss < kept.val_loss

    def finish(self, model: Any, report: dict[str, Any], skipped: dict[str, str]) -> None:
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

    def resume_advice(self) -> str:
        """What continues this run, said only when it can: its training state was saved after an epoch."""
        if self.config.save and self.rows and self.last.is_file():
            return f"continue it with 'dogbreed train --resume {self.id}'"
        why = "it ran with --no-save" if not self.config.save else "it ended before its first epoch"
        return f"it kept no training state to resume from ({why}): start a new run"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def _ended(self) -> dict[str, Any]:
        from dogbreed.store import utcnow

        return {"finished_at": utcnow(), "duration_s": time.perf_counter() - self.started}


# ---------------------------------------------------------------- TensorBoard

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
)  # (tag, EpochRecord field)
_NO_TENSORBOARD = "--tensorboard needs the tensorboard package: pip install tensorboard (or drop --tensorboard)"


def check_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise DogbreedError(_NO_TENSORBOARD) from None


def tensorboard_writer(folder: Path, run_id: int, name: str) -> Any:
    """A TensorBoard SummaryWriter logging into ``folder/run<ID>-<name>``; a one-line error without the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DogbreedError(_NO_TENSORBOARD) from None
    return SummaryWriter(log_dir=str(Path(folder) / f"run{run_id}-{safe_name(name)}"))


def log_epoch(writer: Any, row: EpochRecord) -> None:
    """One epoch's figures as TensorBoard scalars."""
    for tag, key in TENSORBOARD_SERIES:
        writer.add_scalar(tag, getattr(row, key), row.epoch)
    writer.flush()
