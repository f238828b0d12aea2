"""train and stats: training runs and what they measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dogbreed.cli import app
from dogbreed.cli.common import (
    BatchSizeOpt,
    Column,
    CsvOpt,
    DatasetOpt,
    DeviceOpt,
    JsonOpt,
    NlOpt,
    QuietOpt,
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


@app.command(
    "train",
    epilog=examples(
        "dogbreed dataset download && dogbreed train --epochs 10",
        "dogbreed train --model EfficientNet --finetune --epochs 5 --batch-size 32",
        "dogbreed train --dataset dataset/synthetic-dogs --no-pretrained --image-size 64 --epochs 4",
    ),
)
def train_cmd(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    model: str = typer.Option(
        "ResNet", "--model", "-m", help="ResNet, EfficientNet or any torchvision classifier name."
    ),
    finetune: bool = typer.Option(
        False, "--finetune/--extractor", help="Train the whole network, or only a head on a frozen backbone."
    ),
    epochs: int = typer.Option(10, "--epochs", "-e", min=1, max=10_000, help="Epochs."),
    batch_size: BatchSizeOpt = 64,
    batch_old: int | None = typer.Option(None, "--batch", min=2, max=4096, hidden=True, help="Old --batch-size."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Learning rate (AdamW, cosine schedule)."),
    image_size: int | None = typer.Option(
        None, "--image-size", min=16, max=1024, help="Input size in pixels (default: the architecture's own)."
    ),
    pretrained: bool = typer.Option(
        True, "--pretrained/--no-pretrained", help="Start from torchvision's ImageNet weights."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Backbone weights file (a torchvision state dict)."),
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
    save: bool = typer.Option(True, "--save/--no-save", help="Keep the best checkpoint."),
    cache_features: bool = typer.Option(
        True,
        "--cache-features/--no-cache-features",
        help="Extractor mode: compute backbone features once (no augmentation for the head).",
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a breed classifier; the best epoch (by validation accuracy) is kept and evaluated on the test split."""
    from dogbreed.config import resolve_paths
    from dogbreed.train import TrainConfig, train

    batch_size = pick(batch_size, batch_old, "--batch", "--batch-size", default=64)
    loader_workers = pick(loader_workers, workers_old, "train --workers", "--loader-workers", default=2)
    paths = resolve_paths(db=db_path(ctx), dataset=dataset)
    open_db(ctx).close()  # create / migrate the store before training writes to it
    config = TrainConfig(
        dataset=paths.dataset,
        checkpoints_dir=paths.checkpoints,
        model=model,
        mode="finetune" if finetune else "extractor",
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
    )
    result = train(config, paths.db, RichTrainListener(quiet=as_json or quiet))
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
        ("best epoch", result.best_epoch),
        ("validation accuracy", percent(result.best_val_acc, 2)),
        ("test accuracy", f"{t['accuracy']:.2%}  ({t['n']} images)"),
        ("test top-5", percent(t["top5"], 2)),
        ("test macro F1", f"{t['macro_f1']:.3f}"),
        ("checkpoint", str(result.checkpoint) if result.checkpoint else "not saved (--no-save)"),
    ]
    out.print(key_value_table(rows, title=f"run {result.run_id}: finished"))
    if t.get("imagenet_overlap"):
        from dogbreed.zoo import IMAGENET_CAVEAT

        note(IMAGENET_CAVEAT)
    if t["most_confused"]:
        pairs = ", ".join(
            f"{display_name(p['true'])} -> {display_name(p['predicted'])} ({p['count']})"
            for p in t["most_confused"][:5]
        )
        out.print(f"most confused: {safe(pairs)}", soft_wrap=True)


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
    Column("duration_s", "time", lambda v: f"{v:.0f} s", justify="right"),
    Column("checkpoint_path", "checkpoint", fold=True),
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
    run_id: int | None = typer.Argument(None, min=0, max=MAX_ID, help="One run's id: its per-epoch table."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write loss / accuracy / F1 curves (this run, or the newest)."
    ),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Training runs, their metrics and a summary of the store; with RUN, that run's epochs.

    With RUN, --csv and --nl give one row per epoch; --plot draws the curves.
    """
    from dogbreed.imagenet import DOG_THRESHOLD
    from dogbreed.store import runs

    fmt = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    runs.mark_abandoned(conn)
    if run_id is None:
        all_runs = runs.list_runs(conn)
        summary = runs.store_summary(conn, DOG_THRESHOLD)
        if fmt == "json":
            print_json({"runs": [r.to_dict() for r in all_runs], "store": summary})
        else:
            emit([r.to_dict() for r in all_runs], RUN_COLUMNS, fmt, title="training runs", empty="no training runs yet")
            if fmt == "table":
                print_store_summary(summary)
        if plot is not None:
            if not all_runs:
                raise DogbreedError("no training runs yet to plot; run 'dogbreed train'")
            plot_run(runs.get_run(conn, all_runs[0].id), plot)
        return
    run = runs.get_run(conn, run_id)
    if run is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    if plot is not None:
        plot_run(run, plot)
    if fmt == "json":
        print_json(run.to_dict())
        return
    if fmt in ("csv", "nl"):
        emit(run.epochs, EPOCH_CSV, fmt)
        return
    rows = [dict(e, best=e["epoch"] == run.best_epoch) for e in run.epochs]
    title = f"run {run_id}: {safe(run.name)} ({run.model} {run.mode}, {run.status})"
    out.print(epoch_table(rows, title=title))
    report = run.test_report
    if report:
        out.print(
            f"test: accuracy {report['accuracy']:.2%}, top-5 {report['top5']:.2%}, macro F1 "
            f"{report['macro_f1']:.3f} on {report['n']} images; checkpoint {safe(run.checkpoint_path)}",
            soft_wrap=True,
        )
        if report.get("imagenet_overlap"):
            from dogbreed.zoo import IMAGENET_CAVEAT

            note(IMAGENET_CAVEAT)
    if run.error:
        out.print(f"{run.status}: {safe(run.error)}", soft_wrap=True)


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
