"""upload, list, show, delete: the photos in the store."""

from __future__ import annotations

from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    NUMBERS_LEGEND,
    CheckpointOpt,
    Column,
    CsvOpt,
    JsonOpt,
    ModelOpt,
    NlOpt,
    QuietOpt,
    RunOpt,
    WeightsOpt,
    cell,
    db_path,
    emit,
    examples,
    flat_fields,
    flat_top,
    key_value_table,
    open_db,
    out,
    output_format,
    percent,
    pick,
    print_json,
    safe,
    top_k_opt,
    when,
)
from dogbreed.errors import DogbreedError
from dogbreed.imagenet import DOG_THRESHOLD
from dogbreed.records import image_record, listing_row, prediction_record

MAX_ID = 2**63 - 1  # SQLite's largest integer: bigger ids cannot exist
UNCERTAIN_BELOW = 0.5  # list --uncertain: a top-1 probability below this is worth a look


def dog_mark(p: float | None) -> str:
    """How a dog probability reads: '99.8%', 'NOT A DOG? 0.4%', or '?' when the model cannot tell."""
    if p is None:
        return "?"
    return percent(p) if p >= DOG_THRESHOLD else f"NOT A DOG? {percent(p)}"


# ---------------------------------------------------------------- upload


def print_upload_line(r: Any, console: Any = out) -> None:
    if r.status == "refused":
        console.print(f"[red]refused[/red]   {safe(r.path)}: {safe(r.reason)}", soft_wrap=True)
        return
    extra = (f": {safe(r.reason)}" if r.status == "duplicate" else f" ({safe(r.reason)})") if r.reason else ""
    color = "green" if r.status == "new" else "yellow"
    out.print(f"[{color}]{r.status:<9}[/{color}] id {r.image_id:<5} {safe(r.path)}{extra}", soft_wrap=True)


def _upload_stopped(results: list[Any]) -> None:
    """One line saying what an interrupted upload stored and what stores the rest; the signal's exit code."""
    from dogbreed.cli.common import err
    from dogbreed.procs import stop_exit_code, stop_signal_name

    how = stop_signal_name("")
    stored = sum(r.status in ("new", "duplicate") for r in results)
    err.print(
        f"interrupted{f' ({how})' if how else ''}: {stored} file(s) are stored; the rest are not: run the same "
        "upload again to store them (files already stored are recognised as duplicates)",
        soft_wrap=True,
        markup=False,
    )
    raise typer.Exit(stop_exit_code())


UPLOAD_COLUMNS = [
    Column("status", "status"),
    Column("id", "id", justify="right"),
    Column("path", "path", fold=True),
    Column("filename", "stored as", fold=True),
    Column("ground_truth_name", "ground truth"),
    Column("reason", "reason", fold=True),
]


