"""eval: how good a model is on labelled pictures, measured as predict runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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
    given_options,
    key_value_table,
    note,
    open_db,
    out,
    output_format,
    percent,
    print_json,
    safe,
    warn,
)
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import SYNTHETIC_NOTE

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

        outcome = evaluate.evaluate_model(db_path(ctx), request, on_progress=on_progress, on_stage=on_stage)
    if outcome.choice.warning:
        warn(outcome.choice.warning)
    for text in outcome.notes:
        warn(text)
    if plot is not None:
        _plot(outcome, plot)
    if fmt == "json":
        print_json(eval_json(outcome))
    elif fmt in ("csv", "nl"):
        emit(outcome.report["per_breed"], [Column(k, k) for k in ("breed", *[c.key for c in PER_BREED_COLUMNS])], fmt)
    else:
        print_eval(outcome, quiet)
    if outcome.imagenet_overlap:
        from dogbreed.models.zoo import IMAGENET_CAVEAT

        note(IMAGENET_CAVEAT)


def _plot(outcome: Any, plot: Path) -> None:
    from dogbreed import viz

    r = outcome.report
    data = Path(outcome.data).name or outcome.data
    title = f"{outcome.source.name} on {data}" + ("" if outcome.data == outcome.split else f" ({outcome.split})")
    viz.render_confusion(r["y_true"], r["y_pred"], r["classes"], plot, title=title, class_names=r.get("class_names"))
    err.print(f"wrote {safe(plot)}", soft_wrap=True)


def eval_json(outcome: Any) -> dict[str, Any]:
    report = {k: v for k, v in outcome.report.items() if k not in ("y_true", "y_pred", "paths", "classes")}
    return {
        "evaluation_id": outcome.evaluation_id,
        "model": outcome.source.name,
        "model_key": outcome.source.key,
        "model_ref": outcome.source.ref,
        "reason": outcome.source.reason or None,
        "synthetic": outcome.source.synthetic,
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
    data = f", {SYNTHETIC_NOTE}" if outcome.source.synthetic else ""
    rows = [
        ("model", f"{outcome.source.name}{data}{why}"),
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
        names = r.get("class_names")
        pairs = [
            {**p, "true": display_name(p["true"], names), "predicted": display_name(p["predicted"], names)}
            for p in r["most_confused"]
        ]
        columns = [
            Column("true", "true breed"),
            Column("predicted", "taken for"),
            Column("count", "images", justify="right"),
        ]
        emit(pairs, columns, "table", title="most confused")
