"""The command line: parse options, call the modules that do the work, render tables, JSON, CSV or NL.

One module per command area (images, predict, train, dataset, models, misc); shared options and rendering in
``common``. Heavy libraries (torch, torchvision, matplotlib, openvino) are imported inside the commands that need
them, so `dogbreed --help`, `list` and `show` start fast.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from dogbreed import __version__
from dogbreed.cli.common import err, escape_unencodable_output, out, safe, show_dogbreed_warnings
from dogbreed.config import ENV_DB, resolve_paths
from dogbreed.errors import DogbreedError

try:  # typer vendors click from 0.17 on
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer with click installed beside it
    from click.exceptions import UsageError


class Group(TyperGroup):
    """Turns a user's mistake (DogbreedError) or a broken store into one line on stderr and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a bad option value: one line too, with where to look
            where = exc.ctx.command_path if exc.ctx is not None else "dogbreed"
            hint = f"see '{where} --help'"
            if getattr(exc, "option_name", None) == "--db":
                hint = f"--db goes before the command: dogbreed --db PATH {where.split(' ', 1)[-1]} ..."
            err.print(f"[red]Error:[/red] {safe(exc.format_message())} ({safe(hint)})", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except DogbreedError as exc:
            err.print(f"[red]Error:[/red] {safe(exc)}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except sqlite3.DatabaseError as exc:
            db = (ctx.obj or {}).get("db", "")
            err.print(f"[red]Error:[/red] store {safe(db)}: {safe(exc)}", soft_wrap=True)
            raise typer.Exit(1) from None
        except UnicodeEncodeError as exc:
            err.print(f"[red]Error:[/red] {_unencodable(exc)}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP in a command without its own account of the work
            from dogbreed.procs import stop_exit_code, stop_signal_name

            err.print(f"stopped ({stop_signal_name()})", soft_wrap=True, markup=False)
            raise typer.Exit(stop_exit_code()) from None
        except OverflowError:
            err.print("[red]Error:[/red] a number is too large (ids and counts must be below 2^63)", soft_wrap=True)
            raise typer.Exit(2) from None
        except BrokenPipeError:  # `dogbreed list | head`: the reader left; nothing more to say
            import os
            import sys

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except OSError as exc:
            where = f" {safe(exc.filename)}" if getattr(exc, "filename", None) else ""
            err.print(f"[red]Error:[/red] cannot access{where}: {safe(exc.strerror or exc)}", soft_wrap=True)
            raise typer.Exit(1) from None


def _unencodable(exc: UnicodeEncodeError) -> str:
    """Only text bound for the store is encoded as UTF-8 (terminal output that cannot be encoded is escaped, see
    ``common.clean``), so a UTF-8 failure is a name that is not valid UTF-8 (Linux names may be any bytes)."""
    text = exc.object if isinstance(exc.object, str) else ""
    if exc.encoding.replace("-", "").lower() == "utf8":
        return f"{safe(text[:300])} is not valid UTF-8, so the store cannot keep it; rename that file or folder"
    return f"this terminal's encoding ({safe(exc.encoding)}) cannot show some text; use a UTF-8 locale"


app = typer.Typer(
    cls=Group,
    help="Classify dog photos into the 120 Stanford Dogs breeds; every photo and prediction kept in SQLite.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    epilog="Start with: dogbreed predict photo.jpg   (a ready ImageNet model answers before you train anything)",
)


def main() -> None:
    from dogbreed.procs import stop_on_signals

    stop_on_signals()  # SIGTERM and SIGHUP end a command as Ctrl-C does: its work handed back, one line, no traceback
    app(prog_name="dogbreed")


def _version(value: bool) -> None:
    if value:
        out.print(f"dogbreed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    db: Path | None = typer.Option(
        None, "--db", help="SQLite store to use (default: $DOGBREED_DB, else $DOGBREED_HOME/dogbreed.db)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    escape_unencodable_output()
    show_dogbreed_warnings()
    paths = resolve_paths(db=db)
    if db is not None or os.environ.get(ENV_DB, "").strip():
        _check_store_folder(paths.db, paths.home, "--db" if db is not None else ENV_DB)
    ctx.obj = {"db": paths.db}


def _check_store_folder(db: Path, home: Path, given_by: str) -> None:
    """A store named explicitly goes into a folder that exists (a typo must not make a folder and an empty store
    somewhere); dogbreed's own home is the one folder it creates."""
    folder = db.expanduser().parent
    if folder.is_dir() or folder.resolve() == home.expanduser().resolve():
        return
    what = "is not a folder" if folder.exists() else "does not exist"
    raise DogbreedError(
        f"{given_by} {db}: the folder {folder} {what}; create it first (mkdir -p {shlex.quote(str(folder))}) or "
        "choose another path"
    )


def _group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(cls=Group, help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


dataset_app = _group("dataset", "The Stanford Dogs dataset: download, inspect, or make a synthetic one.")

# Each module registers its commands on `app` (or `dataset_app`) when imported.
from dogbreed.cli import breeds, dataset, evaluate, images, misc, models, predict, serve, stats, train  # noqa: E402,F401
