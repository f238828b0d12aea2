"""paths and breeds: where things live, and the 120 breeds."""

from __future__ import annotations

import typer

from dogbreed.cli import app
from dogbreed.cli.common import Column, CsvOpt, JsonOpt, NlOpt, db_path, emit, examples, output_format


@app.command("paths", epilog=examples("dogbreed paths", "dogbreed paths --json"))
def paths_cmd(ctx: typer.Context, as_json: JsonOpt = False, as_csv: CsvOpt = False, as_nl: NlOpt = False) -> None:
    """Print where dogbreed keeps its store, checkpoints, dataset, logs and caches."""
    from dogbreed.cli.common import print_json
    from dogbreed.config import resolve_paths

    fmt = output_format(as_json, as_csv, as_nl)
    resolved = resolve_paths(db=db_path(ctx)).as_dict()
    if fmt == "json":
        print_json(resolved)
        return
    emit([{"what": k, "path": v} for k, v in resolved.items()], [Column("what", "what"), Column("path", "path")], fmt)


app.command("info", help="Same as 'paths'.", hidden=True)(paths_cmd)


BREED_COLUMNS = [
    Column("index", "#", justify="right"),
    Column("wnid", "WordNet id"),
    Column("folder", "folder"),
    Column("name", "name"),
    Column("imagenet_index", "ImageNet class", justify="right"),
]


@app.command("breeds", epilog=examples("dogbreed breeds", "dogbreed breeds terrier", "dogbreed breeds --csv"))
def breeds_cmd(
    search: str | None = typer.Argument(None, metavar="[TEXT]", help="Only breeds whose name contains this text."),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """List the 120 Stanford Dogs breeds (WordNet id, folder name, display name, ImageNet class index)."""
    from dogbreed.breeds import BREEDS, matching_breeds, suggestions
    from dogbreed.imagenet import index_of

    fmt = output_format(as_json, as_csv, as_nl)
    rows = [
        {"index": b.index, "wnid": b.wnid, "folder": b.folder, "name": b.name, "imagenet_index": index_of()[b.wnid]}
        for b in (matching_breeds(search) if search else BREEDS)
    ]
    close = suggestions(search) if search and not rows else []
    empty = f"no breed matches {search!r}" + (f"; did you mean: {', '.join(close)}?" if close else "")
    emit(rows, BREED_COLUMNS, fmt, title=f"{len(rows)} breed{'s' if len(rows) != 1 else ''}", empty=empty)
