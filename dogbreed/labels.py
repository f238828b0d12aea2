"""Your own breeds and your labels: the vocabulary a store knows (Stanford's 120 plus the breeds added to it),
adding and removing breeds, and setting, correcting or clearing the ground truth of stored images.

The store keeps the history of every label change; a breed is removed only while nothing uses it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dogbreed.breeds import Breed, Vocabulary, check_note, check_own_name
from dogbreed.errors import DogbreedError
from dogbreed.store import breeds as breed_rows
from dogbreed.store import labels as label_rows


def vocabulary(conn: sqlite3.Connection | None) -> Vocabulary:
    """Stanford's breeds plus this store's own (just Stanford's without a store)."""
    return Vocabulary(breed_rows.own_breeds(conn) if conn is not None else ())


def resolve(conn: sqlite3.Connection | None, text: str) -> Breed:
    """The breed ``text`` names in this store's vocabulary (exactly, or a unique prefix or word match)."""
    return vocabulary(conn).resolve(text)


def resolve_at(db: Path, text: str) -> Breed:
    """``resolve`` in the store at ``db``, which a store that does not exist yet is never created for (it has no
    breeds of its own): a wrong name is refused before anything is written."""
    from dogbreed.store import open_store

    if not Path(db).exists():
        return vocabulary(None).resolve(text)
    conn = open_store(db)
    try:
        return resolve(conn, text)
    finally:
        conn.close()


def add_breed(conn: sqlite3.Connection, name: str, note: str | None = None) -> Breed:
    """Register a breed of your own. Refused: a name of one of Stanford's breeds (in any spelling), a name already
    added (case and separators ignored), and names that are empty, too long, or hold control characters."""
    name = check_own_name(name)
    note = check_note(note) if note is not None else None
    known = vocabulary(conn).find(name)
    if known is not None:
        what = "one of your breeds" if known.own else f"a Stanford breed ({known.wnid})"
        raise DogbreedError(f"{name!r} is already {what}: {known.name!r}")
    return breed_rows.add_breed(conn, name, note)


def remove_breed(conn: sqlite3.Connection, name: str) -> Breed:
    """Forget one of your breeds, named exactly (no partial match for a removal)."""
    breed = vocabulary(conn).find(name)
    if breed is None or not breed.own:
        what = "is a Stanford breed, which cannot be removed" if breed is not None else "is not one of your breeds"
        raise DogbreedError(f"{name[:80]!r} {what} (see 'dogbreed breeds')")
    breed_rows.remove_breed(conn, breed.wnid)
    return breed


@dataclass(frozen=True)
class Labelled:
    breed: Breed | None  # None: cleared
    changed: list[int]
    unchanged: list[int]


def label(conn: sqlite3.Connection, image_ids: Sequence[int], breed: str | None) -> Labelled:
    """Set (``breed``) or clear (None) the ground truth of ``image_ids``: all of them, or none when one id does not
    exist."""
    if not image_ids:
        raise DogbreedError("name at least one image id")
    chosen = resolve(conn, breed) if breed is not None else None
    done = label_rows.set_labels(conn, image_ids, chosen.wnid if chosen else None)
    return Labelled(chosen, done.changed, done.unchanged)
