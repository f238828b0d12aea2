"""predict, tasks, view: classifying stored (or new) photos and looking at the results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    NUMBERS_LEGEND,
    BatchSizeOpt,
    CheckpointOpt,
    Column,
    CsvOpt,
    DeviceOpt,
    EngineOpt,
    JsonOpt,
    ModelOpt,
    NlOpt,
    PrecisionOpt,
    QuietOpt,
    RunOpt,
    WeightsOpt,
    clean,
    db_path,
    emit,
    err,
    examples,
    flat_fields,
    flat_top,
    open_db,
    out,
    output_format,
    percent,
    print_json,
    safe,
    top_k_opt,
    warn,
    when,
)
from dogbreed.cli.images import MAX_ID, dog_mark, print_upload_line
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import SYNTHETIC_NOTE
from dogbreed.records import not_a_dog


def resolve_model(conn: Any, checkpoint: Path | None, model: str | None, weights: Path | None, run: int | None):
    from dogbreed.models import sources

    return sources.resolve(conn, checkpoint=checkpoint, model=model, weights=weights, run=run)


def describe_model(source: Any, choice: Any) -> str:
    """The model line: which model, whether it learnt from synthetic data, why it was chosen and how to change the
    default (for a default), and where it runs."""
    data = f", {SYNTHETIC_NOTE}" if source.synthetic else ""
    why = f" ({source.reason})" if source.reason else ""
    return f"model: {source.name}{data}{why}; {choice.engine} {choice.precision} on {choice.device}"


def result_json(r: Any, outcome: Any, top_k: int) -> dict[str, Any]:
    pred = r.prediction
    return {
        "job_id": r.job_id,
        "image_id": r.image_id,
        "filename": r.filename,
        "status": r.status,
        "error": r.error,
        "top": [s.to_dict() for s in pred.top(top_k)] if pred else [],
        "dog_probability": pred.dog_probability if pred else None,
        "not_a_dog": not_a_dog(pred.dog_probability) if pred else None,
        "model": outcome.source.name,
        "model_key": outcome.source.key,
        "device": pred.device if pred else outcome.choice.device,
        "engine": outcome.choice.engine,
        "precision": outcome.choice.precision,
    }


RESULT_FIELDS = (  # the keys of result_json, in order: CSV's header even when there are no rows
    "job_id",
    "image_id",
    "filename",
    "status",
    "error",
    "top",
    "dog_probability",
    "not_a_dog",
    "model",
    "model_key",
    "device",
    "engine",
    "precision",
)

RESULT_COLUMNS = [
    Column("image_id", "image", justify="right"),
    Column("filename", "file", fold=True),
    Column("top1", "breed"),
    Column("top1_probability", "among breeds", percent, justify="right"),
    Column("others", "runners-up (among breeds)", fold=True, drop=1),
    Column("dog_probability", "dog at all", dog_mark, justify="right", missing="?"),
]


def csv_fields(top_k: int) -> list[str]:
    """predict's CSV header: RESULT_FIELDS with the top-k flat (top1, p1, top2, p2, ...) instead of one JSON cell."""
    i = RESULT_FIELDS.index("top")
    return [*RESULT_FIELDS[:i], *flat_fields(top_k), *RESULT_FIELDS[i + 1 :]]


def _table_row(item: dict[str, Any]) -> dict[str, Any]:
    top = item["top"]
    row = dict(item)
    if item["status"] != "done":
        row.update(top1=f"FAILED: {clean(item['error'])}", top1_probability=None, others=None)
        return row
    row["top1"] = top[0]["breed"] if top else ""
    row["top1_probability"] = top[0]["probability"] if top else None
    row["others"] = ", ".join(f"{t['breed']} {t['probability']:.1%}" for t in top[1:])
    return row


