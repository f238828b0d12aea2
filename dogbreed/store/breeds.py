"""Breeds of the user's own: added once (a name that differs only in case or separators is the same breed),
listed, and removed only while no image and no training run uses them. Checked and changed in one write
transaction, so two commands racing each other cannot both add a breed or remove one in use."""

from __future__ import annotations

import json
import sqlite3

from dogbreed.breeds import BY_WNID, Breed, match_key, own_key
from dogbreed.errors import DogbreedError
from dogbreed.store.db import utcnow, write


def own_breeds(conn: sqlite3.Connection) -> list[Breed]:
    """The user's breeds, in the order they were added."""
    rows = conn.execute("SELECT key, name, note FROM breeds ORDER BY created_at, key")
    return [Breed(-1, r["key"], "", r["name"], own=True, note=r["note"] or "") for r in rows]


def add_breed(conn: sqlite3.Connection, name: str, note: str | None = None) -> Breed:
    """Register ``name`` (already checked: ``breeds.check_own_name``) under a new stable key."""
    wanted = match_key(name)
    with write(conn):
        same = conn.execute("SELECT name FROM breeds WHERE match_key = ?", (wanted,)).fetchone()
        if same is not None:
            raise DogbreedError(f"the breed {same['name']!r} already exists (names ignore case and separators)")
        taken = [r[0] for r in conn.execute("SELECT key FROM breeds")]
        key = own_key(name, taken)
        conn.execute(
            "INSERT INTO breeds (key, name, match_key, note, created_at) VALUES (?, ?, ?, ?, ?)",
            (key, name, wanted, note or None, utcnow()),
        )
    return Breed(-1, key, "", name, own=True, note=note or "")


def runs_using(conn: sqlite3.Connection, key: str) -> list[int]:
    """Ids of the training runs whose model knows ``key``."""
    rows = conn.execute("SELECT id, classes FROM runs WHERE classes IS NOT NULL AND instr(classes, ?) > 0", (key,))
    return [r["id"] for r in rows if key in json.loads(r["classes"])]


def remove_breed(conn: sqlite3.Connection, key: str) -> None:
    """Forget an own breed; refused (one line, nothing changed) while images are labelled with it or a run's
    model knows it."""
    with write(conn):
        images = conn.execute("SELECT COUNT(*) FROM images WHERE ground_truth = ?", (key,)).fetchone()[0]
        runs = runs_using(conn, key)
        if images or runs:
            used = [f"{images} image(s) labelled with it"] if images else []
            used += [f"training run(s) {', '.join(map(str, runs))}"] if runs else []
            raise DogbreedError(
                f"cannot remove breed {key!r}: {' and '.join(used)} use it; relabel the images first "
                "('dogbreed label ID... BREED' or --clear)"
            )
        if not conn.execute("DELETE FROM breeds WHERE key = ?", (key,)).rowcount:
            raise DogbreedError(f"no breed of your own with key {key!r}")


def known_key(conn: sqlite3.Connection, key: str) -> bool:
    """Whether ``key`` is a Stanford breed or one of the store's own (call inside the write that uses it)."""
    if key in BY_WNID:
        return True
    return conn.execute("SELECT 1 FROM breeds WHERE key = ?", (key,)).fetchone() is not None
