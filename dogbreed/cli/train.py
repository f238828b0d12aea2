"""train and stats: training runs and what they measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    BatchSizeOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    QuietOpt,
    db_path,
    epoch_table,
    err,
    examples,
    given_options,
    key_value_table,
    note,
    out,
    percent,
    pick,
    print_json,
    safe,
    warn,
)
from dogbreed.errors import DogbreedError


class RichTrainListener:
    """Renders training events: a progress bar per stage with live loss, a table row per epoch."""

    def __init__(self, quiet: bool = False):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=quiet or not err.is_terminal,
        )
        self.task = None
        self.header_printed = False

    def stage(self, text: str) -> None:
        if not self.quiet:
            err.print(f"[bold]{safe(text)}[/bold]", soft_wrap=True)

    def warn(self, text: str) -> None:
        warn(text)

    def start(self, description: str, total: int) -> None:
        self.progress.start()  # one live display for the whole run; tasks come and go
        self.task = self.progress.add_task(description, total=total, loss="")

    def advance(self, n: int = 1, loss: float | None = None) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=n, loss=f"loss {loss:.4f}" if loss is not None else "")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None

    def close(self) -> None:
        self.stop()
        self.progress.stop()

    def epoch(self, row: dict[str, Any]) -> None:
        if self.quiet:
            return
        out.print(epoch_table([row], header=not self.header_printed))
        self.header_printed = True


# What a resumed run may change: where things are and how they are shown, never what is trained.
RESUMABLE_OPTIONS = frozenset(
    {
        "dataset",
        "device",
        "loader_workers",
        "workers_old",
        "quiet",
        "as_json",
        "tensorboard",
        "nproc",
        "resume",
        "check_engines",
    }
)


def command_line(ctx: typer.Context, leave_out: set[str]) -> list[str]:
    """This command's arguments as given (with the store), rebuilt from what was parsed: how ``--nproc`` hands the
    same command to every rank."""
    args = ["--db", str(db_path(ctx)), ctx.info_name or "train"]
    given = given_options(ctx)
    for param in ctx.command.params:
        if param.name not in given or param.name in leave_out:
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            secondary = getattr(param, "secondary_opts", [])
            if value:
                args.append(param.opts[0])
            elif secondary:
                args.append(secondary[0])
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [param.opts[0], str(item)]
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


@app.command(
    "train",
    epilog=examples(
        "dogbreed dataset download && dogbreed train --epochs 10",
        "dogbreed train --model EfficientNet --finetune --epochs 5 --batch-size 32 --precision bf16",
        "dogbreed train --resume 7   # continue run 7",
        "dogbreed train --from 7 --finetune --epochs 20   # a new run from run 7's weights",
        "dogbreed train --dataset ~/data/stanford-dogs --nproc 4   # 4 GPUs",
        "dogbreed train --store   # your labelled photos (add --dataset DIR for both)",
        "dogbreed train --dataset mydogs/ --add-breeds   # any class folders",
        "dogbreed dataset synthetic && dogbreed train --no-pretrained --image-size 64   # offline: implies --finetune",
    ),
)
def train_cmd(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    model: str | None = typer.Option(
        None, "--model", "-m", help="ResNet (default), EfficientNet or any torchvision classifier name."
    ),
    finetune: bool | None = typer.Option(
        None,
        "--finetune/--extractor",
        help="Train the whole network, or only a head on a frozen backbone (default: extractor on ImageNet weights, "
        "finetune with --no-pretrained, or --from's).",
    ),
    epochs: int = typer.Option(10, "--epochs", "-e", min=1, max=10_000, help="Epochs."),
    batch_size: BatchSizeOpt = 64,
    batch_old: int | None = typer.Option(None, "--batch", min=2, max=4096, hidden=True, help="Old --batch-size."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate, > 0 (AdamW, cosine schedule)."),
    image_size: int | None = typer.Option(
        None, "--image-size", min=16, max=1024, help="Input size in pixels (default: the architecture's own)."
    ),
    pretrained: bool = typer.Option(
        True, "--pretrained/--no-pretrained", help="Start from torchvision's ImageNet weights."
    ),
    random_backbone: bool = typer.Option(
        False,
        "--random-backbone",
        help="Extractor mode on a frozen RANDOM backbone, on purpose (tests, experiments); refused otherwise.",
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Backbone weights file (a torchvision state dict)."),
    init_from: str | None = typer.Option(
        None,
        "--from",
        metavar="RUN|CHECKPOINT",
        help="Warm start a new run from a run's (or a checkpoint's) weights: architecture, mode and input size too.",
    ),
    resume: int | None = typer.Option(
        None,
        "--resume",
        metavar="RUN",
        min=1,
        help="Continue an interrupted, failed or killed run from its last completed epoch, in the same record.",
    ),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto (bf16 where the CPU/GPU has it natively, fp16 on other CUDA GPUs, else fp32), fp32, bf16, fp16.",
    ),
    device: DeviceOpt = "auto",
    loader_workers: int = typer.Option(
        2, "--loader-workers", min=0, max=64, help="Data-loading processes (0: in the training process)."
    ),
    workers_old: int | None = typer.Option(None, "--workers", min=0, max=64, hidden=True, help="Old name."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1, help="Seed for splits, shuffling and initialisation."),
    limit_per_class: int | None = typer.Option(
        None, "--limit-per-class", min=1, help="At most N images per breed in each split."
    ),
    name: str | None = typer.Option(None, "--name", help="Run name (default: <model>-<mode>)."),
    save: bool = typer.Option(True, "--save/--no-save", help="Keep the best checkpoint (and the state to resume)."),
    cache_features: bool = typer.Option(
        True,
        "--cache-features/--no-cache-features",
        help="Extractor mode: compute backbone features once (no augmentation for the head).",
    ),
    tensorboard: Path | None = typer.Option(
        None, "--tensorboard", metavar="DIR", help="Also log epoch metrics for TensorBoard under DIR."
    ),
    store: bool = typer.Option(
        False, "--store", help="Train on the store's labelled images (with --dataset: on both)."
    ),
    add_breeds: bool = typer.Option(
        False, "--add-breeds", help="Class folders naming no known breed become breeds of your own."
    ),
    skip_small: bool = typer.Option(
        False, "--skip-small", help="Leave out breeds with too few images (fewer than 5) instead of refusing."
    ),
    check_engines: bool = typer.Option(
        True,
        "--check/--no-check",
        help="At the end, measure the faster engines (OpenVINO, bf16) against fp32 on held-out images, so predict "
        "runs the fastest one that agrees.",
    ),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        min=1,
        max=1024,
        help="Train on N processes on this machine (one per GPU, or CPU processes) via torchrun.",
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a breed classifier; the best epoch (by validation accuracy) is kept and evaluated on the test split.

    Under torchrun (or with --nproc) every process trains a DistributedDataParallel replica; rank 0 writes the
    store, the checkpoint and this output.
    """
    from dogbreed.train import distributed
    from dogbreed.train.precision import PRECISIONS

    batch_size = pick(batch_size, batch_old, "--batch", "--batch-size", default=64)
    loader_workers = pick(loader_workers, workers_old, "train --workers", "--loader-workers", default=2)
    if precision not in PRECISIONS:
        raise DogbreedError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if init_from is not None and resume is not None:
        raise DogbreedError("choose --resume RUN (continue it) or --from RUN (a new run from its weights)")
    if nproc is not None and nproc > 1:
        if distributed.env_world() > 1:
            raise DogbreedError("--nproc starts torchrun itself; under torchrun leave it out")
        distributed.launch(nproc, command_line(ctx, leave_out={"nproc"}))
        return
    main_rank = distributed.env_rank() == 0
    listener = RichTrainListener(quiet=as_json or quiet or not main_rank)
    options = {**ctx.params, "batch_size": batch_size, "loader_workers": loader_workers}  # old spellings folded in
    result = _resume(ctx, options, listener) if resume is not None else _train(ctx, options, listener)
    if main_rank:
        _print_result(result, as_json)
    if result.status == "interrupted":
        from dogbreed.procs import stop_exit_code

        raise typer.Exit(stop_exit_code())  # 130 for Ctrl-C, 129 for SIGHUP


