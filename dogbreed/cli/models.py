"""models: the ready ImageNet models, and which model predict uses when none is named."""

from __future__ import annotations

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    Column,
    CsvOpt,
    JsonOpt,
    NlOpt,
    WeightsOpt,
    emit,
    examples,
    open_db,
    out,
    output_format,
    print_json,
    safe,
)

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
        "dogbreed models --default run:3   (or a checkpoint path; 'auto' unpins)",
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
    from pathlib import Path

    from dogbreed import sources, zoo

    fmt = output_format(as_json, as_csv, as_nl)
    conn = open_db(ctx)
    if default is not None:
        if default == "auto":
            sources.pin(conn, None)
        elif default.startswith("run:") and default[4:].isdigit():
            sources.pin(conn, sources.from_run(conn, int(default[4:])))
        elif Path(default).suffix or "/" in default:
            sources.pin(conn, sources.from_checkpoint(default))
        else:
            sources.pin(conn, sources.from_ready(default, weights_file=weights))
    current = sources.resolve(conn)
    rows = []
    for m in zoo.ready_models():
        row = m.to_dict()
        row["default"] = current.kind == "ready" and current.arch == m.name and not current.weights_file
        rows.append(row)
    chosen = {"model": current.name, "kind": current.kind, "ref": current.ref, "reason": current.reason}
    if fmt == "json":
        print_json({"default": chosen, "ready_models": rows})
        return
    emit(rows, MODEL_COLUMNS, fmt, title="ready models (ImageNet-1k classifiers; every Stanford breed is a class)")
    if fmt == "table":
        out.print(f"predict uses: {safe(current.name)} ({safe(current.reason)})", soft_wrap=True)
        out.print(safe(zoo.IMAGENET_CAVEAT), soft_wrap=True)
