"""Image rows: insert, look up, page through, delete. Listings never touch ``image_blobs``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from dogbreed.errors import DogbreedError
from dogbreed.store.breeds import known_key
from dogbreed.store.db import chunked, placeholders, utcnow, write
from dogbreed.store.labels import record_change

_COLUMNS = "i.id, i.filename, i.sha256, i.format, i.width, i.height, i.size_bytes, i.ground_truth, i.created_at"

# The newest prediction of each listed image, whatever model made it.
_LATEST_PREDICTION = """
    LEFT JOIN predictions p ON p.id = (
        SELECT id FROM predictions WHERE image_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1
    )"""


@dataclass(frozen=True)
class NewImage:
    """A validated picture, ready to insert."""

    filename: str
    sha256: str
    format: str
    width: int
    height: int
    data: bytes
    ground_truth: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    id: int
    filename: str
    sha256: str
    format: str
    width: int
    height: int
    size_bytes: int
    ground_truth: str | None
    created_at: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ImageListing(ImageRecord):
    """An image with its newest prediction's summary (all None when it has none)."""

    top1: str | None = None
    top1_prob: float | None = None
    dog_probability: float | None = None
    model_name: str | None = None


@dataclass(frozen=True)
class Inserted:
    image_id: int
    created: bool
    labelled: bool  # a duplicate without ground truth got the label this upload carried


def insert_images(conn: sqlite3.Connection, images: Sequence[NewImage]) -> list[Inserted]:
    """Store each image unless its bytes are already stored, in ONE short write transaction (the pictures were
    decoded before it began, so the lock is held only for the inserts)."""
    out = []
    with write(conn):
        for image in images:
            out.append(_insert(conn, image))
    return out


def _insert(conn: sqlite3.Connection, image: NewImage) -> Inserted:
    if image.ground_truth and not known_key(conn, image.ground_truth):
        raise DogbreedError(f"the breed {image.ground_truth!r} no longer exists; nothing was stored")
    existing = conn.execute("SELECT id FROM images WHERE sha256 = ?", (image.sha256,)).fetchone()
    if existing is not None:
        labelled = False
        if image.ground_truth:
            labelled = (
                conn.execute(
                    "UPDATE images SET ground_truth = ? WHERE id = ? AND ground_truth IS NULL",
                    (image.ground_truth, existing[0]),
                ).rowcount
                > 0
            )
            if labelled:
                record_change(conn, existing[0], None, image.ground_truth, "upload")
        return Inserted(existing[0], False, labelled)
    cur = conn.execute(
        "INSERT INTO images (filename, sha256, format, width, height, size_bytes, ground_truth, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image.filename,
            image.sha256,
            image.format,
            image.width,
            image.height,
            len(image.data),
            image.ground_truth,
            utcnow(),
        ),
    )
    conn.execute("INSERT INTO image_blobs (image_id, data) VALUES (?, ?)", (cur.lastrowid, image.data))
    if image.ground_truth:
        record_change(conn, cur.lastrowid, None, image.ground_truth, "upload")
    return Inserted(cur.lastrowid, True, False)


@dataclass(frozen=True)
class ImageFilter:
    """Which images a listing shows. ``wrong`` and ``below`` look at one prediction per image: the newest, or the
    newest of ``model_key``'s; images without one are left out of those listings."""

    breed: str | None = None  # this ground truth only
    after_id: int | None = None  # keyset paging: ids greater than this
    unlabelled: bool = False  # no ground truth yet
    wrong: bool = False  # labelled, and the prediction's top-1 is not the label
    below: float | None = None  # uncertain: the prediction's top-1 probability below this (most uncertain first)
    model_key: str | None = None

    @property
    def by_prediction(self) -> bool:
        return self.wrong or self.below is not None or self.model_key is not None


def _where(f: ImageFilter) -> tuple[list[str], list]:
    where, params = [], []
    for clause, value, wanted in (
        ("i.ground_truth = ?", f.breed, f.breed is not None),
        ("i.id > ?", f.after_id, f.after_id is not None),
        ("i.ground_truth IS NULL", None, f.unlabelled),
        ("i.ground_truth IS NOT NULL AND p.top1 != i.ground_truth", None, f.wrong),
        ("p.top1_prob < ?", f.below, f.below is not None),
    ):
        if wanted:
            where.append(clause)
            params += [] if value is None else [value]
    return where, params


