"""train and stats: training runs and what they measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dogbreed.cli import app
from dogbreed.cli.common import (
    BatchSizeOpt,
    CheckpointOpt,
    Column,
    CsvOpt,
    DatasetOpt,
    DeviceOpt,
    EngineOpt,
    JsonOpt,
    ModelOpt,
    NlOpt,
    PrecisionOpt,
    QuietOpt,
    RunOpt,
    WeightsOpt,
    db_path,
    emit,
    err,
    examples,
    key_value_table,
    note,
    open_db,
    out,
    output_format,
    percent,
    pick,
    print_json,
    safe,
    warn,
    when,
)
from dogbreed.cli.images import MAX_ID
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


EPOCH_COLUMNS = (
    ("epoch", "epoch", "{}"),
    ("train_loss", "loss", "{:.4f}"),
    ("train_acc", "acc", "{:.1%}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("val_acc", "val acc", "{:.1%}"),
    ("val_top5", "val top5", "{:.1%}"),
    ("val_f1", "val F1", "{:.3f}"),
    ("seconds", "s", "{:.1f}"),
)


def epoch_table(rows: list[dict[str, Any]], header: bool = True, title: str | None = None) -> Table:
    table = Table(show_header=header, title=title, box=None)
    for _key, label, _fmt in EPOCH_COLUMNS:
        table.add_column(label, justify="right", width=8, no_wrap=True)
    table.add_column("", min_width=4)
    for row in rows:
        cells = ["" if row.get(key) is None else fmt.format(row[key]) for key, _label, fmt in EPOCH_COLUMNS]
        table.add_row(*cells, "kept" if row.get("best") else "")
    return table


TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What a resumed run may change: where things are and how they are shown, never what is trained.
RESUMABLE_OPTIONS = frozenset(
    {"dataset", "device", "loader_workers", "workers_old", "quiet", "as_json", "tensorboard", "nproc", "resume"}
)


def given_options(ctx: typer.Context) -> dict[str, str]:
    """{parameter name: its option as typed} for the options given on the command line or by the environment."""
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            given[param.name] = param.opts[0] if param.opts else param.name
    return given


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
        help="Train the whole network, or only a head on a frozen backbone (default: extractor, or --from's).",
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
    from dogbreed import distributed
    from dogbreed.config import resolve_paths
    from dogbreed.train import TrainConfig, train
    from dogbreed.train import resume as resume_run

    batch_size = pick(batch_size, batch_old, "--batch", "--batch-size", default=64)
    loader_workers = pick(loader_workers, workers_old, "train --workers", "--loader-workers", default=2)
    if precision not in TRAIN_PRECISIONS:
        raise DogbreedError(f"unknown precision {precision!r}; use {', '.join(TRAIN_PRECISIONS)}")
    given = given_options(ctx)
    if init_from is not None and resume is not None:
        raise DogbreedError("choose --resume RUN (continue it) or --from RUN (a new run from its weights)")
    if resume is not None:
        from dogbreed.store.runs import get_run

        conn = open_db(ctx)
        known = get_run(conn, resume) is not None
        conn.close()
        if not known:  # the first thing to know about a resume
            raise DogbreedError(f"no training run with id {resume}; see 'dogbreed stats'")
        fixed = [opt for key, opt in given.items() if key not in RESUMABLE_OPTIONS]
        if fixed:
            raise DogbreedError(
                f"--resume continues run {resume} with its own settings; drop {', '.join(fixed)} "
                f"(or start a new run from it with --from {resume})"
            )
    if nproc is not None and nproc > 1:
        if distributed.env_world() > 1:
            raise DogbreedError("--nproc starts torchrun itself; under torchrun leave it out")
        distributed.launch(nproc, command_line(ctx, leave_out={"nproc"}))
        return
    main_rank = distributed.env_rank() == 0
    paths = resolve_paths(db=db_path(ctx), dataset=dataset)
    if main_rank:
        open_db(ctx).close()  # create / migrate the store before training writes to it
    listener = RichTrainListener(quiet=as_json or quiet or not main_rank)
    if resume is not None:
        result = resume_run(
            resume,
            paths.db,
            listener,
            device=device if "device" in given else None,
            workers=loader_workers if {"loader_workers", "workers_old"} & set(given) else None,
            dataset=dataset,
            tensorboard=tensorboard,
        )
    else:
        config = TrainConfig(
            dataset=paths.dataset,
            checkpoints_dir=paths.checkpoints,
            model=model if model is not None or init_from is not None else "ResNet",
            mode=None if finetune is None and init_from is not None else ("finetune" if finetune else "extractor"),
            epochs=epochs,
            batch=batch_size,
            lr=lr,
            image_size=image_size,
            pretrained=pretrained,
            weights=weights,
            device=device,
            workers=loader_workers,
            seed=seed,
            limit_per_class=limit_per_class,
            name=name,
            save=save,
            cache_features=cache_features,
            precision=precision,
            init_from=init_from,
            tensorboard=tensorboard,
        )
        result = train(config, paths.db, listener)
    if main_rank:
        if as_json:
            payload = {k: v for k, v in result.__dict__.items() if k != "test"}
            payload["checkpoint"] = str(result.checkpoint) if result.checkpoint else None
            if result.test:
                payload["test"] = {k: v for k, v in result.test.items() if k not in ("y_true", "y_pred", "paths")}
            print_json(payload)
        else:
            print_train_summary(result)
    if result.status == "interrupted":
        raise typer.Exit(130)


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
    rows = [
        ("precision", result.precision),
        *([("resumed after epoch", result.resumed_after)] if result.resumed_after else []),
        ("best epoch", result.best_epoch),
        ("validation accuracy", percent(result.best_val_acc, 2)),
        ("test accuracy", f"{t['accuracy']:.2%}  ({t['n']} images)"),
        ("test top-5", percent(t["top5"], 2)),
        ("test macro F1", f"{t['macro_f1']:.3f}"),
        ("checkpoint", str(result.checkpoint) if result.checkpoint else "not saved (--no-save)"),
    ]
    out.print(key_value_table(rows, title=f"run {result.run_id}: finished"))
    if t.get("imagenet_overlap"):
        from dogbreed.models.zoo import IMAGENET_CAVEAT

        note(IMAGENET_CAVEAT)
    if t["most_confused"]:
        pairs = ", ".join(
            f"{display_name(p['true'])} -> {display_name(p['predicted'])} ({p['count']})"
            for p in t["most_confused"][:5]
        )
        out.print(f"most confused: {safe(pairs)}", soft_wrap=True)


# ---------------------------------------------------------------- eval

PER_BREED_COLUMNS = [
    Column("name", "breed"),
    Column("precision", "precision", lambda v: f"{v:.3f}", justify="right"),
    Column("recall", "recall", lambda v: f"{v:.3f}", justify="right"),
    Column("f1", "F1", lambda v: f"{v:.3f}", justify="right"),
    Column("support", "images", justify="right"),
]


@app.command(
    "eval",
    epilog=examples(
        "dogbreed eval --run 3 --plot confusion.png",
        "dogbreed eval --model efficientnet_b0 --dataset ~/stanford-dogs --split test",
        "dogbreed eval --checkpoint checkpoints/demo-run1.pt --store --json",
    ),
)
def eval_cmd(
    ctx: typer.Context,
    run: RunOpt = None,
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    split: str = typer.Option(
        "test", "--split", help="test, val or train, split as training splits it (with the run's seed)."
    ),
    store: bool = typer.Option(False, "--store", help="The store's labelled images (their latest ground truth)."),
    plot: Path | None = typer.Option(None, "--plot", metavar="FILE", help="Write the confusion matrix as a PNG."),
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    precision: PrecisionOpt = "auto",
    batch_size: BatchSizeOpt = 64,
    loader_workers: int | None = typer.Option(
        None, "--loader-workers", min=0, max=64, help="Decoding processes (default: a few for large sets)."
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Measure a model on labelled pictures: top-1, top-5, macro F1, per-breed scores, the most confused pairs.

    The model runs exactly as predict runs it (same engine, same preprocessing); with no model named, the one
    predict would use. Every evaluation is recorded and listed by 'dogbreed stats'. --csv and --nl give the
    per-breed rows.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dogbreed import evaluate
    from dogbreed.config import resolve_paths
    from dogbreed.models import sources

    fmt = output_format(as_json, as_csv, as_nl)
    given = given_options(ctx)
    if store and ({"dataset", "split"} & set(given)):
        raise DogbreedError("choose the data: --store (the store's labelled images) or --dataset/--split")
    if split not in evaluate.SPLITS:
        raise DogbreedError(f"unknown split {split!r}; use {', '.join(evaluate.SPLITS)}")
    conn = open_db(ctx)
    try:
        source = sources.resolve(conn, checkpoint=checkpoint, model=model, weights=weights, run=run)
    finally:
        conn.close()
    request = evaluate.EvalRequest(
        source=source,
        dataset=dataset,
        default_dataset=resolve_paths(dataset=None).dataset,
        split=split,
        store=store,
        device=device,
        engine=engine,
        precision=precision,
        batch_size=batch_size,
        loader_workers=loader_workers,
    )
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    show = fmt == "table" and err.is_terminal and not quiet
    with Progress(*columns, console=err, transient=True, disable=not show) as bar:
        task = bar.add_task("eval", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        def on_stage(text: str) -> None:
            if fmt == "table" and not quiet:
                err.print(safe(text), soft_wrap=True)

        outcome = evaluate.run(db_path(ctx), request, on_progress=on_progress, on_stage=on_stage)
    if outcome.choice.warning:
        warn(outcome.choice.warning)
    for text in outcome.notes:
        warn(text)
    if plot is not None:
        from dogbreed import viz

        r = outcome.report
        data = Path(outcome.data).name or outcome.data
        title = f"{outcome.source.name} on {data}" + ("" if outcome.data == outcome.split else f" ({outcome.split})")
        viz.render_confusion(r["y_true"], r["y_pred"], r["classes"], plot, title=title)
        err.print(f"wrote {safe(plot)}", soft_wrap=True)
    if fmt == "json":
        print_json(eval_json(outcome))
    elif fmt in ("csv", "nl"):
        emit(outcome.report["per_breed"], [Column(k, k) for k in ("breed", *[c.key for c in PER_BREED_COLUMNS])], fmt)
    else:
        print_eval(outcome, quiet)
    if outcome.imagenet_overlap:
        from dogbreed.models.zoo import IMAGENET_CAVEAT

        note(IMAGENET_CAVEAT)


def eval_json(outcome: Any) -> dict[str, Any]:
    report = {k: v for k, v in outcome.report.items() if k not in ("y_true", "y_pred", "paths", "classes")}
    return {
        "evaluation_id": outcome.evaluation_id,
        "model": outcome.source.name,
        "model_key": outcome.source.key,
        "model_ref": outcome.source.ref,
        "reason": outcome.source.reason or None,
        "run_id": outcome.run_id,
        "engine": outcome.choice.engine,
        "precision": outcome.choice.precision,
        "device": outcome.choice.device,
        "data": outcome.data,
        "split": outcome.split,
        "seconds": round(outcome.seconds, 3),
        **report,
    }


def print_eval(outcome: Any, quiet: bool) -> None:
    from dogbreed.breeds import display_name

    r = outcome.report
    why = f" ({outcome.source.reason})" if outcome.source.reason else ""
    rows = [
        ("model", f"{outcome.source.name}{why}"),
        ("run", outcome.run_id if outcome.run_id is not None else ""),
        ("data", outcome.data if outcome.data == outcome.split else f"{outcome.data} ({outcome.split})"),
        ("images", f"{r['n']}" + (f" ({len(outcome.skipped)} unreadable, left out)" if outcome.skipped else "")),
        ("top-1 accuracy", percent(r["accuracy"], 2)),
        ("top-5 accuracy", percent(r["top5"], 2)),
        ("macro F1", f"{r['macro_f1']:.3f}"),
    ]
    if "accuracy_data_breeds" in r:
        rows.append((f"top-1 among the data's {r['data_breeds']} breeds", percent(r["accuracy_data_breeds"], 2)))
    rate = r["n"] / outcome.seconds if outcome.seconds > 0 else 0.0
    rows.append(("engine", f"{outcome.choice.engine} {outcome.choice.precision} on {outcome.choice.device}"))
    rows.append(("time", f"{outcome.seconds:.1f} s ({rate:.1f} images/s)"))
    out.print(key_value_table(rows, title=f"evaluation {outcome.evaluation_id}"))
    if not quiet:
        worst_first = sorted(r["per_breed"], key=lambda b: (b["f1"], b["name"]))
        emit(worst_first, PER_BREED_COLUMNS, "table", title="per breed (worst F1 first)")
    if r["most_confused"]:
        pairs = [
            {"true": display_name(p["true"]), "predicted": display_name(p["predicted"]), "count": p["count"]}
            for p in r["most_confused"]
        ]
        columns = [
            Column("true", "true breed"),
            Column("predicted", "taken for"),
            Column("count", "images", justify="right"),
        ]
        emit(pairs, columns, "table", title="most confused")


# ---------------------------------------------------------------- stats

RUN_COLUMNS = [
    Column("id", "run", justify="right"),
    Column("name", "name", fold=True),
    Column("model", "model"),
    Column("mode", "mode"),
    Column("status", "status"),
    Column("epochs_done", "epochs", justify="right"),
    Column("best_val_acc", "val acc", percent, justify="right"),
    Column("test_acc", "test acc", percent, justify="right"),
    Column("test_macro_f1", "F1", lambda v: f"{v:.3f}", justify="right"),
    Column("precision", "precision"),
    Column("duration_s", "time", lambda v: f"{v:.0f} s", justify="right"),
    Column("checkpoint_path", "checkpoint", fold=True),
]
EVAL_COLUMNS = [
    Column("id", "eval", justify="right"),
    Column("model_name", "model", fold=True),
    Column("run_id", "run", justify="right"),
    Column("data", "data", fold=True),
    Column("split", "split"),
    Column("n", "images", justify="right"),
    Column("top1", "top-1", percent, justify="right"),
    Column("top5", "top-5", percent, justify="right"),
    Column("macro_f1", "F1", lambda v: f"{v:.3f}", justify="right"),
    Column("precision", "precision"),
    Column("device", "device"),
    Column("created_at", "when", when),
]
EPOCH_CSV = [
    Column(k, k)
    for k in (
        "epoch",
        "train_loss",
        "train_acc",
        "train_f1",
        "val_loss",
        "val_acc",
        "val_top5",
        "val_f1",
        "lr",
        "seconds",
    )
]


@app.command(
    "stats",
    epilog=examples("dogbreed stats", "dogbreed stats 3 --plot curves.png", "dogbreed stats 3 --csv > epochs.csv"),
)
def stats_cmd(
    ctx: typer.Context,
    run_id: int | None = typer.Argument(
        None, metavar="[RUN]", min=0, max=MAX_ID, help="One run's id: its per-epoch table."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write loss / accuracy / F1 curves (this run, or the newest)."
    ),
    evaluations_only: bool = typer.Option(
        False, "--evaluations", help="List the evaluations ('dogbreed eval') instead of the runs."
    ),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Training runs, evaluations and a summary of the store; with RUN, that run's epochs and evaluations.

    With RUN, --csv and --nl give one row per epoch; --plot draws the curves. --evaluations lists every
    evaluation (in any format).
    """
    from dogbreed.cli.models import RECORDED_COLUMNS, recorded_check_rows
    from dogbreed.imagenet import DOG_THRESHOLD
    from dogbreed.store import evaluations, runs

    fmt = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    runs.mark_abandoned(conn)
    if evaluations_only:
        if run_id is not None or plot is not None:
            raise DogbreedError("--evaluations lists every evaluation; drop RUN and --plot")
        rows = [e.to_dict() for e in evaluations.list_evaluations(conn, limit=1000)]
        emit(rows, EVAL_COLUMNS, fmt, title="evaluations", empty="no evaluations yet; run 'dogbreed eval'")
        return
    if run_id is None:
        all_runs = runs.list_runs(conn)
        evals = [e.to_dict() for e in evaluations.list_evaluations(conn)]
        summary = runs.store_summary(conn, DOG_THRESHOLD)
        if fmt == "json":
            print_json({"runs": [r.to_dict() for r in all_runs], "evaluations": evals, "store": summary})
        else:
            emit([r.to_dict() for r in all_runs], RUN_COLUMNS, fmt, title="training runs", empty="no training runs yet")
            if fmt == "table":
                if evals:
                    emit(evals, EVAL_COLUMNS, fmt, title="evaluations (dogbreed eval)")
                print_store_summary(summary)
        if plot is not None:
            if not all_runs:
                raise DogbreedError("no training runs yet to plot; run 'dogbreed train'")
            plot_run(runs.get_run(conn, all_runs[0].id), plot)
        return
    run = runs.get_run(conn, run_id)
    if run is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    evals = [e.to_dict() for e in evaluations.list_evaluations(conn, run_id=run_id)]
    checks = recorded_check_rows(evaluations.checks_for(conn, run.checkpoint_sha256)) if run.checkpoint_sha256 else []
    if plot is not None:
        plot_run(run, plot)
    if fmt == "json":
        print_json({**run.to_dict(), "evaluations": evals, "engine_checks": checks})
        return
    if fmt in ("csv", "nl"):
        emit(run.epochs, EPOCH_CSV, fmt)
        return
    rows = [dict(e, best=e["epoch"] == run.best_epoch) for e in run.epochs]
    title = f"run {run_id}: {safe(run.name)} ({run.model} {run.mode}, {run.status})"
    out.print(epoch_table(rows, title=title))
    details = [f"precision {run.precision}" if run.precision else "", f"from {run.init_from}" if run.init_from else ""]
    if any(details):
        out.print(safe("; ".join(d for d in details if d)), soft_wrap=True)
    report = run.test_report
    if report:
        out.print(
            f"test: accuracy {report['accuracy']:.2%}, top-5 {report['top5']:.2%}, macro F1 "
            f"{report['macro_f1']:.3f} on {report['n']} images; checkpoint {safe(run.checkpoint_path)}",
            soft_wrap=True,
        )
        if report.get("imagenet_overlap"):
            from dogbreed.models.zoo import IMAGENET_CAVEAT

            note(IMAGENET_CAVEAT)
    if evals:
        emit(evals, EVAL_COLUMNS, "table", title=f"evaluations of run {run_id}")
    if checks:
        emit(checks, RECORDED_COLUMNS, "table", title="engine checks (agreement with torch fp32; 'dogbreed check')")
    if run.error:
        out.print(f"{run.status}: {safe(run.error)}", soft_wrap=True)
    if run.status in ("interrupted", "failed") and run.last_checkpoint_path:
        out.print(f"continue it with: dogbreed train --resume {run_id}")


def plot_run(run: Any, plot: Path) -> None:
    from dogbreed import viz

    if not run.epochs:
        raise DogbreedError(f"run {run.id} has no finished epoch to plot")
    viz.render_curves(run.epochs, plot, title=f"run {run.id}: {run.name}", best_epoch=run.best_epoch)
    err.print(f"wrote {safe(plot)}", soft_wrap=True)


def print_store_summary(s: dict[str, Any]) -> None:
    acc = f"{s['accuracy']:.1%} of {s['scored']}" if s["accuracy"] is not None else "n/a (no labelled predictions)"
    dogs = (
        f"; {s['not_a_dog']} of {s['dog_probability_known']} probably not a dog" if s["dog_probability_known"] else ""
    )
    out.print(
        f"store: {s['images']} images, {s['labelled']} labelled, {s['predicted']} predicted; "
        f"latest predictions vs ground truth: {acc}{dogs}"
    )
