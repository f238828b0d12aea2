"""Opening a store: connection settings, migrations, the one write discipline.

Every statement is stdlib sqlite3 with parameters. Writes go through ``write()``: BEGIN IMMEDIATE takes the
write lock up front, so two writers queue on the busy timeout instead of one failing when its read transaction
tries to upgrade. Reads never wait on a writer (WAL).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from dogbreed.errors import DogbreedError
from dogbreed.store.schema import LATEST_VERSION, MIGRATIONS

BUSY_TIMEOUT_MS = 60_000
CHUNK = 500  # ids per IN (...) clause: far below SQLite's variable limit
T = TypeVar("T")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def placeholders(n: int) -> str:
    """'?, ?, ?' for an IN clause of n parameters."""
    return ", ".join("?" * n)


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Settings every connection needs: waits instead of "database is locked", cascading deletes, WAL."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    _enable_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes creating one store can race here: SQLite answers the loser's switch with an
    immediate "database is locked" (a lock upgrade that the busy timeout does not cover), so retry until the
    winner is done."""
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A configured connection in autocommit mode (transactions are explicit, see ``write``)."""
    if readonly:
        conn = sqlite3.connect(_uri(path, "ro"), uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        configure(conn)
    conn.row_factory = sqlite3.Row
    return conn


def database_path(conn: sqlite3.Connection) -> Path:
    """The file a connection is open on."""
    return Path(conn.execute("PRAGMA database_list").fetchone()[2])


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: the only way anything in dogbreed changes the store."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: every query inside sees the store as it was at the first one, so answers built from
    several queries agree with each other while writers go on (WAL)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not has_table:
        return 0
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Run the migrations this store has not seen yet; returns the version it is at."""
    if schema_version(conn) == LATEST_VERSION:
        return LATEST_VERSION
    with write(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = schema_version(conn)  # re-read under the lock: another process may have migrated meanwhile
        if current > LATEST_VERSION:
            raise DogbreedError(
                f"this store is at schema version {current}, newer than this dogbreed knows ({LATEST_VERSION}); "
                "upgrade dogbreed"
            )
        for version in range(current + 1, LATEST_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, utcnow()))
    return LATEST_VERSION


def _check_is_ours(path: Path) -> None:
    """Refuse, without writing a byte, a file that is neither empty nor a dogbreed store: someone else's SQLite
    database must not get our tables (or WAL mode) added to it, and a device or FIFO is no database at all."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DogbreedError(f"cannot open store {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DogbreedError(f"store path {path} is not a regular file; point --db or DOGBREED_DB at a .db file")
    if st.st_size == 0:
        return
    # Never open() the file ourselves: closing any descriptor of a database drops every POSIX lock this process
    # holds on it, including those of its other SQLite connections (a server, the Python API, the test runner),
    # and another process may then checkpoint and delete the WAL under them. SQLite itself reads the header.
    # immutable: no lock and no -wal/-shm files created beside someone else's file; only when a -wal exists (a
    # database in use) is it read the ordinary way, so that tables still in that log are seen.
    in_use = Path(f"{path}-wal").exists()
    try:
        probe = sqlite3.connect(_uri(path, "ro", immutable=not in_use), uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            tables = {r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise DogbreedError(
                f"{path} is not an SQLite database, so not a dogbreed store; point --db or DOGBREED_DB elsewhere"
            ) from None
        raise DogbreedError(f"cannot read store {path}: {_explain(exc, path)}") from None
    user_tables = {t for t in tables if not t.startswith("sqlite_")}
    if user_tables and not {"schema_version", "images"} <= user_tables:
        raise DogbreedError(
            f"{path} is an SQLite database but not a dogbreed store (it has tables "
            f"{', '.join(sorted(user_tables)[:5])}); dogbreed leaves it untouched: point --db or DOGBREED_DB elsewhere"
        )


def open_store(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the store at ``path``; any failure is one DogbreedError line."""
    path = Path(path)
    if path.is_dir():
        raise DogbreedError(f"store path {path} is a directory; pass a file path with --db or DOGBREED_DB")
    _check_is_ours(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DogbreedError(f"cannot create the folder for store {path}: {exc.strerror}") from None
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise DogbreedError(f"cannot create store {path}: its folder is not writable; choose another --db")
    log_left = Path(f"{path}-wal").exists()  # in use elsewhere, or not closed cleanly (a clean close deletes it)
    try:
        conn = connect(path)
        if log_left:  # before any write: one would reuse the place of frames SQLite dropped
            from dogbreed.store.recovery import check_log

            check_log(conn, path)
        migrate(conn)
    except sqlite3.OperationalError as exc:
        raise DogbreedError(f"cannot open store {path}: {_explain(exc, path)}") from None
    except sqlite3.DatabaseError as exc:
        raise DogbreedError(f"cannot open store {path}: {exc}; point --db or DOGBREED_DB elsewhere") from None
    return conn


def _uri(path: Path | str, mode: str, immutable: bool = False) -> str:
    """An SQLite URI for ``path``: quoted, so that a '?' or '#' in a file name is part of the name."""
    return f"file:{urllib.parse.quote(str(path))}?mode={mode}" + ("&immutable=1" if immutable else "")


def _read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _explain(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "full" in text:
        return "the disk is full; free some space and run the command again"
    if _read_only_file_system(path):
        return "it is on a read-only file system and dogbreed writes to its store; choose another --db"
    if "readonly" in text or "read-only" in text:
        return "the file or its folder is read-only; make it writable or choose another --db"
    if "unable to open" in text:
        return "the file cannot be opened (permissions?); choose another --db"
    return text
