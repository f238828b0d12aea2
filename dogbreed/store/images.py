"""Image rows: insert, look up, page through, delete. Listings never touch ``image_blobs``."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from dogbreed.store.db import utcnow, write

LIST_COLUMNS = "i.id, i.filename, i.sha256, i.format, i.width, i.height, i.size_bytes, i.ground_truth, i.created_at"

# The newest prediction of each listed image, whatever checkpoint made it.
_LATEST_PREDICTION = """
    LEFT JOIN predictions p ON p.id = (
        SELECT id FROM predictions WHERE image_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1
    )"""


@dataclass(frozen=True)
class NewImage:
    filename: str
    sha256: str
    format: str
    width: int
    height: int
    data: bytes
    ground_truth: str | None = None


def find_by_sha256(conn: sqlite3.Connection, sha256: str) -> sqlite3.Row | None:
    return conn.execute(f"SELECT {LIST_COLUMNS} FROM images i WHERE sha256 = ?", (sha256,)).fetchone()


def insert_image(conn: sqlite3.Connection, image: NewImage) -> tuple[int, bool]:
    """Store an image unless its bytes are already stored. Returns (id, created). Call inside ``write``."""
    existing = conn.execute("SELECT id FROM images WHERE sha256 = ?", (image.sha256,)).fetchone()
    if existing is not None:
        return existing[0], False
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
    image_id = cur.lastrowid
    conn.execute("INSERT INTO image_blobs (image_id, data) VALUES (?, ?)", (image_id, image.data))
    return image_id, True


def label_if_unlabelled(conn: sqlite3.Connection, image_id: int, wnid: str) -> bool:
    cur = conn.execute("UPDATE images SET ground_truth = ? WHERE id = ? AND ground_truth IS NULL", (wnid, image_id))
    return cur.rowcount > 0


def set_ground_truth(conn: sqlite3.Connection, image_ids: list[int], wnid: str | None) -> int:
    with write(conn):
        return sum(
            conn.execute("UPDATE images SET ground_truth = ? WHERE id = ?", (wnid, i)).rowcount for i in image_ids
        )


def list_images(
    conn: sqlite3.Connection,
    *,
    limit: int = 50,
    offset: int = 0,
    after_id: int | None = None,
    breed: str | None = None,
) -> list[dict[str, Any]]:
    """One page of images, oldest first, each with its newest prediction's top-1 (or None).

    ``after_id`` pages by key (``id > after_id``), which stays fast at any depth; ``offset`` is kept for
    convenience and is fine on the id index up to a few hundred thousand rows.
    """
    where, params = [], []
    if breed is not None:
        where.append("i.ground_truth = ?")
        params.append(breed)
    if after_id is not None:
        where.append("i.id > ?")
        params.append(after_id)
    sql = (
        f"SELECT {LIST_COLUMNS}, p.top1 AS top1, p.top1_prob AS top1_prob FROM "
        f"(SELECT * FROM images i {'WHERE ' + ' AND '.join(where) if where else ''} "
        "ORDER BY i.id LIMIT ? OFFSET ?) i" + _LATEST_PREDICTION + " ORDER BY i.id"
    )
    rows = conn.execute(sql, (*params, limit, offset)).fetchall()
    return [dict(r) for r in rows]


def count_images(conn: sqlite3.Connection, breed: str | None = None) -> int:
    if breed is None:
        return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    return conn.execute("SELECT COUNT(*) FROM images WHERE ground_truth = ?", (breed,)).fetchone()[0]


def get_image(conn: sqlite3.Connection, image_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {LIST_COLUMNS} FROM images i WHERE id = ?", (image_id,)).fetchone()
    return dict(row) if row else None


def get_image_bytes(conn: sqlite3.Connection, image_id: int) -> bytes | None:
    row = conn.execute("SELECT data FROM image_blobs WHERE image_id = ?", (image_id,)).fetchone()
    return row[0] if row else None


def existing_ids(conn: sqlite3.Connection, image_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(image_ids), 500):
        chunk = image_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT id FROM images WHERE id IN ({marks})", chunk))
    return found


def all_image_ids(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")]


def delete_images(conn: sqlite3.Connection, image_ids: list[int]) -> list[int]:
    """Delete images with their bytes, predictions and jobs (foreign-key cascade). Returns the ids deleted."""
    deleted = []
    with write(conn):
        for image_id in image_ids:
            if conn.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount:
                deleted.append(image_id)
    return deleted
