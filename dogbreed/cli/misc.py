"""paths: where things live."""

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
