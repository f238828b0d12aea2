"""What every command shares: the consoles, the output formats (table, JSON, CSV, newline-delimited JSON), the
options declared once, cleaning untrusted text for the terminal, and deprecation notes for renamed options.

Nothing heavy is imported here: `dogbreed --help`, `list` and `show` must start fast.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dogbreed.errors import DogbreedError

# When stdout is not a terminal (a pipe, a file), nothing is ever truncated or wrapped: full file names, paths and
# hashes, so `dogbreed list | grep NAME` finds NAME whatever COLUMNS says.
out = Console(highlight=False)
if not out.is_terminal:
    out = Console(highlight=False, width=100_000, soft_wrap=True)
err = Console(stderr=True, highlight=False)


# ---------------------------------------------------------------- untrusted text

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: Any) -> str:
    """Text from a file name, a store row or a checkpoint, safe to print: control characters (ESC sequences that
    could clear or retitle the terminal, bidi overrides) shown as visible escapes, invalid UTF-8 replaced, and
    characters the output cannot encode (an ASCII terminal: PYTHONIOENCODING=ascii, a C locale) escaped."""
    text = "" if value is None else str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else "?", text)
    encoding = _output_encoding()
    return text if encoding is None else text.encode(encoding, "backslashreplace").decode(encoding)


def _output_encoding() -> str | None:
    """stdout's encoding when it is not a UTF one (None: every character can be written)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return None if encoding.lower().replace("-", "").startswith("utf") else encoding


def escape_unencodable_output() -> None:
    """Whatever reaches stdout or stderr unencodable is escaped (``\\xe9``), never an exception: the work is done
    by the time it is reported, so a terminal that cannot show a name must not turn a stored upload into a failure
    (``clean`` escapes names already; this covers the rest)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream we can reconfigure: leave it
            pass


def safe(value: Any) -> str:
    """``clean`` plus Rich markup escaped: for text placed inside a markup string."""
    return escape(clean(value))


def cell(value: Any) -> Text:
    """A table cell that Rich never interprets as markup."""
    return Text(clean(value))


def when(timestamp: str | None) -> str:
    """'2026-11-27 10:58:59' from a stored ISO timestamp."""
    return (timestamp or "")[:19].replace("T", " ")


# What the two kinds of figure mean (see store.predictions): printed under every table that shows both.
NUMBERS_LEGEND = "breed %: among the model's breeds; dog at all: that it shows a dog"


def percent(p: float | None, digits: int = 1) -> str:
    return "" if p is None else f"{p:.{digits}%}"


def warn(text: str) -> None:
    err.print(f"[yellow]Warning:[/yellow] {safe(text)}", soft_wrap=True)


def show_dogbreed_warnings() -> None:
    """dogbreed's own warnings (``errors.DogbreedWarning``: a damaged cache rebuilt, say) print as one 'Warning:'
    line, like the CLI's other warnings; any other warning is shown as Python shows it."""
    import warnings

    from dogbreed.errors import DogbreedWarning

    shown = warnings.showwarning
    if getattr(shown, "dogbreed", False):
        return

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, DogbreedWarning):
            warn(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    show.dogbreed = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def note(text: str) -> None:
    err.print(safe(text), soft_wrap=True)


# ---------------------------------------------------------------- shared options (declared once)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV.")]
NlOpt = Annotated[bool, typer.Option("--nl", help="Print newline-delimited JSON (one object per line).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary (and errors); no per-item lines.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="auto, cpu, cuda (or gpu, cuda:N), mps.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=4096, help="Images per batch.")]
DatasetOpt = Annotated[
    Path | None,
    typer.Option("--dataset", help="Dataset folder (default: $DOGBREED_DATASET, else $DOGBREED_HOME/dataset)."),
]
CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", "-c", help="A dogbreed checkpoint or an exported model (.onnx, .xml)."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="A ready ImageNet model by torchvision name (see 'dogbreed models')."),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights", help="With --model ARCH (models: --default ARCH): its ImageNet state dict from disk (offline)."
    ),
]
RunOpt = Annotated[int | None, typer.Option("--run", min=1, help="The checkpoint of this training run.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="auto, torch or openvino.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="auto, fp32, bf16, fp16 (CUDA) or int8 (exports).")]


