"""breeds and label: the breeds a store knows (Stanford's 120 and your own) and the ground truth of its photos."""

from __future__ import annotations

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    Column,
    CsvOpt,
    JsonOpt,
    NlOpt,
    QuietOpt,
    emit,
    examples,
    open_db,
    out,
    output_format,
    print_json,
    safe,
)
from dogbreed.cli.images import MAX_ID
from dogbreed.errors import DogbreedError

BREED_COLUMNS = [
    Column("index", "#", justify="right", missing=""),
    Column("wnid", "key"),
    Column("folder", "folder"),
    Column("name", "name"),
    Column("imagenet_index", "ImageNet class", justify="right", missing=""),
    Column("own", "own", lambda own: "yours" if own else ""),
    Column("note", "note", fold=True),
]


def _rows(breeds: list) -> list[dict]:
    from dogbreed.imagenet import index_of

    return [
        {
            "index": None if b.own else b.index,
            "wnid": b.wnid,
            "folder": b.folder or None,
            "name": b.name,
            "imagenet_index": None if b.own else index_of()[b.wnid],
            "own": b.own,
            "note": b.note or None,
        }
        for b in breeds
    ]


@app.command(
    "breeds",
    epilog=examples(
        "dogbreed breeds",
        "dogbreed breeds terrier",
        'dogbreed breeds add "Australian shepherd" --note "Rex and Luna"',
        'dogbreed breeds remove "Australian shepherd"',
        "dogbreed breeds --csv",
    ),
)
def breeds_cmd(
    ctx: typer.Context,
    words: list[str] = typer.Argument(
        None, metavar="[TEXT | add NAME | remove NAME]", help="Filter by TEXT, or add/remove a breed of your own."
    ),
    note: str | None = typer.Option(None, "--note", help="With add: a note kept with the breed."),
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    as_nl: NlOpt = False,
) -> None:
    """List the breeds: Stanford's 120 and your own (marked); add or remove one of your own.

    A breed of your own gets a stable key (own:...) that never collides with a WordNet id; its name is matched
    like any breed's (case and separators ignored). A breed is removed only while no image and no run uses it.
    """
    from dogbreed import labels

    fmt = output_format(as_json, as_csv, as_nl)
    words = list(words or [])
    action = words[0].lower() if words and words[0].lower() in ("add", "remove") else None
    if note is not None and action != "add":
        raise DogbreedError("--note goes with 'breeds add NAME'")
    conn = open_db(ctx)
    if action is not None:
        name = " ".join(words[1:])
        if not name.strip():
            raise DogbreedError(f"say which breed: dogbreed breeds {action} NAME")
        breed = labels.add_breed(conn, name, note) if action == "add" else labels.remove_breed(conn, name)
        if fmt == "json":
            print_json({"action": action, **_rows([breed])[0]})
        elif fmt == "table":
            verb = "added" if action == "add" else "removed"
            out.print(f"{verb} breed {safe(breed.name)} (key {safe(breed.wnid)})", soft_wrap=True)
        else:
            emit([{"action": action, **_rows([breed])[0]}], [Column("action", "action"), *BREED_COLUMNS], fmt)
        return
    vocabulary = labels.vocabulary(conn)
    search = " ".join(words) if words else None
    found = vocabulary.matching(search) if search else list(vocabulary.breeds)
    rows = _rows(found)
    close = vocabulary.suggestions(search) if search and not rows else []
    empty = f"no breed matches {search!r}" + (f"; did you mean: {', '.join(close)}?" if close else "")
    own = sum(b.own for b in found)
    title = f"{len(rows)} breed{'s' if len(rows) != 1 else ''}" + (f" ({own} of your own)" if own else "")
    emit(rows, BREED_COLUMNS, fmt, title=title, empty=empty)


@app.command(
    "label",
    epilog=examples(
        "dogbreed label 3 beagle",
        'dogbreed label 3 4 5 "Australian shepherd"',
        "dogbreed label 7 --clear",
    ),
)
def label_cmd(
    ctx: typer.Context,
    args: list[str] = typer.Argument(..., metavar="ID... BREED", help="Image ids, then the breed (none with --clear)."),
    clear: bool = typer.Option(False, "--clear", help="Remove the ground truth of these images."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set or correct the ground truth of stored images (or --clear it); every change is recorded.

    All the ids must exist: a call naming an unknown id changes no label at all.
    """
    from dogbreed import labels

    id_args, breed = (args, None) if clear else (args[:-1], args[-1])
    if not id_args:
        raise DogbreedError("name the images: dogbreed label ID... BREED (or ID... --clear)")
    ids = []
    for text in id_args:
        if not text.isdigit() or int(text) > MAX_ID:
            hint = " (--clear takes no breed)" if clear else ""
            raise DogbreedError(f"{text[:40]!r} is not an image id{hint}; dogbreed label ID... BREED")
        ids.append(int(text))
    done = labels.label(open_db(ctx), ids, breed)
    name = done.breed.name if done.breed else None
    if as_json:
        key = done.breed.wnid if done.breed else None
        print_json({"breed": name, "key": key, "changed": done.changed, "unchanged": done.unchanged})
        return
    what = f"labelled {safe(name)}" if done.breed else "label cleared"
    if not quiet:
        for image_id in done.changed:
            out.print(f"image {image_id}: {what}", soft_wrap=True)
    out.print(f"{len(done.changed)} changed, {len(done.unchanged)} already so", soft_wrap=True)