@app.command(
    "predict",
    epilog=examples(
        "dogbreed predict dog.jpg",
        "dogbreed predict photos/ --model efficientnet_b0 --top-k 5",
        "dogbreed predict --pending --checkpoint checkpoints/demo-run1.pt --device cuda",
    ),
)
def predict_cmd(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        None, metavar="[PATH...]", help="Photos to store and classify in one go (files, folders, globs)."
    ),
    ids: list[int] = typer.Option([], "--id", min=0, max=MAX_ID, help="A stored image's id (repeatable)."),
    every: bool = typer.Option(False, "--all", help="Every stored image, again (replacing this model's earlier one)."),
    pending: bool = typer.Option(
        False, "--pending", help="Every image without a prediction from this model (finishes killed runs)."
    ),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    precision: PrecisionOpt = "auto",
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=0, max=256, help="Worker processes (0: in this process; default: the engine's)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, max=1024, help="Compute threads per worker."),
    batch_size: BatchSizeOpt = 16,
    top_k: int = top_k_opt(3),
    background: bool = typer.Option(
        False, "--background", help="Queue the jobs, print their ids and return; a detached worker runs them."
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Classify photos, new (PATH...) or already stored (--id, --all, --pending).

    PATHs are stored first (duplicates recognised). Every job and prediction is recorded in the store with the
    model that made it; with no model named, the pinned default, else the best trained run, else a ready one.
    """
    from dogbreed import predict

    fmt = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    source = resolve_model(conn, checkpoint, model, weights, run)
    conn.close()
    request = predict.PredictRequest(
        paths=list(paths or []),
        image_ids=list(ids),
        every=every,
        pending=pending,
        source=source,
        device=device,
        engine=engine,
        precision=precision,
        workers=workers,
        threads=threads,
        batch_size=batch_size,
        background=background,
    )
    with _Progress(fmt, quiet) as progress:
        try:
            outcome = predict.predict_images(
                db_path(ctx), request, on_progress=progress.advance, on_start=progress.start, on_check=progress.check
            )
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP: the jobs in flight were handed back
            from dogbreed.procs import stop_exit_code, stop_signal_name

            again = "" if source.reason else f" {source.as_options()}"
            how = stop_signal_name("")
            err.print(
                f"interrupted{f' ({how})' if how else ''}: the predictions made so far are stored; the rest stay "
                f"queued: 'dogbreed predict --pending{again}' finishes them",
                soft_wrap=True,
                markup=False,
            )
            raise typer.Exit(stop_exit_code()) from None
    _render(outcome, fmt, top_k, quiet, background)


class _Progress:
    """What predict says while it runs: the model line and its engine note, refused files, a progress bar."""

    def __init__(self, fmt: str, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.fmt, self.quiet = fmt, quiet
        rate = TextColumn("{task.fields[rate]}")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), rate)
        show = fmt == "table" and err.is_terminal and not quiet
        self.bar = Progress(*columns, TimeRemainingColumn(), console=err, transient=True, disable=not show)
        self.task: Any = None
        self.checking: Any = None
        self.t0 = time.perf_counter()

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def check(self, what: str, done: int, total: int) -> None:
        """A ready model's engine checks, measured once before its first predict at auto."""
        if self.checking is None:
            if self.fmt == "table" and not self.quiet:
                err.print(safe(what), soft_wrap=True)
            self.checking = self.bar.add_task("checking engines", total=total, rate="")
        self.bar.update(self.checking, completed=done, total=total)

    def start(self, outcome: Any) -> None:
        if self.checking is not None:
            self.bar.remove_task(self.checking)
        if outcome.choice.warning:
            warn(outcome.choice.warning)
        if outcome.measure_error:
            warn(f"the faster engines could not be measured ({outcome.measure_error}); running the reference")
        if self.fmt == "table":
            err.print(safe(describe_model(outcome.source, outcome.choice)), soft_wrap=True)
            if outcome.choice.hint and not self.quiet:  # only when there is something to do
                err.print(safe(f"engine: {outcome.choice.hint}"), soft_wrap=True)
        if self.fmt != "json":  # refusals always show (JSON carries them); beside CSV/NL output, on stderr
            for u in outcome.uploads:
                if u.status == "refused":
                    print_upload_line(u, out if self.fmt == "table" else err)
        if self.fmt == "table" and not self.quiet:  # a file already stored is listed under its stored name: say so
            for u in outcome.uploads:
                if u.status == "duplicate":
                    print_upload_line(u)
        self.task = self.bar.add_task("predicting", total=len(outcome.job_ids), rate="")
        self.t0 = time.perf_counter()

    def advance(self, done: int, failed: int, total: int) -> None:
        rate = (done + failed) / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, completed=done + failed, rate=f"{rate:.1f} img/s")


