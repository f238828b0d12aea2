"""The command line: parse options, call the modules that do the work, render tables or JSON.

Heavy libraries (torch, torchvision, matplotlib) are imported inside the commands that need them, so
`dogbreed --help`, `list` and `show` start fast.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from dogbreed import __version__
from dogbreed.config import resolve_paths
from dogbreed.errors import DogbreedError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _Group(TyperGroup):
    """Turns a user's mistake (DogbreedError) or a broken store into one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DogbreedError as exc:
            err.print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except sqlite3.DatabaseError as exc:
            err.print(f"[red]Error:[/red] store {escape(str(ctx.obj['db']))}: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="Classify dog photos into the 120 Stanford Dogs breeds; every photo and prediction kept in SQLite.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    app(prog_name="dogbreed")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _db_path(ctx: typer.Context) -> Path:
    return ctx.obj["db"]


def _open(ctx: typer.Context) -> sqlite3.Connection:
    from dogbreed.store import open_store

    return open_store(_db_path(ctx))


def _version(value: bool) -> None:
    if value:
        out.print(f"dogbreed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    db: Path | None = typer.Option(
        None, "--db", help="SQLite store to use (default: $DOGBREED_DB, else $DOGBREED_HOME/dogbreed.db)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = {"db": resolve_paths(db=db).db}


# ---------------------------------------------------------------- paths, breeds


@app.command("paths")
def paths_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print where dogbreed keeps its store, checkpoints and dataset."""
    resolved = resolve_paths(db=_db_path(ctx)).as_dict()
    if as_json:
        _print_json(resolved)
        return
    table = Table("what", "path")
    for key, value in resolved.items():
        table.add_row(key, value)
    out.print(table)


app.command("info", help="Same as 'paths'.", hidden=True)(paths_cmd)


@app.command("breeds")
def breeds_cmd(
    search: str | None = typer.Argument(None, help="Only breeds whose name contains this text."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the 120 Stanford Dogs breeds (WordNet id, folder name, display name)."""
    from dogbreed.breeds import BREEDS

    rows = [b for b in BREEDS if not search or search.lower() in f"{b.folder} {b.name}".lower()]
    if as_json:
        _print_json([{"index": b.index, "wnid": b.wnid, "folder": b.folder, "name": b.name} for b in rows])
        return
    table = Table("#", "WordNet id", "folder", "name", title=f"{len(rows)} breeds")
    for b in rows:
        table.add_row(str(b.index), b.wnid, b.folder, b.name)
    out.print(table)


# ---------------------------------------------------------------- upload, list, show, delete


@app.command("upload")
def upload_cmd(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or glob patterns."),
    ground_truth: str | None = typer.Option(
        None, "--ground-truth", "-g", help="Breed of every uploaded image (name, folder name or WordNet id)."
    ),
    filename: str | None = typer.Option(None, "--filename", help="Name to store (a single file only)."),
    label_from_folder: bool = typer.Option(
        False, "--label-from-folder", help="Take each image's breed from its Stanford folder name."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store photos with their bytes; duplicates are reported, broken files refused with the reason."""
    from rich.progress import Progress

    from dogbreed.breeds import resolve_breed
    from dogbreed.ingest import expand_paths, upload

    breed = resolve_breed(ground_truth) if ground_truth else None
    if breed and label_from_folder:
        raise DogbreedError("use either --ground-truth or --label-from-folder, not both")
    files, results = expand_paths(paths)
    if filename and len(files) != 1:
        raise DogbreedError(f"--filename needs exactly one file, got {len(files)}")
    conn = _open(ctx)
    if not as_json:
        for result in results:  # arguments that named nothing
            _print_upload_line(out, result)
    with Progress(console=err, transient=True, disable=as_json or len(files) < 20) as progress:
        task = progress.add_task("uploading", total=len(files))
        for result in upload(conn, files, ground_truth=breed, label_from_folder=label_from_folder, filename=filename):
            results.append(result)
            progress.advance(task)
            if not as_json:
                _print_upload_line(out, result)
    counts = {s: sum(r.status == s for r in results) for s in ("new", "duplicate", "refused")}
    if as_json:
        _print_json({"results": [r.as_dict() for r in results], "summary": counts})
    else:
        out.print(f"{counts['new']} new, {counts['duplicate']} duplicate, {counts['refused']} refused")
    if counts["refused"]:
        raise typer.Exit(1)


def _print_upload_line(console: Console, r: Any) -> None:
    if r.status == "refused":
        console.print(f"[red]refused[/red]   {escape(r.path)}: {escape(r.reason)}", soft_wrap=True)
    else:
        note = f" ({escape(r.reason)})" if r.reason else ""
        color = "green" if r.status == "new" else "yellow"
        console.print(f"[{color}]{r.status:<9}[/{color}] id {r.image_id}  {escape(r.path)}{note}", soft_wrap=True)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000, help="Rows per page."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many rows."),
    after: int | None = typer.Option(None, "--after", help="Only ids greater than this (fast deep paging)."),
    breed: str | None = typer.Option(None, "--breed", "-b", help="Only images with this ground truth."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List stored images (never their bytes) with their latest top-1 prediction."""
    from dogbreed.breeds import display_name, resolve_breed
    from dogbreed.store import images

    wnid = resolve_breed(breed).wnid if breed else None
    conn = _open(ctx)
    rows = images.list_images(conn, limit=limit, offset=offset, after_id=after, breed=wnid)
    if as_json:
        for row in rows:
            row["ground_truth_name"] = display_name(row["ground_truth"]) or None
            row["top1_name"] = display_name(row["top1"]) or None
        _print_json(rows)
        return
    table = Table("id", "filename", "ground truth", "top-1", "p", "uploaded", title="images")
    for row in rows:
        table.add_row(
            str(row["id"]),
            escape(row["filename"]),
            display_name(row["ground_truth"]),
            display_name(row["top1"]),
            f"{row['top1_prob']:.1%}" if row["top1_prob"] is not None else "",
            row["created_at"][:19].replace("T", " "),
        )
    out.print(table)
    if not rows:
        out.print("no images yet: add some with 'dogbreed upload PATH'" if offset == 0 and after is None else "")


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    image_id: int = typer.Argument(..., help="Image id."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, max=120, help="Breeds to show per prediction."),
    all_breeds: bool = typer.Option(False, "--all", help="Show all 120 probabilities."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one image's metadata and its predictions (never the bytes)."""
    from dogbreed.breeds import display_name
    from dogbreed.store import images, predictions

    conn = _open(ctx)
    row = images.get_image(conn, image_id)
    if row is None:
        raise DogbreedError(f"no image with id {image_id}; see 'dogbreed list'")
    k = 120 if all_breeds else top_k
    preds = predictions.for_image(conn, image_id, top_k=k)
    if as_json:
        row["ground_truth_name"] = display_name(row["ground_truth"]) or None
        row["predictions"] = preds
        _print_json(row)
        return
    table = Table(show_header=False, title=f"image {image_id}")
    for key in ("filename", "format", "width", "height", "size_bytes", "sha256", "created_at"):
        table.add_row(key, escape(str(row[key])))
    table.add_row("ground truth", display_name(row["ground_truth"]) or "-")
    out.print(table)
    if not preds:
        out.print(f"no predictions yet: run 'dogbreed predict --id {image_id}'")
    for pred in preds:
        title = f"{Path(pred['checkpoint_path']).name} on {pred['device']}, {pred['created_at'][:19].replace('T', ' ')}"
        ptable = Table("rank", "breed", "probability", title=title)
        for rank, item in enumerate(pred["top"], 1):
            ptable.add_row(str(rank), item["name"], f"{item['prob']:.2%}")
        out.print(ptable)


@app.command("delete")
def delete_cmd(
    ctx: typer.Context,
    image_ids: list[int] = typer.Argument(..., help="Image ids to delete."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete images with their bytes, predictions and jobs."""
    from dogbreed.store import images

    conn = _open(ctx)
    deleted = images.delete_images(conn, image_ids)
    missing = [i for i in image_ids if i not in deleted]
    if as_json:
        _print_json({"deleted": deleted, "missing": missing})
    else:
        for image_id in deleted:
            out.print(f"deleted image {image_id}")
    if missing:
        raise DogbreedError(f"no image with id {', '.join(map(str, missing))}; nothing else was changed")


# ---------------------------------------------------------------- predict, tasks, view


@app.command("predict")
def predict_cmd(
    ctx: typer.Context,
    ids: list[int] = typer.Option([], "--id", help="Image id to predict (repeatable)."),
    every: bool = typer.Option(False, "--all", help="Predict every image again with this checkpoint."),
    pending: bool = typer.Option(
        False, "--pending", help="Every image without a prediction from this checkpoint (finishes killed runs)."
    ),
    device: str = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda (or gpu), mps."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint file (default: the newest finished training run's best)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=0, help="Worker processes (0: in this process; default: auto)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Torch threads per worker."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, max=1024, help="Images per forward pass."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, max=120, help="Breeds to print per image."),
    background: bool = typer.Option(
        False, "--background", help="Queue the jobs, print their ids and return; a detached worker runs them."
    ),
    queued: bool = typer.Option(False, "--queued", hidden=True, help="Run this checkpoint's queued jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classify stored images; every job and prediction is recorded in the store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dogbreed import predict
    from dogbreed.model import select_device
    from dogbreed.store import predictions

    conn = _open(ctx)
    ckpt = checkpoint or predict.default_checkpoint(conn)
    dev, warning = select_device(device)
    if warning:
        err.print(f"[yellow]Warning:[/yellow] {escape(warning)}")
    if queued:
        job_ids, sha = predict.queued_jobs(conn, ckpt)
    else:
        job_ids, sha = predict.plan_jobs(conn, ckpt, image_ids=ids, every=every, pending=pending)
    if background:
        pid = None
        if job_ids:
            pid, log = predict.start_background(
                _db_path(ctx), ckpt, str(dev), workers, batch_size, resolve_paths().home / "logs"
            )
        if as_json:
            _print_json({"job_ids": job_ids, "pid": pid})
        else:
            out.print(
                f"queued {len(job_ids)} job(s): {_id_ranges(job_ids)}"
                + (f"; worker pid {pid}, log {log}" if pid else "")
            )
            out.print("follow them with 'dogbreed tasks'")
        return
    columns = (
        TextColumn("predicting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, disable=as_json or not job_ids) as progress:
        task = progress.add_task("predict", total=len(job_ids), rate=0.0)
        started = time.perf_counter()

        def advance(done: int, failed: int) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done + failed, rate=(done + failed) / elapsed)

        outcome = predict.run_jobs(
            _db_path(ctx),
            ckpt,
            sha,
            job_ids,
            device=str(dev),
            workers=workers,
            threads=threads,
            batch_size=batch_size,
            on_progress=advance,
        )
    results = predictions.for_jobs(conn, job_ids, top_k)
    if as_json:
        _print_json(
            {
                "device": str(dev),
                "checkpoint": str(ckpt),
                "done": outcome.done,
                "failed": outcome.failed,
                "seconds": round(outcome.seconds, 3),
                "load_seconds": round(outcome.load_seconds, 3),
                "results": results,
            }
        )
    else:
        _print_predictions(results)
        work = outcome.seconds - outcome.load_seconds
        rate = (outcome.done + outcome.failed) / work if work > 0 else 0.0
        out.print(
            f"{outcome.done} predicted, {outcome.failed} failed on {dev} in {outcome.seconds:.1f} s "
            f"({outcome.load_seconds:.1f} s loading the model, then {rate:.1f} images/s)"
            if job_ids
            else "nothing to predict: every image already has a prediction from this checkpoint"
        )
    if outcome.failed:
        raise typer.Exit(1)


def _id_ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    parts, start, prev = [], ids[0], ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _print_predictions(results: list[dict[str, Any]], limit: int = 50) -> None:
    from dogbreed.store.predictions import format_top

    if not results:
        return
    table = Table("job", "image", "status", "prediction", title="predictions")
    for r in results[:limit]:
        text = format_top(r["top"]) if r["status"] == "done" else f"[red]{escape(r['error'] or '')}[/red]"
        table.add_row(str(r["job_id"]), str(r["image_id"]), r["status"], text)
    out.print(table)
    if len(results) > limit:
        out.print(f"... and {len(results) - limit} more (use --json for all)")


@app.command("tasks")
def tasks_cmd(
    ctx: typer.Context,
    job_id: int | None = typer.Argument(None, help="One job's id."),
    status: str | None = typer.Option(None, "--status", "-s", help="queued, running, done or failed."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Newest N jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Prediction job status (queued / running / done / failed), newest first."""
    from dogbreed.store import jobs

    if status is not None and status not in jobs.JOB_STATUSES:
        raise DogbreedError(f"unknown status {status!r}; use one of {', '.join(jobs.JOB_STATUSES)}")
    conn = _open(ctx)
    rows = jobs.list_jobs(conn, job_id=job_id, status=status, limit=limit)
    if job_id is not None and not rows:
        raise DogbreedError(f"no job with id {job_id}; see 'dogbreed tasks'")
    if as_json:
        _print_json(rows[0] if job_id is not None else rows)
        return
    counts = jobs.status_counts(conn)
    table = Table(
        "job",
        "image",
        "status",
        "device",
        "created",
        "finished",
        "s",
        "error",
        title="jobs: " + ", ".join(f"{v} {k}" for k, v in counts.items()),
    )
    colors = {"done": "green", "failed": "red", "running": "cyan", "queued": "yellow"}
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["image_id"]),
            f"[{colors[r['status']]}]{r['status']}[/]",
            r["device"] or "",
            (r["created_at"] or "")[:19].replace("T", " "),
            (r["finished_at"] or "")[:19].replace("T", " "),
            f"{r['seconds']:.3f}" if r["seconds"] is not None else "",
            escape(r["error"] or ""),
        )
    out.print(table)


@app.command("view")
def view_cmd(
    ctx: typer.Context,
    image_id: int = typer.Argument(..., help="Image id."),
    output: Path | None = typer.Option(None, "--output", "-o", help="PNG to write (default: view-<id>.png)."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, max=120, help="Breeds in the bar chart."),
) -> None:
    """Write a PNG: the photo, a bar chart of its top-k breeds, and a title coloured by correctness."""
    from dogbreed import viz
    from dogbreed.store import images, predictions

    conn = _open(ctx)
    row = images.get_image(conn, image_id)
    if row is None:
        raise DogbreedError(f"no image with id {image_id}; see 'dogbreed list'")
    preds = predictions.for_image(conn, image_id, top_k=top_k)
    if not preds:
        raise DogbreedError(f"image {image_id} has no prediction yet; run 'dogbreed predict --id {image_id}'")
    data = images.get_image_bytes(conn, image_id)
    target = output or Path(f"view-{image_id}.png")
    if target.is_dir():
        target = target / f"view-{image_id}.png"
    subtitle = f"{Path(preds[0]['checkpoint_path']).name} on {preds[0]['device']}"
    path = viz.render_view(data, preds[0]["top"], row["ground_truth"], target, subtitle=subtitle)
    out.print(str(path))


# ---------------------------------------------------------------- train, stats


class _RichTrainListener:
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
            disable=quiet,
        )
        self.task = None
        self.header_printed = False

    def stage(self, text: str) -> None:
        if not self.quiet:
            err.print(f"[bold]{escape(text)}[/bold]")

    def warn(self, text: str) -> None:
        err.print(f"[yellow]Warning:[/yellow] {escape(text)}", soft_wrap=True)

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
        table = _epoch_table([row], header=not self.header_printed)
        self.header_printed = True
        out.print(table)


_EPOCH_COLUMNS = (
    ("epoch", "epoch", "{}"),
    ("train_loss", "loss", "{:.4f}"),
    ("train_acc", "acc", "{:.1%}"),
    ("val_loss", "val loss", "{:.4f}"),
    ("val_acc", "val acc", "{:.1%}"),
    ("val_top5", "val top5", "{:.1%}"),
    ("val_f1", "val F1", "{:.3f}"),
    ("seconds", "s", "{:.1f}"),
)


def _epoch_table(rows: list[dict[str, Any]], header: bool = True, title: str | None = None) -> Table:
    table = Table(show_header=header, title=title, box=None)
    for _key, label, _fmt in _EPOCH_COLUMNS:
        table.add_column(label, justify="right", width=8, no_wrap=True)
    table.add_column("", min_width=4)
    for row in rows:
        cells = [fmt.format(row[key]) for key, _label, fmt in _EPOCH_COLUMNS]
        table.add_row(*cells, "best" if row.get("best") else "")
    return table


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    dataset: Path | None = typer.Option(
        None, "--dataset", help="Stanford-layout dataset dir (default: $DOGBREED_HOME/dataset)."
    ),
    model: str = typer.Option(
        "ResNet", "--model", "-m", help="ResNet, EfficientNet or any torchvision classifier name."
    ),
    finetune: bool = typer.Option(
        False, "--finetune/--extractor", help="Train the whole network, or only a head on a frozen backbone."
    ),
    epochs: int = typer.Option(10, "--epochs", "-e", min=1, help="Epochs."),
    batch: int = typer.Option(64, "--batch", min=2, help="Batch size."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Learning rate (AdamW, cosine schedule)."),
    image_size: int = typer.Option(224, "--image-size", min=16, help="Input size in pixels."),
    pretrained: bool = typer.Option(
        True, "--pretrained/--no-pretrained", help="Start from torchvision's ImageNet weights."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Backbone weights file (a torchvision state dict)."),
    device: str = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda (or gpu), mps."),
    workers: int = typer.Option(2, "--workers", "-w", min=0, help="Data-loading worker processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for splits, shuffling and initialisation."),
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
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train a breed classifier; the best epoch (by validation accuracy) is kept and evaluated on the test split."""
    from dogbreed.train import TrainConfig, train

    paths = resolve_paths(db=_db_path(ctx), dataset=dataset)
    _open(ctx).close()  # create / migrate the store before training writes to it
    config = TrainConfig(
        dataset=paths.dataset,
        checkpoints_dir=paths.checkpoints,
        model=model,
        mode="finetune" if finetune else "extractor",
        epochs=epochs,
        batch=batch,
        lr=lr,
        image_size=image_size,
        pretrained=pretrained,
        weights=weights,
        device=device,
        workers=workers,
        seed=seed,
        limit_per_class=limit_per_class,
        name=name,
        save=save,
        cache_features=cache_features,
    )
    result = train(config, paths.db, _RichTrainListener(quiet=as_json))
    if as_json:
        payload = {k: v for k, v in result.__dict__.items() if k != "test"}
        payload["checkpoint"] = str(result.checkpoint) if result.checkpoint else None
        if result.test:
            payload["test"] = {k: v for k, v in result.test.items() if k not in ("y_true", "y_pred")}
        _print_json(payload)
    else:
        _print_train_summary(result)
    if result.status == "interrupted":
        raise typer.Exit(130)


def _print_train_summary(result: Any) -> None:
    if result.skipped:
        err.print(f"[yellow]{len(result.skipped)} unreadable dataset image(s) skipped:[/yellow]")
        for path, reason in sorted(result.skipped.items()):
            err.print(f"  {escape(path)}: {escape(reason)}", soft_wrap=True)
    if result.status == "interrupted":
        kept = f"; best checkpoint so far: {result.checkpoint}" if result.checkpoint else ""
        out.print(f"run {result.run_id} interrupted after epoch {len(result.epochs)}{kept}")
        return
    t = result.test
    table = Table(show_header=False, title=f"run {result.run_id}: finished")
    table.add_row("best epoch", str(result.best_epoch))
    table.add_row("validation accuracy", f"{result.best_val_acc:.2%}")
    table.add_row("test accuracy", f"{t['accuracy']:.2%}  ({t['n']} images)")
    table.add_row("test top-5", f"{t['top5']:.2%}")
    table.add_row("test macro F1", f"{t['macro_f1']:.3f}")
    table.add_row("checkpoint", str(result.checkpoint) if result.checkpoint else "not saved (--no-save)")
    out.print(table)
    if t["most_confused"]:
        from dogbreed.breeds import display_name

        pairs = ", ".join(
            f"{display_name(p['true'])} -> {display_name(p['predicted'])} ({p['count']})"
            for p in t["most_confused"][:5]
        )
        out.print(f"most confused: {pairs}", soft_wrap=True)


def _fmt(value: Any, fmt: str) -> str:
    return "" if value is None else fmt.format(value)


@app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    run_id: int | None = typer.Argument(None, help="One run's id: its per-epoch table."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write loss / accuracy / F1 curves (this run, or the newest)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Training runs and their metrics, and a summary of the store."""
    from dogbreed.store import runs

    conn = _open(ctx)
    runs.mark_abandoned(conn)
    if run_id is None:
        all_runs = runs.list_runs(conn)
        summary = runs.store_summary(conn)
        if as_json:
            _print_json({"runs": all_runs, "store": summary})
        else:
            _print_runs_table(all_runs)
            _print_store_summary(summary)
        if plot is not None:
            if not all_runs:
                raise DogbreedError("no training runs yet to plot; run 'dogbreed train'")
            _plot_run(runs.get_run(conn, all_runs[0]["id"]), plot)
        return
    run = runs.get_run(conn, run_id)
    if run is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    if plot is not None:
        _plot_run(run, plot)
    if as_json:
        _print_json(run)
        return
    rows = [dict(e, best=e["epoch"] == run["best_epoch"]) for e in run["epochs"]]
    out.print(_epoch_table(rows, title=f"run {run_id}: {run['name']} ({run['model']} {run['mode']}, {run['status']})"))
    report = run["test_report"]
    if report:
        out.print(
            f"test: accuracy {report['accuracy']:.2%}, top-5 {report['top5']:.2%}, macro F1 {report['macro_f1']:.3f} "
            f"on {report['n']} images; checkpoint {run['checkpoint_path']}",
            soft_wrap=True,
        )


def _plot_run(run: dict[str, Any], plot: Path) -> None:
    from dogbreed import viz

    if not run["epochs"]:
        raise DogbreedError(f"run {run['id']} has no finished epoch to plot")
    viz.render_curves(run["epochs"], plot, title=f"run {run['id']}: {run['name']}")
    err.print(f"wrote {plot}")


def _print_runs_table(all_runs: list[dict[str, Any]]) -> None:
    table = Table(
        "run", "name", "model", "status", "epochs", "val acc", "test acc", "F1", "time", title="training runs"
    )
    for r in all_runs:
        table.add_row(
            str(r["id"]),
            escape(r["name"]),
            f"{r['model']} {r['mode']}",
            r["status"],
            str(r["epochs"]),
            _fmt(r["best_val_acc"], "{:.1%}"),
            _fmt(r["test_acc"], "{:.1%}"),
            _fmt(r["test_macro_f1"], "{:.3f}"),
            _fmt(r["duration_s"], "{:.0f} s"),
        )
    out.print(table)


def _print_store_summary(s: dict[str, Any]) -> None:
    acc = f"{s['accuracy']:.1%} of {s['scored']}" if s["accuracy"] is not None else "n/a (no labelled predictions)"
    out.print(
        f"store: {s['images']} images, {s['labelled']} labelled, {s['predicted']} predicted; "
        f"latest predictions vs ground truth: {acc}"
    )


# ---------------------------------------------------------------- dataset

dataset_app = typer.Typer(
    cls=_Group, help="The Stanford Dogs dataset: download, inspect, or make a synthetic one.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("download")
def dataset_download_cmd(
    directory: Path | None = typer.Option(None, "--dir", help="Where to put it (default: $DOGBREED_HOME/dataset)."),
    url: str = typer.Option(
        "http://vision.stanford.edu/aditya86/ImageNetDogs/", "--url", help="Base URL of the archives."
    ),
    annotations: bool = typer.Option(False, "--annotations", help="Also fetch annotation.tar (bounding boxes)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Download images.tar and lists.tar (resumable), check them and extract them safely."""
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from dogbreed.dataset import download

    dest = resolve_paths(dataset=directory).dataset
    with Progress(
        TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(), console=err, disable=as_json
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        report = download(dest, url, annotations=annotations, on_progress=on_progress)
    if as_json:
        _print_json({"dataset": str(dest), "archives": report})
        return
    for item in report:
        extra = f" ({item['members']} files)" if "members" in item else ""
        out.print(f"{item['archive']}: {item['status']}{extra}")
    out.print(f"dataset ready in {dest}")


@dataset_app.command("info")
def dataset_info_cmd(
    directory: Path | None = typer.Option(
        None, "--dataset", "--dir", help="Dataset dir (default: $DOGBREED_HOME/dataset)."
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Decode every image once (cached) and list bad ones."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Classes, images per class, whether the official split is present, and unreadable files."""
    from rich.progress import Progress

    from dogbreed.dataset import info

    root = resolve_paths(dataset=directory).dataset
    with Progress(console=err, transient=True, disable=as_json or not verify) as progress:
        task = progress.add_task("verifying", total=None)
        report = info(root, run_verify=verify, on_progress=lambda i, n: progress.update(task, completed=i, total=n))
    if as_json:
        _print_json(report)
        return
    table = Table("WordNet id", "breed", "images", title=f"{report['dataset']}: {report['classes']} breeds")
    for row in report["per_class"]:
        table.add_row(row["wnid"], row["name"], str(row["images"]))
    out.print(table)
    split = (
        f"official split: {report['official_train']} train / {report['official_test']} test"
        if report["official_split"]
        else "no official lists/: training will use a seeded stratified split"
    )
    out.print(f"{report['images']} images; {split}")
    if verify:
        bad = report["unreadable"]
        out.print(f"{len(bad)} unreadable file(s)" + (":" if bad else ""))
        for item in bad:
            out.print(f"  {escape(item['path'])}: {escape(item['reason'])}", soft_wrap=True)


@dataset_app.command("synthetic")
def dataset_synthetic_cmd(
    directory: Path = typer.Option(Path("dataset/synthetic-dogs"), "--dir", help="Where to write it."),
    breeds: int = typer.Option(6, "--breeds", min=2, max=120, help="Number of breeds."),
    per_class: int = typer.Option(40, "--per-class", min=4, help="Images per breed."),
    size: int = typer.Option(96, "--size", min=16, help="Image width in pixels (height is 3/4 of it)."),
    lists: bool = typer.Option(True, "--lists/--no-lists", help="Also write official-style lists/*.mat."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a small SYNTHETIC dataset (coloured stripe patterns, not dogs) in the Stanford layout."""
    from dogbreed.synthetic import make_synthetic

    if (directory / "Images").exists():
        raise DogbreedError(f"{directory}/Images already exists; choose another --dir or remove it")
    chosen = make_synthetic(
        directory, breeds=breeds, per_class=per_class, size=(size, size * 3 // 4), lists=lists, seed=seed
    )
    out.print(f"wrote {len(chosen) * per_class} synthetic images of {len(chosen)} breeds to {directory}")
