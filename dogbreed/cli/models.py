"""models, export, check: the ready ImageNet models, which model predict uses when none is named, exported
models, and the accuracy checks that let predict run faster engines."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    CheckpointOpt,
    Column,
    CsvOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    NlOpt,
    QuietOpt,
    RunOpt,
    WeightsOpt,
    clean,
    emit,
    err,
    examples,
    key_value_table,
    open_db,
    out,
    output_format,
    percent,
    print_json,
    safe,
    warn,
    when,
)
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import SYNTHETIC_NOTE

MODEL_COLUMNS = [
    Column("name", "model"),
    Column("weights", "weights"),
    Column("imagenet_top1", "ImageNet top-1", lambda v: f"{v:.1f}%", justify="right"),
    Column("gflops", "GFLOPs", lambda v: f"{v:.2f}", justify="right"),
    Column("file_mb", "file MB", lambda v: f"{v:.0f}", justify="right"),
    Column("cached", "cached", lambda v: "yes" if v else "", justify="center"),
    Column("default", "", lambda v: "default" if v else ""),
]


@app.command(
    "models",
    epilog=examples(
        "dogbreed models",
        "dogbreed models --default efficientnet_b0",
        "dogbreed models --default run:3   # or a checkpoint path; 'auto' unpins",
    ),
)
def models_cmd(
    ctx: typer.Context,
    default: str | None = typer.Option(
        None,
        "--default",
        help="Pin the model predict uses when none is named: a ready model name, run:N, a checkpoint path, or auto.",
    ),
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """List the ready ImageNet models and pin the one predict uses by default.

    Every Stanford breed is an ImageNet class, so these torchvision classifiers are breed classifiers with no
    training: published ImageNet top-1, GFLOPs, file size, and whether the weights are already cached.
    """

    from dogbreed import engines
    from dogbreed.models import sources, zoo

    fmt = output_format(as_json, as_csv, as_nl)
    if weights is not None and default is None:
        raise DogbreedError("--weights goes with --default ARCH (the ready model those ImageNet weights are for)")
    conn = open_db(ctx)
    if default is not None:
        asked = sources.pin_request(default, weights)
        chosen = None if asked is None else sources.resolve(conn, **asked)
        if chosen is not None:
            engines.validate(chosen)  # a file that cannot be loaded is refused now, not at every later predict
        sources.pin(conn, chosen)
    current = sources.resolve(conn)
    rows = []
    for m in zoo.ready_models():
        row = m.to_dict()
        row["default"] = current.is_ready(m.name)
        rows.append(row)
    chosen = {
        "model": current.name,
        "kind": current.kind,
        "ref": current.ref,
        "reason": current.reason,
        "synthetic": current.synthetic,
    }
    if fmt == "json":
        print_json({"default": chosen, "ready_models": rows})
        return
    emit(rows, MODEL_COLUMNS, fmt, title="ready models (ImageNet-1k classifiers; every Stanford breed is a class)")
    if fmt == "table":
        data = f", {SYNTHETIC_NOTE}" if current.synthetic else ""
        out.print(f"predict uses: {safe(current.name)}{data} ({safe(current.reason)})", soft_wrap=True)
        out.print(safe(zoo.IMAGENET_CAVEAT), soft_wrap=True)


# ---------------------------------------------------------------- export and check


def _source_from(
    conn: Any, what: str | None, checkpoint: Path | None, model: str | None, weights: Path | None, run: int | None
):
    """The model named by a positional RUN|CHECKPOINT, or by the usual options, or the default one."""
    from dogbreed.models import sources

    if what is not None:
        if checkpoint is not None or run is not None or model is not None:
            raise DogbreedError("name the model once: RUN|CHECKPOINT, or --run/--checkpoint/--model")
        return sources.resolve(conn, weights=weights, **sources.named(what))
    return sources.resolve(conn, checkpoint=checkpoint, model=model, weights=weights, run=run)


def _progress(label: str, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )


CHECK_COLUMNS = [
    Column("engine", "engine"),
    Column("precision", "precision"),
    Column("device", "device"),
    Column("agreement", "top-1 agreement", lambda v: f"{v:.2%}", justify="right"),
    Column("n", "images", justify="right"),
    Column("reference_accuracy", "fp32 accuracy", percent, justify="right"),
    Column("accuracy", "accuracy", percent, justify="right"),
    Column("labelled", "labelled", justify="right"),
    Column("auto", "auto may pick it"),
]


def _check_row(result: Any) -> dict[str, Any]:
    from dogbreed.engines import guard

    row = result.to_dict()
    ok, why = guard.verdict(result, result.precision)
    row["auto"] = f"yes ({why})" if ok else f"no: {why}"
    return row


HeldOutDatasetOpt = typer.Option(
    None,
    "--dataset",
    help="Check (and calibrate) on this Stanford-layout dataset's splits instead of the run's own dataset "
    "(ready models: $DOGBREED_DATASET, else $DOGBREED_HOME/dataset; else stored images).",
)
ModelArg = typer.Argument(None, metavar="[RUN|CHECKPOINT]", help="A training run's id or a checkpoint file.")
CheckImagesOpt = typer.Option(
    500, "--limit", "-n", min=1, max=100_000, help="Held-out images to check on (at most; a seeded sample)."
)


@app.command(
    "export",
    epilog=examples(
        "dogbreed export 3 --format openvino --int8",
        "dogbreed export checkpoints/demo-run1.pt --format onnx --output demo.onnx",
        "dogbreed export --model resnet50 --output exports/",
    ),
)
def export_cmd(
    ctx: typer.Context,
    what: str | None = ModelArg,
    fmt: str = typer.Option("openvino", "--format", help="openvino (IR .xml + .bin) or onnx."),
    int8: bool = typer.Option(False, "--int8", help="Quantize to int8 with NNCF (calibrated on training images)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File or folder (default: $DOGBREED_HOME/exports)."
    ),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
    dataset: Path | None = HeldOutDatasetOpt,
    limit: int = CheckImagesOpt,
    calibration: int | None = typer.Option(
        None, "--calibration", min=16, max=10_000, help="With --int8: training images to calibrate on (default 300)."
    ),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the agreement check (auto then never picks it)."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a model to OpenVINO IR or ONNX (optionally int8) that predicts without torch or its checkpoint.

    The file carries its classes, preprocessing and dog output. Its top-1 agreement with the fp32 model on
    held-out images (--dataset's test split, the run's, or stored images) is measured and recorded: predict's auto
    runs an int8 export only when its accuracy drop is at most 1 point.
    """
    from dogbreed.export import CALIBRATION_IMAGES, ExportRequest, export

    fmt_out = output_format(as_json)
    if calibration is not None and not int8:
        raise DogbreedError("--calibration is for int8 exports: add --int8, or drop --calibration")
    conn = open_db(ctx)
    source = _source_from(conn, what, checkpoint, model, weights, run)
    calibration = calibration or CALIBRATION_IMAGES
    request = ExportRequest(source, fmt.strip().lower(), int8, output, dataset, calibration, limit, check=not no_check)
    chatty = fmt_out == "table" and not quiet
    with _progress("checking", not chatty) as bar:
        task = bar.add_task("check", total=None)

        def on_stage(text: str) -> None:
            if chatty:
                err.print(safe(text), soft_wrap=True)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        outcome = export(conn, request, on_stage, on_progress)
    data = _export_json(outcome)
    if fmt_out == "json":
        print_json(data)
        return
    pairs = [
        ("file", ", ".join(str(f) for f in outcome.files)),
        ("size", f"{outcome.size_bytes / 2**20:.1f} MB"),
        ("from", f"{outcome.meta.source_name} ({source.kind})"),
        ("precision", outcome.meta.precision),
        ("classes", f"{len(outcome.meta.classes)} breeds"),
        ("input", _input_text(outcome.meta.preprocessing)),
        ("dog output", "yes" if outcome.meta.has_dog else "no"),
    ]
    if outcome.meta.calibration:
        pairs.append(("calibrated on", outcome.meta.calibration))
    pairs.append(("checked on", outcome.check_data or f"not checked ({outcome.check_skipped})"))
    out.print(key_value_table(pairs, title=f"export ({outcome.seconds:.1f} s)"))
    if outcome.checks:
        emit([_check_row(c) for c in outcome.checks], CHECK_COLUMNS, "table", title="agreement with the fp32 model")
    command = f"dogbreed predict --pending --checkpoint {shlex.quote(str(outcome.path))}"
    out.print(f"predict with: {safe(command)}", soft_wrap=True)