def _render(outcome: Any, fmt: str, top_k: int, quiet: bool, background: bool) -> None:
    """The results (or the queued jobs, for --background); exit 1 when a job failed or a file was refused."""
    refused = [u for u in outcome.uploads if u.status == "refused"]
    if background:
        _print_background(outcome, fmt)
    else:
        items = [result_json(r, outcome, top_k) for r in outcome.results]
        if fmt == "json":
            print_json(_summary_json(outcome, items))
        elif fmt == "table":
            if not quiet and items:
                rows = [_table_row(i) for i in items]
                emit(rows, RESULT_COLUMNS, "table", title="predictions", caption=NUMBERS_LEGEND)
            out.print(_summary_line(outcome), soft_wrap=True)
        elif fmt == "csv":
            emit([flat_top(i, top_k) for i in items], [Column(k, k) for k in csv_fields(top_k)], fmt)
        else:
            emit(items, [Column(k, k) for k in RESULT_FIELDS], fmt)
    if outcome.failed or refused:
        raise typer.Exit(1)


def _summary_json(outcome: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": outcome.source.name,
        "model_key": outcome.source.key,
        "model_ref": outcome.source.ref,
        "reason": outcome.source.reason or None,
        "synthetic": outcome.source.synthetic,
        "device": outcome.choice.device,
        "engine": outcome.choice.engine,
        "precision": outcome.choice.precision,
        "engine_note": outcome.choice.note,
        "engine_hint": outcome.choice.hint or None,
        "engines_measured_on": outcome.measured,
        "checkpoint": outcome.source.file,
        "done": outcome.done,
        "failed": outcome.failed,
        "deleted_meanwhile": outcome.dropped,
        "seconds": round(outcome.seconds, 3),
        "load_seconds": round(outcome.load_seconds, 3),
        "images_per_second": round(outcome.rate, 2),
        "uploads": [u.to_dict() for u in outcome.uploads],
        "results": items,
    }


def _summary_line(outcome: Any) -> str:
    if not outcome.job_ids:
        if outcome.store_empty:
            return "nothing to predict: the store has no images yet; add some with 'dogbreed upload PATH'"
        if outcome.uploads and not any(u.image_id for u in outcome.uploads):
            return "nothing to predict: no picture could be stored"
        return "nothing to predict: every image already has a prediction from this model"
    dropped = f", {outcome.dropped} deleted meanwhile" if outcome.dropped else ""
    refused = sum(u.status == "refused" for u in outcome.uploads)
    dropped += f", {refused} refused" if refused else ""
    return (
        f"{outcome.done} predicted, {outcome.failed} failed{dropped} on {outcome.choice.device} in "
        f"{outcome.seconds:.1f} s ({outcome.load_seconds:.1f} s loading the model, then {outcome.rate:.1f} images/s)"
    )


def _print_background(outcome: Any, fmt: str) -> None:
    if fmt == "json":
        print_json(
            {
                "job_ids": outcome.job_ids,
                "pid": outcome.background_pid,
                "log": outcome.log,
                "model": outcome.source.name,
            }
        )
        return
    where = f"; worker pid {outcome.background_pid}, log {outcome.log}" if outcome.background_pid else ""
    out.print(f"queued {len(outcome.job_ids)} job(s): {id_ranges(outcome.job_ids)}{safe(where)}", soft_wrap=True)
    out.print("follow them with 'dogbreed tasks'")


