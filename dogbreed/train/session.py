"""One training run from start to end on this process (one rank of a distributed run): the ``Session`` holds what
every step needs (configuration, store, listener, device, precision, data, model, run record, fitter, scheduler),
so each step is a method, not a function of ten arguments.

Order: check the configuration; seed; pick the device and precision; open the data; plan and build the model;
open (or reopen) the run record; then, under a SIGTERM guard, train epoch after epoch, recording each with the
full training state; finally score the kept epoch on the test split, once, through predict's engine. Ctrl-C keeps
the best checkpoint and marks the run interrupted; SIGTERM or a failed peer rank marks it failed.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dogbreed.breeds import is_own
from dogbreed.datasets import PARTS, OpenedDataset, open_dataset
from dogbreed.datasets.loaders import DatasetImages, EvalTransform, loader
from dogbreed.errors import DogbreedError
from dogbreed.evaluate import score
from dogbreed.formats.checkpoint import save_checkpoint
from dogbreed.metrics import build_report
from dogbreed.models.build import check_input_size
from dogbreed.models.devices import select_device
from dogbreed.procs import HeldSignals
from dogbreed.train import data as data_sources
from dogbreed.train import distributed, plan, state
from dogbreed.train.config import Listener, Terminated, TrainConfig, TrainResult
from dogbreed.train.distributed import Context
from dogbreed.train.fitters import make_fitter
from dogbreed.train.loops import Loop, gathered_scores
from dogbreed.train.precision import Precision, training_precision
from dogbreed.train.record import (
    RunRecorder,
    check_tensorboard,
    epoch_record,
    log_epoch,
    skipped_images,
    tensorboard_writer,
)

TERMINATED = "terminated by SIGTERM (another training process failed, or it was stopped)"
RESUMABLE = frozenset({"device", "workers", "dataset", "tensorboard", "check_engines"})  # a resume may change


def train(config: TrainConfig, db_path: Path, listener: Listener | None = None) -> TrainResult:
    """Train, select the best epoch on validation, report on test, record everything (see ``dogbreed.train``)."""
    return _on_every_rank(db_path, listener, config=config)


def resume(
    run_id: int,
    db_path: Path,
    listener: Listener | None = None,
    *,
    checkpoints_dir: Path | None = None,
    fixed_options: Sequence[str] = (),
    **overrides: Any,
) -> TrainResult:
    """Continue run ``run_id`` from its last completed epoch, in the same record. ``overrides`` may change what
    does not alter the result's meaning: device, workers (data loading), dataset (moved), tensorboard.
    ``fixed_options``: options the caller was given that a resume cannot honour (named in the error, after the run
    itself is found)."""
    if distributed.env_rank() == 0:
        _check_resume_request(db_path, run_id, fixed_options)
    unknown = set(overrides) - RESUMABLE
    if unknown:
        raise DogbreedError(f"a resumed run keeps its own settings; these cannot change: {', '.join(sorted(unknown))}")
    return _on_every_rank(db_path, listener, resume_id=run_id, overrides=overrides, checkpoints_dir=checkpoints_dir)


def _check_resume_request(db_path: Path, run_id: int, fixed_options: Sequence[str]) -> None:
    """The first things to know about a resume: that the run exists, then that nothing fixing its result changes."""
    from dogbreed.store import open_store
    from dogbreed.store.runs import get_run

    conn = open_store(db_path)  # created or migrated before training writes to it
    try:
        known = get_run(conn, run_id) is not None
    finally:
        conn.close()
    if not known:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    if fixed_options:
        raise DogbreedError(
            f"--resume continues run {run_id} with its own settings; drop {', '.join(fixed_options)} "
            f"(or start a new run from it with --from {run_id})"
        )


def _on_every_rank(
    db_path: Path,
    listener: Listener | None,
    *,
    config: TrainConfig | None = None,
    resume_id: int | None = None,
    overrides: dict[str, Any] | None = None,
    checkpoints_dir: Path | None = None,
) -> TrainResult:
    """Join the distributed run (when under torchrun), read what a resume continues from, and train."""
    listener = listener or Listener()
    if distributed.env_rank() == 0:
        from dogbreed.store import open_store

        open_store(db_path).close()  # created or migrated before training writes to it
    device_request = (overrides or {}).get("device") or (config.device if config else "auto")
    ctx, rank_device = distributed.start(device_request)
    if not ctx.main:
        listener = Listener()  # rank 0 alone speaks
    claim = None
    try:
        session = Session(config, db_path, listener, ctx, rank_device)
        if resume_id is not None:
            session.config, session.state, session.model_state, claim = state.load_resume(
                db_path, resume_id, overrides or {}, checkpoints_dir, ctx
            )
            session.resume_id = resume_id
        return session.train()
    except BaseException:
        if claim is not None:  # a resume that never started training (its data or model could not be used)
            _hand_back(db_path, resume_id, claim)
        raise
    finally:
        listener.close()
        distributed.stop(ctx)


def _hand_back(db_path: Path, run_id: int, claim: Any) -> None:
    """The claimed run as it was, unless training recorded how it ended (see ``runs.hand_back``)."""
    from dogbreed.store import connect
    from dogbreed.store.runs import hand_back

    conn = connect(db_path)
    try:
        hand_back(conn, run_id, claim, os.getpid())
    finally:
        conn.close()


class Session:
    """Everything one rank's training run works with. Built empty of data and model; ``train`` fills it in."""

    def __init__(self, config: TrainConfig | None, db_path: Path, listener: Listener, ctx: Context, device: Any = None):
        self.config, self.db_path, self.listener, self.ctx = config, db_path, listener, ctx
        self.device: torch.device | None = device  # torchrun's choice for this rank, else picked from the config
        self.resume_id: int | None = None
        self.state: dict | None = None  # a resumed run's saved training state (rank 0 reads it)
        self.model_state: dict | None = None  # and its last epoch's weights
        self.precision: Precision | None = None
        self.data: OpenedDataset | None = None
        self.classes: list[list[str]] = []  # [wnid, name] per output, in order
        self.plan: plan.Plan | None = None
        self.model: Any = None
        self.record: RunRecorder | None = None
        self.fitter: Any = None
        self.scheduler: Any = None
        self.scaler: Any = None
        self.tensorboard: Any = None

    @property
    def device_label(self) -> str:
        ctx = self.ctx
        return f"{self.device} x{ctx.world} ({ctx.backend})" if ctx.active else str(self.device)

    # ---------------------------------------------------------------- the run, start to end

    def train(self) -> TrainResult:
        """The run, start to end (see the module doc); its result, whatever the way it ended."""
        self._prepare()
        with distributed.SigtermAsException() as guard, HeldSignals() as held:
            self._open_run()  # stop signals wait meanwhile: a recorded run always meets the handlers that close it
            try:
                held.release()
                first = self._start_fitting()
                self._announce(first)
                if self.ctx.main and self.config.tensorboard is not None:
                    name = self.config.name or f"{self.plan.arch}-{self.plan.mode}"
                    self.tensorboard = tensorboard_writer(self.config.tensorboard, self.record.id, name)
                for epoch in range(first, self.config.epochs + 1):
                    self._one_epoch(epoch)
                self._test_and_finish()
            except KeyboardInterrupt:
                guard.hold()
                failed = self.fitter.skipped if self.fitter else set()
                self.record.stop("interrupted", skipped_images(self.data.unreadable, failed))
            except Terminated:
                self.record.stop("failed", error=TERMINATED)
                error = DogbreedError(
                    f"training was terminated (SIGTERM); run {self.record.id} is marked failed; "
                    f"{self.record.resume_advice()}"
                )
                error.exit_code = 143  # 128 + SIGTERM, as a shell reports a terminated command
                raise error from None
            except BaseException as exc:
                guard.hold()
                self._record_failure(exc)
                raise
            finally:
                if self.tensorboard is not None:
                    self.tensorboard.close()
                self.record.close()
        return self.record.result

    def _prepare(self) -> None:
        """Everything before the run is recorded: settings checked, seeds, device, precision, data, model."""
        config, ctx = self.config, self.ctx
        config.check(fresh=self.resume_id is None)
        if config.dataset is not None:
            config.dataset = Path(config.dataset).expanduser().resolve()  # the record must find it from anywhere
        if config.tensorboard is not None:
            check_tensorboard()
        state.seed_everything(config.seed + ctx.rank)
        if self.device is None:
            self.device, warning = select_device(config.device)
            if warning:
                self.listener.warn(warning)
        self.precision = training_precision(self.device, config.precision)
        if self.precision.warning:
            self.listener.warn(self.precision.warning)
        self.data = self._open_data()
        self.classes = [[b.wnid, b.name] for b in self.data.index.classes]
        self._build_model()

    def _open_data(self) -> OpenedDataset:
        """The dataset split and verified; unreadable images are left out of every split. Rank 0 verifies; the
        others take its verdict."""
        config, listener = self.config, self.listener
        data = self._opened(data_sources.vocabulary(self.db_path, config, self.ctx, listener))
        bad = distributed.broadcast(self.ctx, data.unreadable)
        for path, reason in sorted(bad.items()):
            listener.warn(f"skipping unreadable dataset image {path}: {reason}")
        return data.leaving_out(bad)

    def _opened(self, vocabulary: Any) -> OpenedDataset:
        config = self.config
        return open_dataset(
            config.dataset,
            seed=config.seed,
            val_fraction=config.val_fraction,
            limit_per_class=config.limit_per_class,
            verify=self.ctx.main,
            require=PARTS,
            on_stage=self.listener.stage,
            on_note=self.listener.warn,
            store=data_sources.store_part(self.db_path, config, self.resume_id),
            vocabulary=vocabulary,
            skip_small=config.skip_small,
        )

    def _build_model(self) -> None:
        """Rank 0 decides the model (fresh, warm-started or resumed) and loads its weights; every rank builds the
        same and receives rank 0's weights."""
        config, ctx, resumed = self.config, self.ctx, self.state is not None
        start, decided = plan.Start(), None
        if ctx.main:
            decided, start = plan.decide(config, self.db_path, self.classes, self.state, self.model_state)
        self.plan = distributed.broadcast(ctx, decided)
        for text in self.plan.notes:
            self.listener.warn(text)
        model = plan.build(self.plan, config, len(self.classes), ctx, fresh=not resumed)
        if start.weights is not None:
            plan.load_carried(model, start.weights, f"--from {config.init_from}")
        if start.model_state is not None:
            model.load_state_dict(start.model_state)
        model = model.to(self.device)
        if not resumed:  # before any run is recorded (a resumed run already trained at this size)
            check_input_size(model, self.plan.arch, self.plan.prep.crop_size, self.device)
        distributed.sync_weights(ctx, model)
        self.model = model

    def _open_run(self) -> None:
        config, chosen, ctx = self.config, self.plan, self.ctx
        self.record = RunRecorder(config, ctx, plan.checkpoint_meta(chosen, self.classes, self.data.synthetic))
        params = {
            **config.params(),
            "model": chosen.arch,
            "mode": chosen.mode,
            "world_size": ctx.world,
            "imagenet_overlap": chosen.imagenet_overlap,
        }
        values = {
            "name": config.name or f"{chosen.arch}-{chosen.mode}",
            "model": chosen.arch,
            "mode": chosen.mode,
            "device": self.device_label,
            "dataset": config.data_name,
            "params": params,
            "num_classes": len(self.classes),
            "precision": self.precision.name,
            "init_from": chosen.init_from,
            "classes": [key for key, _ in self.classes],
            "synthetic": self.data.synthetic,
        }
        self.record.open(self.db_path, self.resume_id, values)
        self.record.result.precision = self.precision.name
        if self.ctx.main and self.resume_id is None:
            data_sources.record_store_splits(self.record.conn, self.record.id, self.data)

    def _start_fitting(self) -> int:
        """The fitter, its scheduler and gradient scaler, restored when resuming. Returns the first epoch to train."""
        config, ctx = self.config, self.ctx
        loop = Loop(self.device, self.listener, self.precision, ctx)
        self.fitter = make_fitter(self.model, self.data, config, self.plan.mode, self.plan.prep, loop)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.fitter.optimizer, T_max=config.epochs)
        self.scaler = self.precision.grad_scaler()
        shared = distributed.broadcast(ctx, state.shareable(self.state))
        saved = self.state if ctx.main else shared
        if saved is None:
            return 1
        first = self._restore(saved)
        self.record.resumed_on(self.device_label, self.precision.name)
        return first

    def _restore(self, saved: dict) -> int:
        """Optimizer, scheduler, gradient scaler and RNG state as they were after the saved epoch; the run record
        reopened. Returns the first epoch still to train."""
        ctx, fitter = self.ctx, self.fitter
        try:
            fitter.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            if self.scaler is not None and saved.get("scaler"):
                self.scaler.load_state_dict(saved["scaler"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            message = f"run {self.record.id}'s saved optimizer state does not fit its model ({detail}"
            raise DogbreedError(message[:300] + ")") from None
        rng = saved.get("rng") or []
        if len(rng) == ctx.world:
            state.set_rng_state(rng[ctx.rank], self.device, fitter.generator)
        else:
            self.listener.warn(
                f"this run was saved by {len(rng)} process(es) and resumes on {ctx.world}: random streams restart "
                "from the seed, so the remaining epochs will not repeat an uninterrupted run exactly"
            )
            state.seed_everything(self.config.seed + 1000 * saved["epoch"] + ctx.rank)
        best = None
        if ctx.main:
            best = saved.get("best_state") or copy.deepcopy(self.model.state_dict())
        best = distributed.broadcast_weights(ctx, best, self.model)
        self.record.restore(saved, best, self.model)
        return int(saved["epoch"]) + 1

    def _announce(self, first: int) -> None:
        chosen, data, amp, prep = self.plan, self.data, self.precision, self.plan.prep
        resumed = f", resumed after epoch {first - 1}" if first > 1 else ""
        start = f", warm start from {chosen.init_from}" if chosen.init_from else ""
        self.listener.stage(
            f"run {self.record.id}: {chosen.arch} {chosen.mode} on {self.device_label} at {amp.name}, "
            f"{len(data.index.classes)} breeds, "
            f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images "
            f"({'official' if data.official else 'seeded'} split); input {prep.crop_size} px (resize "
            f"{prep.resize_size}, {prep.interpolation}){start}{resumed}"
        )
        self.listener.stage(f"precision: {amp.note}")
        if chosen.explained:
            self.listener.stage(chosen.explained)
        if chosen.imagenet_overlap:
            from dogbreed.models.zoo import IMAGENET_CAVEAT

            self.listener.warn(IMAGENET_CAVEAT)
        if chosen.mode == "extractor" and self.config.cache_features:
            self.listener.stage(
                "extractor mode: backbone features are computed once from centre crops, so the head trains without "
                "random crops or flips (--no-cache-features keeps them, at a full forward pass per epoch)"
            )

    # ---------------------------------------------------------------- epochs

    def _one_epoch(self, epoch: int) -> None:
        """Train and validate one epoch, then record it with the full training state (see ``RunRecorder``)."""
        fitter, ctx = self.fitter, self.ctx
        began = time.perf_counter()
        lr = fitter.optimizer.param_groups[0]["lr"]
        trained, val = fitter.epoch(epoch, self.scaler)
        self.scheduler.step()
        row = epoch_record(epoch, trained, val, len(self.classes), lr, time.perf_counter() - began)
        training_state = {
            "epoch": epoch,
            "world_size": ctx.world,
            "optimizer": fitter.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": distributed.gather(ctx, state.rng_state(self.device, fitter.generator)),
        }
        self.record.end_epoch(self.model, row, training_state)
        if self.tensorboard is not None:
            log_epoch(self.tensorboard, row)
        self.listener.epoch({**row.as_dict(), "best": self.record.result.best_epoch == epoch})

    def _record_failure(self, exc: BaseException) -> None:
        """The run marked failed; a peer rank's failure becomes a one-line error naming the run to resume."""
        record = self.record
        if self.ctx.active and distributed.is_peer_failure(exc):
            text = " ".join(str(exc).split())[:300]
            record.stop("failed", error=f"another training process failed: {text}")
            raise DogbreedError(
                f"another training process failed; run {record.id} is marked failed; {record.resume_advice()}"
            ) from None
        record.stop("failed", error=f"{type(exc).__name__}: {exc}"[:2000])

    # ---------------------------------------------------------------- the test split, once

    def _test_and_finish(self) -> None:
        """The kept epoch's weights on the test split, once; the run finished with its report."""
        record, model, data = self.record, self.model, self.data
        self.listener.stage(f"evaluating epoch {record.result.best_epoch} on the test split ({len(data.test)} images)")
        model.load_state_dict(record.best_state)
        model.eval()
        test = self._score_test()
        own = {key: name for key, name in self.classes if is_own(key)}
        report = build_report(test.y_true, test.probs, [c[0] for c in self.classes], test.keys, names=own)
        report["imagenet_overlap"] = self.plan.imagenet_overlap
        failed = set().union(*distributed.gather(self.ctx, self.fitter.skipped)) | set(test.failed)
        record.finish(model, report, skipped_images(data.unreadable, failed))
        if self.ctx.main and self.config.check_engines and self.config.save and record.result.checkpoint:
            self._check_engines()

    def _check_engines(self) -> None:
        """Rank 0, the run finished: the faster engines measured against fp32 on held-out images and recorded, so
        predict's auto runs the fastest one that agrees with no further command (and the OpenVINO conversion is
        cached by then). Whatever happens here costs the run nothing: a failure or Ctrl-C is one warning, and
        'dogbreed check' measures later."""
        from dogbreed import checks, engines
        from dogbreed.models import sources

        record, device = self.record, str(self.device)
        if not checks.candidates_for(device):
            return
        source = sources.from_checkpoint(record.checkpoint, run_id=record.id)
        images = checks.held_out_images(
            self.data, f"run {record.id}'s dataset", checks.TRAIN_CHECK_IMAGES, db=Path(self.db_path)
        )
        self.listener.stage(f"measuring the faster engines against fp32 (for predict's auto) on {images.description}")
        self.listener.start("checking engines", len(images))
        seen = [0]

        def progress(done: int, _total: int) -> None:
            self.listener.advance(done - seen[0])
            seen[0] = done

        try:
            results = checks.check_model(record.conn, source, images, device, progress)
        except (Exception, KeyboardInterrupt, Terminated) as exc:  # the run is finished and recorded either way
            why = "interrupted" if not isinstance(exc, Exception) else " ".join(str(exc).split())[:200]
            self.listener.warn(f"the faster engines were not measured ({why}); later: dogbreed check --run {record.id}")
            return
        finally:
            self.listener.stop()
        chosen = engines.choose_for(record.conn, source, device)
        record.result.checks, record.result.checked_on = [r.to_dict() for r in results], images.description
        record.result.auto_engine = f"{chosen.engine} {chosen.precision}"
        if (chosen.engine, chosen.precision) == engines.REFERENCE:
            few = len(images) < engines.guard.MIN_IMAGES
            why = f"the guard needs {engines.guard.MIN_IMAGES} images; the dataset had {len(images)}" if few else ""
            record.result.auto_engine += f" ({why or 'no faster engine passed the guard'})"

    def _score_test(self) -> Any:
        """The best weights on the test split through predict's engine and preprocessing (each rank a share),
        exactly as ``dogbreed eval`` scores them."""
        with self._best_weights_file() as weights_file:
            local = self._score_share(weights_file)
        return gathered_scores(self.ctx, local, [s.path for s in self.data.test])

    @contextmanager
    def _best_weights_file(self) -> Iterator[Path]:
        """The run's kept checkpoint when rank 0 wrote one, else a temporary checkpoint of the best weights."""
        record = self.record
        if self.ctx.main and self.config.save and record.result.checkpoint is not None:
            yield record.checkpoint  # written when the best epoch ended: these very weights
            return
        fd, temporary = tempfile.mkstemp(prefix=".dogbreed-test-", suffix=".pt")
        os.close(fd)
        save_checkpoint(temporary, self.model, copy.deepcopy(record.meta))
        try:
            yield Path(temporary)
        finally:
            Path(temporary).unlink(missing_ok=True)

    def _score_share(self, weights_file: Path) -> Any:
        """This rank's share of the test split, scored."""
        from dogbreed import engines
        from dogbreed.models import sources

        config, ctx, data = self.config, self.ctx, self.data
        source = sources.from_checkpoint(weights_file)
        engine = engines.open_engine(None, source, str(self.device), "torch", "fp32")
        share = [data.test[i] for i in ctx.shard(len(data.test))]
        images = DatasetImages(data.index, share, EvalTransform(engine.spec.preprocessing))
        self.listener.start("test", len(share))
        local = score(engine, loader(images, config.batch, workers=config.workers), self.listener.advance)
        self.listener.stop()
        return local