@app.command(
    "upload",
    epilog=examples(
        "dogbreed upload dog.jpg",
        "dogbreed upload photos/ --ground-truth beagle",
        "dogbreed upload 'Images/*/*.jpg' --label-from-folder --quiet",
    ),
)
def upload_cmd(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(..., metavar="PATH...", help="Image files, folders (recursive) or globs."),
    ground_truth: str | None = typer.Option(
        None, "--ground-truth", "-g", help="Breed of every uploaded image (name, folder name or WordNet id)."
    ),
    filename: str | None = typer.Option(None, "--filename", help="Name to store (a single file only)."),
    label_from_folder: bool = typer.Option(
        False, "--label-from-folder", help="Take each image's breed from its Stanford folder name."
    ),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """Store photos with their bytes; duplicates are reported, broken files refused with the reason."""
    from rich.progress import Progress

    from dogbreed import labels
    from dogbreed.cli.common import err
    from dogbreed.ingest import expand_paths, upload

    fmt = output_format(as_json, as_csv, as_nl)
    if ground_truth and label_from_folder:
        raise DogbreedError("use either --ground-truth or --label-from-folder, not both")
    breed = labels.resolve_at(db_path(ctx), ground_truth) if ground_truth else None
    files, results = expand_paths(paths)
    if filename and len(files) != 1:
        raise DogbreedError(f"--filename needs exactly one file, got {len(files)}")
    conn = open_db(ctx)

    def report(result: Any) -> None:  # --quiet keeps the refusals: the lines a user has to act on
        if fmt == "table" and (not quiet or result.status == "refused"):
            print_upload_line(result)

    for result in results:  # arguments that named nothing
        report(result)
    with Progress(
        console=err, transient=True, disable=fmt != "table" or len(files) < 20 or not err.is_terminal
    ) as progress:
        task = progress.add_task("uploading", total=len(files))
        stored = upload(conn, files, ground_truth=breed, label_from_folder=label_from_folder, filename=filename)
        try:
            for result in stored:
                results.append(result)
                progress.advance(task)
                report(result)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP between two batches (each is stored whole or not)
            _upload_stopped(results)
    counts = {s: sum(r.status == s for r in results) for s in ("new", "duplicate", "refused")}
    if fmt == "json":
        print_json({"results": [r.to_dict() for r in results], "summary": counts})
    elif fmt == "table":
        out.print(f"{counts['new']} new, {counts['duplicate']} duplicate, {counts['refused']} refused")
    else:
        emit([r.to_dict() for r in results], UPLOAD_COLUMNS, fmt)
    if counts["refused"]:
        raise typer.Exit(1)


# ---------------------------------------------------------------- list

LIST_COLUMNS = [
    Column("id", "id", justify="right"),
    Column("filename", "filename", fold=True),
    Column("ground_truth_name", "ground truth"),
    Column("top1_name", "breed"),
    Column("top1_prob", "among breeds", percent, justify="right"),
    Column("dog_probability", "dog at all", dog_mark, justify="right"),
    Column("model_name", "model", fold=True, drop=1),
    Column("created_at", "uploaded", when, drop=2),
]


@app.command(
    "list",
    epilog=examples(
        "dogbreed list", "dogbreed list --breed beagle --limit 20", "dogbreed list --after 90000 --csv > page.csv"
    ),
)
def list_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000, help="Rows per page."),
    offset: int = typer.Option(0, "--offset", min=0, max=MAX_ID, help="Skip this many rows."),
    after: int | None = typer.Option(
        None, "--after", min=0, max=MAX_ID, help="Only ids greater than this (fast deep paging)."
    ),
    breed: str | None = typer.Option(None, "--breed", help="Only images with this ground truth."),
    unlabelled: bool = typer.Option(False, "--unlabelled", help="Only images without a ground truth."),
    wrong: bool = typer.Option(False, "--wrong", help="Only labelled images whose top-1 is not their label."),
    uncertain: bool = typer.Option(
        False, "--uncertain", help="Only images whose top-1 probability is below --min-probability, lowest first."
    ),
    min_probability: float = typer.Option(
        UNCERTAIN_BELOW, "--min-probability", min=0.0, max=1.0, help="With --uncertain: the threshold."
    ),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """List stored images (never their bytes) with their latest top-1 prediction and dog probability.

    --unlabelled, --wrong and --uncertain find what to label next. --wrong and --uncertain look at each image's
    newest prediction, or the newest of the model named by --model/--checkpoint/--run.
    """
    from dogbreed import labels
    from dogbreed.store import images

    fmt = output_format(as_json, as_csv, as_nl)
    if unlabelled and (wrong or breed):
        raise DogbreedError("--unlabelled lists images without a label: drop --wrong/--breed")
    if min_probability != UNCERTAIN_BELOW and not uncertain:
        raise DogbreedError("--min-probability goes with --uncertain")
    conn = open_db(ctx)
    vocabulary = labels.vocabulary(conn)
    named = (checkpoint, model, run) != (None, None, None)
    only = images.ImageFilter(
        breed=vocabulary.resolve(breed).wnid if breed else None,
        after_id=after,
        unlabelled=unlabelled,
        wrong=wrong,
        below=min_probability if uncertain else None,
        model_key=resolve_model_key(conn, checkpoint, model, weights, run) if named else None,
    )
    rows = [listing_row(item, vocabulary) for item in images.list_images(conn, limit=limit, offset=offset, only=only)]
    filtered = only.breed or unlabelled or only.by_prediction
    first_page = offset == 0 and after is None and not filtered
    empty = "no images yet: add some with 'dogbreed upload PATH'" if first_page else "no (more) images"
    legend = NUMBERS_LEGEND if any(r["top1"] for r in rows) else None
    emit(rows, LIST_COLUMNS, fmt, title="images", empty=empty, caption=legend)


def resolve_model_key(conn: Any, checkpoint: Any, model: Any, weights: Any, run: Any) -> str:
    from dogbreed.models import sources

    return sources.resolve(conn, checkpoint=checkpoint, model=model, weights=weights, run=run).key


# ---------------------------------------------------------------- show


