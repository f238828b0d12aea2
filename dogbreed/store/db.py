"""Opening a store: connection settings, migrations, transactions.

The store speaks stdlib sqlite3 with parameterized SQL. SQLModel (see ``tables.py``) describes the same tables for
the write paths that already pay for heavy imports; reading through sqlite3 keeps `list` and `show` far below the
0.4 s that importing SQLModel alone costs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from dogbreed.errors import DogbreedError
from dogbreed.store.schema import LATEST_VERSION, MIGRATIONS

BUSY_TIMEOUT_MS = 60_000


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Settings every connection needs: waits instead of "database is locked", cascading deletes, WAL."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A configured connection in autocommit mode (transactions are explicit, see ``write``)."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        configure(conn)
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so two writers queue on the busy
    timeout instead of failing when a read transaction tries to upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Run the migrations this store has not seen yet; returns the version it is at."""
    if schema_version(conn) == LATEST_VERSION:
        return LATEST_VERSION
    with write(conn):
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


def open_store(path: Path | str) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the store at ``path``; any failure is one DogbreedError line."""
    path = Path(path)
    if path.is_dir():
        raise DogbreedError(f"store path {path} is a directory; pass a file path with --db or DOGBREED_DB")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DogbreedError(f"cannot create the folder for store {path}: {exc.strerror}") from None
    try:
        conn = connect(path)
        migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise DogbreedError(
            f"cannot open store {path}: {exc}; is it a dogbreed database? Point --db or DOGBREED_DB elsewhere"
        ) from None
    return conn