def _input_text(prep: Any) -> str:
    mean = ", ".join(f"{v:.3f}" for v in prep.mean)
    std = ", ".join(f"{v:.3f}" for v in prep.std)
    return f"{prep.crop_size} px crop of a {prep.resize_size} px resize ({prep.interpolation}); mean {mean}, std {std}"


def _export_json(outcome: Any) -> dict[str, Any]:
    return {
        "path": str(outcome.path),
        "files": [str(f) for f in outcome.files],
        "key": outcome.key,
        "size_bytes": outcome.size_bytes,
        "seconds": round(outcome.seconds, 3),
        "precision": outcome.meta.precision,
        "classes": outcome.meta.wnids,
        "preprocessing": outcome.meta.preprocessing.to_dict(),
        "has_dog": outcome.meta.has_dog,
        "source_key": outcome.meta.source_key,
        "source_name": outcome.meta.source_name,
        "run_id": outcome.meta.run_id,
        "calibration": outcome.meta.calibration,
        "check_data": outcome.check_data,
        "check_skipped": outcome.check_skipped,
        "checks": [_check_row(c) for c in outcome.checks],
    }


RECORDED_COLUMNS = [
    Column("created_at", "measured", when),
    Column("target", "of"),
    *CHECK_COLUMNS[:-1],
    Column("data", "held-out images", fold=True),
    Column("auto", "auto may pick it", fold=True),
]