def _resume(ctx: typer.Context, o: dict[str, Any], listener: Any) -> Any:
    from dogbreed.train import resume as resume_run

    given = given_options(ctx)
    return resume_run(
        o["resume"],
        db_path(ctx),
        listener,
        fixed_options=[opt for key, opt in given.items() if key not in RESUMABLE_OPTIONS],
        device=o["device"] if "device" in given else None,
        workers=o["loader_workers"] if {"loader_workers", "workers_old"} & set(given) else None,
        dataset=o["dataset"],
        tensorboard=o["tensorboard"],
        check_engines=o["check_engines"] if "check_engines" in given else None,
    )


def _train(ctx: typer.Context, o: dict[str, Any], listener: Any) -> Any:
    from dogbreed.config import resolve_paths
    from dogbreed.train import TrainConfig, train

    paths = resolve_paths(db=db_path(ctx), dataset=o["dataset"])
    init_from, finetune = o["init_from"], o["finetune"]
    config = TrainConfig(
        dataset=None if o["store"] and o["dataset"] is None else paths.dataset,
        store=o["store"],
        add_breeds=o["add_breeds"],
        skip_small=o["skip_small"],
        checkpoints_dir=paths.checkpoints,
        model=o["model"] if o["model"] is not None or init_from is not None else "ResNet",
        mode=_mode(finetune, o["random_backbone"]),
        epochs=o["epochs"],
        batch=o["batch_size"],
        lr=o["lr"],
        image_size=o["image_size"],
        pretrained=o["pretrained"] and not (o["random_backbone"] and "pretrained" not in given_options(ctx)),
        random_backbone=o["random_backbone"],
        weights=o["weights"],
        device=o["device"],
        workers=o["loader_workers"],
        seed=o["seed"],
        limit_per_class=o["limit_per_class"],
        name=o["name"],
        save=o["save"],
        cache_features=o["cache_features"],
        precision=o["precision"],
        init_from=init_from,
        tensorboard=o["tensorboard"],
        check_engines=o["check_engines"],
    )
    return train(config, paths.db, listener)