def top_k_opt(default: int) -> Any:
    return typer.Option(default, "--top-k", "-k", min=1, max=120, help="Breeds to show per prediction.")


def deprecated(old: str, new: str) -> None:
    err.print(f"[yellow]Deprecated:[/yellow] {old} is now {new}; {old} still works in this release", soft_wrap=True)


def pick(new: Any, old: Any, old_name: str, new_name: str, default: Any = None) -> Any:
    """The value of a renamed option: the new spelling wins; the old one still works, with a deprecation note."""
    if old is not None and old is not False:
        deprecated(old_name, new_name)
        if new is None or new == default:
            return old
    return new


# ---------------------------------------------------------------- output formats


def output_format(as_json: bool = False, as_csv: bool = False, as_nl: bool = False) -> str:
    chosen = [name for name, on in (("json", as_json), ("csv", as_csv), ("nl", as_nl)) if on]
    if len(chosen) > 1:
        raise DogbreedError(f"choose one output format: {' or '.join('--' + c for c in chosen)}")
    return chosen[0] if chosen else "table"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    render: Callable[[Any], str] = clean  # the table's text for a value; CSV and JSON get the raw value
    justify: str = "left"
    fold: bool = False  # long values wrap in a narrow terminal instead of being cut
    missing: str = ""  # what the table shows for None
    drop: int = 0  # 0: never left out; else left out of a table too wide for the terminal, highest first
    show: Callable[[dict[str, Any]], Any] | None = None  # the table's value from the whole row (default: row[key])
    table: bool = True  # False: a CSV column the table leaves out (the table shows it another way)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    title: str | None = None,
    empty: str | None = None,
    json_rows: Iterable[dict[str, Any]] | None = None,
    caption: str | None = None,
) -> None:
    """Print a listing as a Rich table, JSON (a list), CSV (the columns' keys as the header) or newline-delimited
    JSON. ``json_rows`` (default: ``rows``) is what JSON and NL print, when they carry more than the table."""
    if fmt == "json":
        print_json(list(json_rows if json_rows is not None else rows))
        return
    if fmt == "nl":
        for row in json_rows if json_rows is not None else rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow([_csv_value(row.get(c.key)) for c in columns])
        return
    if not rows and empty:  # an empty table's frame says nothing the message does not
        if title:
            out.print(safe(title))
        out.print(safe(empty))
        return
    out.print(fitted_table(rows, [c for c in columns if c.table], title, out.width, caption))


def _cell_text(column: Column, row: dict[str, Any]) -> str:
    value = column.show(row) if column.show is not None else row.get(column.key)
    return clean(column.render(value)) if value is not None else column.missing


FOLD_MIN = 10  # a folding column (paths, names) keeps at least this many characters a line


def fitted_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str | None, width: int, caption: str | None = None
) -> Table:
    """The listing as a Rich table that fits ``width`` without cutting a value short: as it is when it fits;
    else a compact frame, headers wrapped at their spaces, long values (paths, names) folded, and, only if still
    needed, the columns marked droppable left out (named in the caption). Important columns are never cut."""
    cells = [[_cell_text(c, row) for c in columns] for row in rows]
    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if sum(natural) + 3 * len(columns) + 1 <= width:  # Rich's own frame: 3 characters a column, and one
        table = Table(title=title, caption=caption)
        for c in columns:
            table.add_column(c.header, justify=c.justify, overflow="fold" if c.fold else "ellipsis")
        for r in cells:
            table.add_row(*(Text(text) for text in r))
        return table
    need = [_least_width(c, natural[i], cells, i) for i, c in enumerate(columns)]
    keep = list(range(len(columns)))
    while sum(need[i] for i in keep) + 2 * len(keep) - 1 > width:  # 2 between columns, 1 after the last
        droppable = [i for i in keep if columns[i].drop]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    left_out = [columns[i].header for i in range(len(columns)) if i not in keep]
    hidden = f"hidden at {width} columns: {', '.join(left_out)}; --csv shows every column" if left_out else None
    table = Table(
        title=title,
        caption="\n".join(text for text in (caption, hidden) if text) or None,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # with the frame's blank separator: two characters between columns
    )
    for i in keep:
        c = columns[i]
        table.add_column(
            _wrapped(c.header, need[i]),
            justify=c.justify,
            min_width=need[i],
            no_wrap=not c.fold,
            overflow="fold" if c.fold else "ellipsis",
        )
    for r in cells:
        table.add_row(*(Text(r[i]) for i in keep))
    return table