def recorded_check_rows(checks: Any) -> list[dict[str, Any]]:
    """Rows for the recorded checks of a model (and of its exports)."""
    rows = []
    for c in checks:
        row = _check_row(c)
        row["target"] = "the model" if c.target_key is None else f"export {c.target_key[:12]}"
        rows.append(row)
    return rows


def _list_checks(conn: Any, source: Any, fmt: str) -> None:
    from dogbreed.store.evaluations import checks_for

    rows = recorded_check_rows(checks_for(conn, source.key))
    if fmt == "json":
        print_json({"model": source.name, "model_key": source.key, "checks": rows})
        return
    emit(
        rows,
        RECORDED_COLUMNS,
        fmt,
        title=f"recorded checks of {clean(source.name)}",
        empty="none yet: measure them with 'dogbreed check' (same model options, without --list)",
    )


@app.command(
    "check",
    epilog=examples(
        "dogbreed check --run 3", "dogbreed check --model resnet50 -n 300", "dogbreed check model.pt --json"
    ),
)
def check_cmd(
    ctx: typer.Context,
    what: str | None = ModelArg,
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
    dataset: Path | None = HeldOutDatasetOpt,
    device: DeviceOpt = "cpu",
    limit: int = CheckImagesOpt,
    listing: bool = typer.Option(False, "--list", help="Only list the checks recorded for this model and its exports."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Measure how often the faster engines and precisions agree with the fp32 model, and record it.

    Runs the held-out images (--dataset's test split, the run's, or stored images) through the fp32 torch model
    and through every faster option this machine has (OpenVINO f32/bf16, torch bf16 where the CPU has native bf16;
    fp16/bf16 on a CUDA GPU). predict's auto then picks the fastest one with at least 99% agreement.
    """
    from dogbreed import checks as check
    from dogbreed.engines import resolve_device

    fmt_out = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    source = _source_from(conn, what, checkpoint, model, weights, run)
    if listing:
        _list_checks(conn, source, fmt_out)
        return
    dev, warning = resolve_device(device, "auto")
    if warning:
        warn(warning)
    images, _ = check.export_images(conn, source, dataset, limit)
    if images is None or not len(images):
        raise DogbreedError(check.NO_IMAGES_HINT)
    chatty = fmt_out == "table" and not quiet
    if chatty:
        err.print(safe(f"checking {source.name} on {images.description}"), soft_wrap=True)
    with _progress("checking", not chatty) as bar:
        task = bar.add_task("check", total=len(images))
        results = check.check_model(
            conn, source, images, dev, lambda done, total: bar.update(task, completed=done, total=total)
        )
    rows = [_check_row(r) for r in results]
    if fmt_out == "json":
        print_json({"model": source.name, "model_key": source.key, "data": images.description, "checks": rows})
        return
    emit(rows, CHECK_COLUMNS, fmt_out, title=f"{clean(source.name)}: agreement with fp32 on {images.description}")
