"""What every route needs: the server's settings, the prediction service, and a store connection per request."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import HTTPException, Request
from fastapi import Path as PathParam

from dogbreed.engines import Choice
from dogbreed.errors import DogbreedError
from dogbreed.jobqueue import Supervisor
from dogbreed.models.sources import ModelSource

MB = 1024 * 1024
MAX_ID = 2**63 - 1  # SQLite's largest integer
NOT_FOUND = "No images found with that id."
ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The image's id (a positive integer).")]

# What the original accepted besides image/*: a client that cannot tell the type sends octet-stream (the bytes are
# judged by their content anyway).
LENIENT_TYPES = ("application/octet-stream",)


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


# ---------------------------------------------------------------- what several routes answer alike


def not_found() -> HTTPException:
    return HTTPException(404, NOT_FOUND)


def image_or_404(conn: Any, image_id: int) -> Any:
    from dogbreed.store.images import get_image

    image = get_image(conn, image_id)
    if image is None:
        raise not_found()
    return image


def newest_prediction(conn: Any, image_id: int) -> Any | None:
    from dogbreed.store.predictions import for_image

    preds = for_image(conn, image_id)
    return preds[0] if preds else None


def resolve_label(request: Request, text: str | None) -> Any | None:
    """A breed in any spelling the CLI accepts, the store's own breeds included; an unknown one is 422 with the
    CLI's suggestions."""
    from dogbreed import labels

    if not text:
        return None
    with store(request) as conn:
        try:
            return labels.resolve(conn, text)
        except DogbreedError as exc:
            raise HTTPException(422, str(exc)) from None


def is_image_type(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind.startswith("image/") or kind in LENIENT_TYPES
