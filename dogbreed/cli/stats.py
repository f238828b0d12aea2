"""stats: training runs, evaluations and the store, at a glance or one run's epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    Column,
    CsvOpt,
    JsonOpt,
    NlOpt,
    emit,
    epoch_table,
    err,
    examples,
    note,
    open_db,
    out,
    output_format,
    percent,
    print_json,
    safe,
    when,
)
from dogbreed.cli.images import MAX_ID
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import SYNTHETIC_NOTE


def _run_name(row: dict[str, Any]) -> str:
    return f"{row['name']} (synthetic data)" if row.get("synthetic") else row["name"]


RUN_COLUMNS = [
    Column("id", "run", justify="right"),
    Column("name", "name", fold=True, show=_run_name),
    Column("synthetic", "synthetic", table=False),  # the table says it beside the name
    Column("model", "model"),
    Column("mode", "mode"),
    Column("status", "status"),
    Column("epochs_done", "epochs", justify="right", drop=1),
    Column("best_val_acc", "val acc", percent, justify="right"),
    Column("test_acc", "test acc", percent, justify="right"),
    Column("test_macro_f1", "F1", lambda v: f"{v:.3f}", justify="right", drop=2),
    Column("precision", "precision", drop=3),
    Column("duration_s", "time", lambda v: f"{v:.0f} s", justify="right", drop=4),
    Column("checkpoint_path", "checkpoint", fold=True),
]
EVAL_COLUMNS = [
    Column("id", "eval", justify="right"),
    Column("model_name", "model", fold=True),
    Column("run_id", "run", justify="right", drop=2),
    Column("data", "data", fold=True),
    Column("split", "split"),
    Column("n", "images", justify="right"),
    Column("top1", "top-1", percent, justify="right"),
    Column("top5", "top-5", percent, justify="right", drop=3),
    Column("macro_f1", "F1", lambda v: f"{v:.3f}", justify="right", drop=1),
    Column("precision", "precision", drop=4),
    Column("device", "device", drop=5),
    Column("created_at", "when", when, drop=6),
]


def _run_rows(runs: list[Any]) -> list[dict[str, Any]]:
    from dogbreed.records import run_record

    return [run_record(r) for r in runs]


def _epoch_csv() -> list[Column]:
    from dogbreed.store.runs import EPOCH_FIELDS

    return [Column(k, k) for k in EPOCH_FIELDS]


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
    from dogbreed.store import evaluations

    fmt = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    if evaluations_only:
        if run_id is not None or plot is not None:
            raise DogbreedError("--evaluations lists every evaluation; drop RUN and --plot")
        rows = [e.to_dict() for e in evaluations.list_evaluations(conn, limit=1000)]
        emit(rows, EVAL_COLUMNS, fmt, title="evaluations", empty="no evaluations yet; run 'dogbreed eval'")
    elif run_id is None:
        _show_all(conn, fmt, plot)
    else:
        _show_run(conn, run_id, fmt, plot)


def _show_all(conn: Any, fmt: str, plot: Path | None) -> None:
    from dogbreed.imagenet import DOG_THRESHOLD
    from dogbreed.store import evaluations, runs

    all_runs = runs.list_runs(conn)
    evals = [e.to_dict() for e in evaluations.list_evaluations(conn)]
    summary = runs.store_summary(conn, DOG_THRESHOLD)
    rows = _run_rows(all_runs)
    if fmt == "json":
        print_json({"runs": rows, "evaluations": evals, "store": summary})
    else:
        emit(rows, RUN_COLUMNS, fmt, title="training runs", empty="no training runs yet")
        if fmt == "table":
            if evals:
                emit(evals, EVAL_COLUMNS, fmt, title="evaluations (dogbreed eval)")
            print_store_summary(summary)
    if plot is not None:
        if not all_runs:
            raise DogbreedError("no training runs yet to plot; run 'dogbreed train'")
        plot_run(runs.get_run(conn, all_runs[0].id), plot)


def _show_run(conn: Any, run_id: int, fmt: str, plot: Path | None) -> None:
    from dogbreed.cli.models import recorded_check_rows
    from dogbreed.store import evaluations, runs

    run = runs.get_run(conn, run_id)
    if run is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    evals = [e.to_dict() for e in evaluations.list_evaluations(conn, run_id=run_id)]
    checks = recorded_check_rows(evaluations.checks_for(conn, run.checkpoint_sha256)) if run.checkpoint_sha256 else []
    if plot is not None:
        plot_run(run, plot)
    if fmt == "json":
        print_json({**_run_rows([run])[0], "evaluations": evals, "engine_checks": checks})
        return
    if fmt in ("csv", "nl"):
        emit(run.epochs, _epoch_csv(), fmt)
        return
    _print_run(run, evals, checks)


def _print_run(run: Any, evals: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    from dogbreed.cli.models import RECORDED_COLUMNS
    from dogbreed.models.sources import is_synthetic_run

    rows = [dict(e, best=e["epoch"] == run.best_epoch) for e in run.epochs]
    data = f", {SYNTHETIC_NOTE}" if is_synthetic_run(run) else ""
    title = f"run {run.id}: {safe(run.name)} ({run.model} {run.mode}, {run.status}{data})"
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
        emit(evals, EVAL_COLUMNS, "table", title=f"evaluations of run {run.id}")
    if checks:
        emit(checks, RECORDED_COLUMNS, "table", title="engine checks (agreement with torch fp32; 'dogbreed check')")
    if run.error:
        out.print(f"{run.status}: {safe(run.error)}", soft_wrap=True)
    resumable = run.last_checkpoint_path and Path(run.last_checkpoint_path).is_file()
    if run.status in ("interrupted", "failed") and resumable:  # advice only where it can be followed
        out.print(f"continue it with: dogbreed train --resume {run.id}")


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