@app.command("show", epilog=examples("dogbreed show 3", "dogbreed show 3 --top-k 10", "dogbreed show 3 --json"))
def show_cmd(
    ctx: typer.Context,
    image_id: int = typer.Argument(..., metavar="ID", min=0, max=MAX_ID, help="Image id."),
    top_k: int = top_k_opt(5),
    all_breeds: bool = typer.Option(False, "--all-breeds", help="Every breed the model knows."),
    all_old: bool = typer.Option(False, "--all", hidden=True, help="Old name of --all-breeds."),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
) -> None:
    """Show one image's metadata and its predictions, newest first (never the bytes).

    --csv gives one row per prediction (the image's fields repeated; top1, p1, top2, p2, ... flat), or one row
    with the image alone when it has none.
    """
    from dogbreed import labels
    from dogbreed.store import images, predictions

    output_format(as_json, as_csv)
    all_breeds = pick(all_breeds, all_old or None, "show --all", "--all-breeds", default=False)
    conn = open_db(ctx)
    image = images.get_image(conn, image_id)
    if image is None:
        raise DogbreedError(f"no image with id {image_id}; see 'dogbreed list'")
    k = 1000 if all_breeds else top_k
    preds = predictions.for_image(conn, image_id)
    vocabulary = labels.vocabulary(conn)
    label = vocabulary.name(image.ground_truth)
    if as_json:
        print_json(image_record(image, preds, k, vocabulary))
        return
    if as_csv:
        emit_show_csv(image, label, preds, min(k, 120))
        return
    fields = [(key, getattr(image, key)) for key in ("filename", "format", "width", "height", "size_bytes")]
    fields += [("sha256", image.sha256), ("uploaded", when(image.created_at))]
    fields.append(("ground truth", label or "-"))
    out.print(key_value_table(fields, title=f"image {image_id}"))
    if not preds:
        out.print(f"no predictions yet: run 'dogbreed predict --id {image_id}'")
    for pred in preds:
        print_prediction(pred, k)


SHOW_CSV_IMAGE = {  # show --csv column -> image record field
    "image_id": "id",
    "filename": "filename",
    "format": "format",
    "width": "width",
    "height": "height",
    "size_bytes": "size_bytes",
    "sha256": "sha256",
    "uploaded": "created_at",
    "ground_truth": "ground_truth",
}
SHOW_CSV_PREDICTION = ("model", "model_key", "device", "engine", "precision", "created_at")


def emit_show_csv(image: Any, label: str, preds: list[Any], k: int) -> None:
    """``show --csv``: a row per prediction, the image's fields first, the top-k flat, then the dog figure."""
    base = {column: getattr(image, field) for column, field in SHOW_CSV_IMAGE.items()}
    base["ground_truth_name"] = label or None
    rows = [{**base, **flat_top(prediction_record(pred, k), k)} for pred in preds]
    keys = [*base, *SHOW_CSV_PREDICTION, *flat_fields(k), "dog_probability", "not_a_dog"]
    emit(rows or [base], [Column(key, key) for key in keys], "csv")


def print_prediction(pred: Any, k: int) -> None:
    from rich.table import Table

    how = " ".join(x for x in (pred.engine, pred.precision) if x)
    title = f"{safe(pred.model)} on {safe(pred.device)}{' ' + how if how else ''}, {when(pred.created_at)}"
    table = Table("rank", "breed", "among breeds", title=title)
    for rank, score in enumerate(pred.top(k), 1):
        table.add_row(str(rank), cell(score.breed), f"{score.probability:.2%}")
    out.print(table)
    out.print(dog_line(pred.dog_probability), soft_wrap=True)


def dog_line(p: float | None) -> str:
    """What ``show`` says under the breed table: the dog figure, and how it relates to the breed figures."""
    if p is None:
        return "dog at all: unknown (this model cannot tell whether a photo shows a dog); breed % are among its breeds"
    among = "the breed % above are among the breeds the model knows"
    if p < DOG_THRESHOLD:
        return f"[bold red]probably NOT a dog[/bold red]: dog at all {p:.1%}; {among}, if it shows one"
    return f"dog at all: {p:.1%}; {among}"


# ---------------------------------------------------------------- delete


@app.command("delete", epilog=examples("dogbreed delete 3", "dogbreed delete 3 4 5 --json"))
def delete_cmd(
    ctx: typer.Context,
    image_ids: list[int] = typer.Argument(..., metavar="ID...", min=0, max=MAX_ID, help="Image ids to delete."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete images with their bytes, predictions and jobs."""
    from dogbreed.store import images

    conn = open_db(ctx)
    deleted = images.delete_images(conn, image_ids)
    missing = [i for i in image_ids if i not in deleted]
    if as_json:
        print_json({"deleted": deleted, "missing": missing})
    elif quiet:
        out.print(f"{len(deleted)} deleted")
    else:
        for image_id in deleted:
            out.print(f"deleted image {image_id}")
    if missing:
        raise DogbreedError(f"no image with id {', '.join(map(str, missing))}; nothing else was changed")