def _mode(finetune: bool | None, random_backbone: bool) -> str | None:
    """The mode asked for; None leaves it to the plan (extractor on ImageNet weights, finetune without them, a warm
    start's own)."""
    if finetune is None:
        return "extractor" if random_backbone else None
    return "finetune" if finetune else "extractor"


def _print_result(result: Any, as_json: bool) -> None:
    if not as_json:
        print_train_summary(result)
        return
    payload = {k: v for k, v in result.__dict__.items() if k != "test"}
    payload["checkpoint"] = str(result.checkpoint) if result.checkpoint else None
    if result.test:
        payload["test"] = {k: v for k, v in result.test.items() if k not in ("y_true", "y_pred", "paths")}
    print_json(payload)


def _engine_rows(result: Any) -> list[tuple[str, str]]:
    """What the engine checks at the end measured, and what predict's auto runs the model on because of them."""
    if not result.checks:
        return []
    agree = ", ".join(f"{c['engine']} {c['precision']} {c['agreement']:.1%}" for c in result.checks)
    return [
        ("agreement with fp32", f"{agree} on {result.checks[0]['n']} held-out images"),
        ("predict runs it on", f"{result.auto_engine} (engine auto)"),
    ]


def print_train_summary(result: Any) -> None:
    from dogbreed.breeds import display_name

    if result.skipped:
        err.print(f"[yellow]{len(result.skipped)} unreadable dataset image(s) skipped:[/yellow]")
        for path, reason in sorted(result.skipped.items()):
            err.print(f"  {safe(path)}: {safe(reason)}", soft_wrap=True)
    if result.status == "interrupted":
        kept = f"; best checkpoint so far: {result.checkpoint}" if result.checkpoint else ""
        out.print(f"run {result.run_id} interrupted after epoch {len(result.epochs)}{safe(kept)}", soft_wrap=True)
        return
    t = result.test
    names = t.get("class_names")
    rows = [
        ("precision", result.precision),
        *([("resumed after epoch", result.resumed_after)] if result.resumed_after else []),
        ("best epoch", result.best_epoch),
        ("validation accuracy", percent(result.best_val_acc, 2)),
        ("test accuracy", f"{t['accuracy']:.2%}  ({t['n']} images)"),
        ("test top-5", percent(t["top5"], 2)),
        ("test macro F1", f"{t['macro_f1']:.3f}"),
        ("checkpoint", str(result.checkpoint) if result.checkpoint else "not saved (--no-save)"),
        *_engine_rows(result),
    ]
    out.print(key_value_table(rows, title=f"run {result.run_id}: finished"))
    if t.get("imagenet_overlap"):
        from dogbreed.models.zoo import IMAGENET_CAVEAT

        note(IMAGENET_CAVEAT)
    if t["most_confused"]:
        pairs = ", ".join(
            f"{display_name(p['true'], names)} -> {display_name(p['predicted'], names)} ({p['count']})"
            for p in t["most_confused"][:5]
        )
        out.print(f"most confused: {safe(pairs)}", soft_wrap=True)