def _least_width(column: Column, natural: int, cells: list[list[str]], i: int) -> int:
    """The narrowest a column may be: its longest value (a folding column: FOLD_MIN), and its longest header
    word (headers wrap at spaces)."""
    word = max(cell_len(w) for w in column.header.split() or [""])
    if column.fold:
        return max(word, min(natural, FOLD_MIN))
    return max([word, *(cell_len(r[i]) for r in cells)])


def _wrapped(header: str, width: int) -> str:
    """``header`` broken into lines of at most ``width`` characters at its spaces."""
    lines: list[str] = []
    for word in header.split():
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def flat_fields(top_k: int) -> list[str]:
    """CSV columns for a ranking: top1, p1, top2, p2, ... (breed names, and their probabilities among breeds)."""
    return [name for rank in range(1, top_k + 1) for name in (f"top{rank}", f"p{rank}")]


def flat_top(item: dict[str, Any], top_k: int) -> dict[str, Any]:
    """A row with a ``top`` list (``BreedScore.to_dict``s) with top1, p1, top2, p2, ... in its place."""
    row = {k: v for k, v in item.items() if k != "top"}
    top = item.get("top") or []
    for rank in range(1, top_k + 1):
        score = top[rank - 1] if rank <= len(top) else None
        row[f"top{rank}"] = score["breed"] if score else None
        row[f"p{rank}"] = score["probability"] if score else None
    return row


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    text = clean(value)
    if isinstance(value, str) and text.startswith(("=", "+", "-", "@")):
        return "'" + text  # a file name like '=HYPERLINK(...)' must not become a formula in a spreadsheet
    return text


def key_value_table(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    table = Table(show_header=False, title=title)
    table.add_column("", no_wrap=True)
    table.add_column("", overflow="fold")
    for key, value in pairs:
        table.add_row(key, cell(value))
    return table


def db_path(ctx: typer.Context) -> Path:
    return ctx.obj["db"]


def open_db(ctx: typer.Context):
    from dogbreed.store import open_store

    return open_store(db_path(ctx))


def examples(*lines: str) -> str:
    """A help epilog: real examples, one per line."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


# ---------------------------------------------------------------- shared renderings

def given_options(ctx: typer.Context) -> dict[str, str]:
    """{parameter name: its option as typed} for the options given on the command line or by the environment."""
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            given[param.name] = param.opts[0] if param.opts else param.name
    return given


EPOCH_COLUMNS = (  # (key, header, format, width): fixed widths, so rows printed one by one line up
    ("epoch", "epoch", "{}", 5),
    ("train_loss", "loss", "{:.4f}", 7),
    ("train_acc", "acc", "{:.1%}", 6),
    ("val_loss", "val loss", "{:.4f}", 8),
    ("val_acc", "val acc", "{:.1%}", 7),
    ("val_top5", "val top5", "{:.1%}", 8),
    ("val_f1", "val F1", "{:.3f}", 6),
    ("seconds", "s", "{:.1f}", 7),
)


def epoch_table(rows: list[dict[str, Any]], header: bool = True, title: str | None = None) -> Table:
    """Epochs, one row each; 70 characters wide with the 'kept' mark, so it fits an 80-column terminal."""
    table = Table(show_header=header, title=title, box=None, padding=(0, 1), collapse_padding=True, pad_edge=False)
    for _key, label, _fmt, width in EPOCH_COLUMNS:
        table.add_column(label, justify="right", width=width, no_wrap=True, overflow="fold")
    table.add_column("", width=4, no_wrap=True)
    for row in rows:
        cells = ["" if row.get(key) is None else fmt.format(row[key]) for key, _label, fmt, _w in EPOCH_COLUMNS]
        table.add_row(*cells, "kept" if row.get("best") else "")
    return table
