"""The store's labelled images as a dataset: one consistent snapshot of (image id, label), split seeded and
stratified per breed; or, for a run that trained on it, exactly the images each split held then.

Every breed needs ``MIN_PER_BREED`` labelled images (``MIN_PER_SPLIT``: at least one for validation, one for the
test, the rest to train); a breed with fewer is an error naming it, or is left out (``skip_small``).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from dogbreed.breeds import Breed, Vocabulary
from dogbreed.datasets.stanford import STORE_PREFIX, DatasetIndex, Sample, Splits, stratified_split
from dogbreed.errors import DogbreedError

MIN_PER_SPLIT = {"train": 3, "val": 1, "test": 1}
MIN_PER_BREED = sum(MIN_PER_SPLIT.values())
TEST_FRACTION = 0.2


def labelled(db: Path) -> list[tuple[int, str]]:
    """(image id, breed key) of every labelled image, read in one statement: one consistent snapshot even while
    someone labels images meanwhile."""
    from dogbreed.store import connect
    from dogbreed.store.images import labelled_ids

    conn = connect(db, readonly=True)
    try:
        return labelled_ids(conn)
    except sqlite3.OperationalError as exc:
        raise DogbreedError(f"cannot read the labelled images of {db}: {exc}") from None
    finally:
        conn.close()


def index_of(db: Path, items: list[tuple[int, str]], vocabulary: Vocabulary) -> DatasetIndex:
    """A dataset of stored images: classes in vocabulary order (Stanford's, then your own; a breed removed since a
    run recorded its images keeps its key as its name)."""
    keys = {key for _, key in items}
    gone = [Breed(-1, key, "", key, own=True) for key in sorted(keys - set(vocabulary.by_key))]
    classes = [b for b in vocabulary.breeds if b.wnid in keys] + gone
    label = {b.wnid: i for i, b in enumerate(classes)}
    samples = [Sample(f"{STORE_PREFIX}{image_id}", label[key]) for image_id, key in items]
    return DatasetIndex(Path(db), classes, samples, layout="store", store=Path(db))


def too_small(index: DatasetIndex) -> dict[Breed, int]:
    """Breeds with fewer than MIN_PER_BREED images, with their counts."""
    counts = Counter(s.label for s in index.samples)
    return {b: counts[i] for i, b in enumerate(index.classes) if counts[i] < MIN_PER_BREED}


def small_breeds_error(where: str, small: dict[Breed, int]) -> DogbreedError:
    shown = ", ".join(f"{b.name} ({n})" for b, n in sorted(small.items(), key=lambda bn: bn[1]))
    return DogbreedError(
        f"too few labelled images in {where} for {len(small)} breed(s): {shown}; each needs at least "
        f"{MIN_PER_BREED} (3 to train, 1 to validate, 1 to test): label more, or leave them out with --skip-small"
    )


def seeded_splits(index: DatasetIndex, seed: int, val_fraction: float) -> Splits:
    """Train / validation / test, seeded and stratified per breed (test first, then validation from the rest)."""
    train, test = stratified_split(index.samples, TEST_FRACTION, seed)
    train, val = stratified_split(train, val_fraction, seed + 1)
    note = (
        f"seeded ({seed}) split of the store's {len(index.samples)} labelled images, stratified per breed: "
        f"{len(train)} train / {len(val)} val / {len(test)} test"
    )
    return Splits(train, val, test, False, [note])


def recorded_splits(index: DatasetIndex, recorded: dict[str, list[int]]) -> Splits:
    """The splits a run recorded (image ids per split), with the labels it trained on."""
    by_path = {s.path: s for s in index.samples}
    parts = {name: [by_path[f"{STORE_PREFIX}{i}"] for i in ids] for name, ids in recorded.items()}
    return Splits(parts.get("train", []), parts.get("val", []), parts.get("test", []), True, [])