def id_ranges(ids: list[int]) -> str:
    """'1-4, 7, 9-10' for [1, 2, 3, 4, 7, 9, 10]."""
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


# ---------------------------------------------------------------- tasks

TASK_COLUMNS = [
    Column("id", "job", justify="right"),
    Column("image_id", "image", justify="right"),
    Column("status", "status"),
    Column("model_name", "model", fold=True),
    Column("device", "device"),
    Column("created_at", "created", when),
    Column("finished_at", "finished", when),
    Column("seconds", "s", lambda s: f"{s:.3f}", justify="right"),
    Column("error", "error", fold=True),
]


@app.command("tasks", epilog=examples("dogbreed tasks", "dogbreed tasks --status failed", "dogbreed tasks 42 --json"))
def tasks_cmd(
    ctx: typer.Context,
    job_id: int | None = typer.Argument(None, metavar="[JOB]", min=0, max=MAX_ID, help="One job's id."),
    status: str | None = typer.Option(
        None, "--status", "-s", help="queued, running, abandoned (its process is gone), done or failed."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1_000_000, help="Newest N jobs."),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Prediction jobs (queued / running / abandoned / done / failed), newest first."""
    from dogbreed.store import jobs

    fmt = output_format(as_json, as_csv, as_nl)
    statuses = (*jobs.JOB_STATUSES, jobs.ABANDONED)
    if status is not None and status not in statuses:
        raise DogbreedError(f"unknown status {status!r}; use one of {', '.join(statuses)}")
    conn = open_db(ctx)
    if job_id is not None:
        job = jobs.get_job(conn, job_id)
        if job is None:
            raise DogbreedError(f"no job with id {job_id}; see 'dogbreed tasks'")
        if fmt == "table":
            emit([job.to_dict()], TASK_COLUMNS, fmt, title=f"job {job_id}")
        else:
            print_json(job.to_dict()) if fmt == "json" else emit([job.to_dict()], TASK_COLUMNS, fmt)
        return
    rows = [j.to_dict() for j in jobs.list_jobs(conn, status=status, limit=limit)]
    counts = jobs.status_counts(conn)
    title = "jobs: " + ", ".join(f"{v} {k}" for k, v in counts.items())
    empty = f"no {status} jobs" if status and any(counts.values()) else "no jobs yet: 'dogbreed predict' makes them"
    emit(rows, TASK_COLUMNS, fmt, title=title, empty=empty)


# ---------------------------------------------------------------- view


@app.command(
    "view",
    epilog=examples(
        "dogbreed view 3", "dogbreed view 3 --output rex.png --top-k 5", "dogbreed view 3 --model resnet50"
    ),
)
def view_cmd(
    ctx: typer.Context,
    image_id: int = typer.Argument(..., metavar="ID", min=0, max=MAX_ID, help="Image id."),
    output: Path | None = typer.Option(None, "--output", "-o", help="PNG to write (default: view-<id>.png)."),
    top_k: int = top_k_opt(10),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
) -> None:
    """Draw one image's prediction to a PNG.

    The photo, a bar chart of its top-k breeds (only breeds the model knows), a title coloured by correctness,
    the image id, file name and model, and a mark when the photo is probably not a dog.
    """
    from dogbreed import viz

    conn = open_db(ctx)
    source = (
        resolve_model(conn, checkpoint, model, weights, run)
        if any(x is not None for x in (checkpoint, model, run))
        else None
    )
    view = viz.image_view(conn, image_id, top_k=top_k, source=source)
    target = output or Path(f"view-{image_id}.png")
    if target.is_dir():
        target = target / f"view-{image_id}.png"
    path = view.draw(target)
    out.print(safe(path), soft_wrap=True)
