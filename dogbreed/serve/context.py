"""What every route needs: the server's settings, the prediction service, and a store connection per request."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from dogbreed.engines import Choice
from dogbreed.jobqueue import Supervisor
from dogbreed.sources import ModelSource

MB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """How one server runs: its store, its model, its workers and its limits."""

    db: Path
    source: ModelSource
    choice: Choice
    workers: int | None = None
    threads: int | None = None
    batch_size: int = 16
    host: str = "127.0.0.1"
    token: str | None = None
    max_upload_bytes: int = 100 * MB  # one request's body, counted as it arrives
    max_files: int = 64  # photos per classify request
    wait_s: float = 60.0  # how long classify waits for its predictions before answering 202
    start_timeout_s: float = 600.0  # workers loading the model


def settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def service(request: Request) -> Supervisor:
    return request.app.state.supervisor


@contextmanager
def store(request: Request) -> Iterator[sqlite3.Connection]:
    """A connection for one request, opened and closed in the thread that uses it (the store was opened and
    migrated once, when the server started)."""
    from dogbreed.store import connect

    conn = connect(settings(request).db)
    try:
        yield conn
    finally:
        conn.close()