def list_images(
    conn: sqlite3.Connection,
    *,
    limit: int = 50,
    offset: int = 0,
    after_id: int | None = None,
    breed: str | None = None,
    only: ImageFilter | None = None,
) -> list[ImageListing]:
    """One page of images, oldest first (most uncertain first with ``only.below``), each with its newest
    prediction's top-1 (or ``only.model_key``'s).

    ``after_id`` pages by key (``id > after_id``), which stays fast at any depth; ``offset`` is kept for
    convenience and is fine on the id index up to a few hundred thousand rows.
    """
    f = only or ImageFilter(breed=breed, after_id=after_id)
    if not f.by_prediction:
        where, params = _where(f)
        sql = (
            f"SELECT {_COLUMNS}, p.top1, p.top1_prob, p.dog_probability, p.model_name FROM "
            f"(SELECT * FROM images i {'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY i.id LIMIT ? OFFSET ?) i" + _LATEST_PREDICTION + " ORDER BY i.id"
        )
        return [ImageListing(**dict(r)) for r in conn.execute(sql, (*params, limit, offset))]
    model = "AND model_key = ? " if f.model_key is not None else ""
    where, params = _where(f)
    order = "p.top1_prob ASC, i.id" if f.below is not None else "i.id"
    sql = (
        f"SELECT {_COLUMNS}, p.top1, p.top1_prob, p.dog_probability, p.model_name FROM images i "
        "JOIN predictions p ON p.id = (SELECT id FROM predictions WHERE image_id = i.id "
        f"{model}ORDER BY created_at DESC, id DESC LIMIT 1) "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY {order} LIMIT ? OFFSET ?"
    )
    head = [f.model_key] if f.model_key is not None else []
    return [ImageListing(**dict(r)) for r in conn.execute(sql, (*head, *params, limit, offset))]


def get_image(conn: sqlite3.Connection, image_id: int) -> ImageRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM images i WHERE id = ?", (image_id,)).fetchone()
    return ImageRecord(**dict(row)) if row else None


def get_images(conn: sqlite3.Connection, image_ids: Sequence[int]) -> dict[int, ImageRecord]:
    found: dict[int, ImageRecord] = {}
    for chunk in chunked(image_ids):
        rows = conn.execute(f"SELECT {_COLUMNS} FROM images i WHERE id IN ({placeholders(len(chunk))})", chunk)
        found.update({r["id"]: ImageRecord(**dict(r)) for r in rows})
    return found


def get_image_bytes(conn: sqlite3.Connection, image_id: int) -> bytes | None:
    row = conn.execute("SELECT data FROM image_blobs WHERE image_id = ?", (image_id,)).fetchone()
    return row[0] if row else None


def get_blobs(conn: sqlite3.Connection, image_ids: Sequence[int]) -> dict[int, bytes]:
    """{image id: bytes} for the ids that still exist."""
    blobs: dict[int, bytes] = {}
    for chunk in chunked(image_ids):
        rows = conn.execute(
            f"SELECT image_id, data FROM image_blobs WHERE image_id IN ({placeholders(len(chunk))})", chunk
        )
        blobs.update({r[0]: r[1] for r in rows})
    return blobs


def existing_ids(conn: sqlite3.Connection, image_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for chunk in chunked(image_ids):
        found.update(
            r[0] for r in conn.execute(f"SELECT id FROM images WHERE id IN ({placeholders(len(chunk))})", chunk)
        )
    return found


def labelled_ids(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """(image id, ground truth) of every labelled image, oldest first."""
    rows = conn.execute("SELECT id, ground_truth FROM images WHERE ground_truth IS NOT NULL ORDER BY id")
    return [(r[0], r[1]) for r in rows]


def delete_images(conn: sqlite3.Connection, image_ids: Sequence[int]) -> list[int]:
    """Delete images with their bytes, predictions and jobs (foreign-key cascade). Returns the ids deleted."""
    deleted = []
    with write(conn):
        for image_id in image_ids:
            if conn.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount:
                deleted.append(image_id)
    return deleted


def newest_images(
    conn: sqlite3.Connection, *, limit: int = 24, before_id: int | None = None, breed: str | None = None
) -> list[ImageListing]:
    """One page of images, newest first (keyset: ``id < before_id``), each with its newest prediction's top-1: the
    web page's gallery."""
    where, params = [], []
    if breed is not None:
        where.append("i.ground_truth = ?")
        params.append(breed)
    if before_id is not None:
        where.append("i.id < ?")
        params.append(before_id)
    sql = (
        f"SELECT {_COLUMNS}, p.top1, p.top1_prob, p.dog_probability, p.model_name FROM "
        f"(SELECT * FROM images i {'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY i.id DESC LIMIT ?) i" + _LATEST_PREDICTION + " ORDER BY i.id DESC"
    )
    return [ImageListing(**dict(r)) for r in conn.execute(sql, (*params, limit))]
