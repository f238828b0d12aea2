"""Ground truth: set, corrected or cleared for many images at once, every change recorded (when, old, new, how).

A call naming an image that does not exist changes nothing at all (one write transaction, checked first), so a
typo in one id never leaves half a batch relabelled.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from dogbreed.errors import DogbreedError
from dogbreed.store.breeds import known_key
from dogbreed.store.db import chunked, placeholders, utcnow, write


@dataclass(frozen=True)
class LabelChange:
    image_id: int
    old: str | None
    new: str | None
    how: str  # upload | label | clear
    changed_at: str


@dataclass(frozen=True)
class Relabelled:
    changed: list[int]  # ids whose label changed
    unchanged: list[int]  # ids that already had it


def record_change(conn: sqlite3.Connection, image_id: int, old: str | None, new: str | None, how: str) -> None:
    """One history row (inside the caller's write transaction)."""
    conn.execute(
        "INSERT INTO label_changes (image_id, old, new, how, changed_at) VALUES (?, ?, ?, ?, ?)",
        (image_id, old, new, how, utcnow()),
    )


def _current(conn: sqlite3.Connection, image_ids: Sequence[int]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for chunk in chunked(image_ids):
        rows = conn.execute(f"SELECT id, ground_truth FROM images WHERE id IN ({placeholders(len(chunk))})", chunk)
        found.update({r[0]: r[1] for r in rows})
    return found


def set_labels(conn: sqlite3.Connection, image_ids: Sequence[int], key: str | None) -> Relabelled:
    """Give every image in ``image_ids`` the ground truth ``key`` (None clears it). All or nothing: an unknown id,
    or a breed removed meanwhile, changes no image."""
    ids = list(dict.fromkeys(image_ids))
    how = "label" if key is not None else "clear"
    with write(conn):
        current = _current(conn, ids)
        missing = [i for i in ids if i not in current]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise DogbreedError(f"no image with id {shown}; no label was changed (see 'dogbreed list')")
        if key is not None and not known_key(conn, key):
            raise DogbreedError(f"the breed {key!r} no longer exists; no label was changed")
        changed = [i for i in ids if current[i] != key]
        for image_id in changed:
            conn.execute("UPDATE images SET ground_truth = ? WHERE id = ?", (key, image_id))
            record_change(conn, image_id, current[image_id], key, how)
    return Relabelled(changed, [i for i in ids if i not in changed])


def history(conn: sqlite3.Connection, image_id: int) -> list[LabelChange]:
    """Every change of an image's label, oldest first."""
    rows = conn.execute(
        "SELECT image_id, old, new, how, changed_at FROM label_changes WHERE image_id = ? ORDER BY id", (image_id,)
    )
    return [LabelChange(**dict(r)) for r in rows]
