"""What a dataset is made of: a folder (Stanford's layout, or any class folders), the store's labelled images, or
both; indexed as one (classes: Stanford's breeds in their order, then your own) and split per source (Stanford's
official lists where present, else seeded and stratified per breed), so adding the store to a Stanford dataset
never moves a Stanford image from one split to another."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dogbreed.breeds import Breed, Vocabulary
from dogbreed.datasets import folders, stanford
from dogbreed.datasets import store as stored
from dogbreed.datasets.stanford import DatasetIndex, Sample, Splits
from dogbreed.errors import DogbreedError

if TYPE_CHECKING:
    from dogbreed.datasets import StorePart


def _folder(root: Path, vocabulary: Vocabulary, seed: int, val_fraction: float, limit: int | None):
    index = folders.scan_folders(root, vocabulary) if folders.is_folders_dataset(root) else stanford.scan(root)
    return index, stanford.make_splits(index, seed=seed, val_fraction=val_fraction, limit_per_class=limit)


def _store(part: StorePart, vocabulary: Vocabulary, seed: int, val_fraction: float):
    if part.recorded is not None:
        items = [item for name in ("train", "val", "test") for item in part.recorded.get(name, [])]
        index = stored.index_of(part.db, items, vocabulary)
        ids = {name: [i for i, _ in part.recorded.get(name, [])] for name in ("train", "val", "test")}
        return index, stored.recorded_splits(index, ids)
    items = stored.labelled(part.db)
    if not items:
        raise DogbreedError(
            f"the store {part.db} has no labelled images to train on; label some with 'dogbreed label ID... BREED' "
            "or upload with --ground-truth"
        )
    index = stored.index_of(part.db, items, vocabulary)
    return index, stored.seeded_splits(index, seed, val_fraction)


def _merged_classes(indexes: list[DatasetIndex]) -> list[Breed]:
    seen: dict[str, Breed] = {}
    for index in indexes:
        for breed in index.classes:
            seen.setdefault(breed.wnid, breed)
    stanford_first = sorted((b for b in seen.values() if not b.own), key=lambda b: b.index)
    return stanford_first + [b for b in seen.values() if b.own]


def _relabel(index: DatasetIndex, samples: list[Sample], where: dict[str, int]) -> list[Sample]:
    return [Sample(s.path, where[index.classes[s.label].wnid]) for s in samples]


def _combine(parts: list[tuple[DatasetIndex, Splits]]) -> tuple[DatasetIndex, Splits]:
    if len(parts) == 1:
        return parts[0]
    classes = _merged_classes([index for index, _ in parts])
    where = {b.wnid: i for i, b in enumerate(classes)}
    merged = {name: [] for name in ("train", "val", "test")}
    notes: list[str] = []
    for index, splits in parts:
        for name in merged:
            merged[name] += _relabel(index, getattr(splits, name), where)
        notes += splits.notes
    (folder, folder_splits), (store, _) = parts
    samples = merged["train"] + merged["val"] + merged["test"]
    index = DatasetIndex(
        folder.root, classes, samples, f"{folder.layout}+store", folder.images_dir, store.store
    )
    return index, Splits(merged["train"], merged["val"], merged["test"], folder_splits.official, notes)


def _small(parts: list[tuple[DatasetIndex, Splits]]) -> dict[Breed, int]:
    """Breeds of the folders and the store with too few images to split, counting every source."""
    counts: Counter[str] = Counter()
    checked: dict[str, Breed] = {}
    for index, _ in parts:
        for s in index.samples:
            breed = index.classes[s.label]
            counts[breed.wnid] += 1
            if index.layout != "stanford":  # Stanford's own split is not ours to judge
                checked[breed.wnid] = breed
    return {b: counts[k] for k, b in checked.items() if counts[k] < stored.MIN_PER_BREED}


def _drop(index: DatasetIndex, splits: Splits, gone: set[str]) -> tuple[DatasetIndex, Splits]:
    """``index`` and ``splits`` without the images of the ``gone`` breeds (keys), labels renumbered."""
    kept = [b for b in index.classes if b.wnid not in gone]
    new = {b.wnid: i for i, b in enumerate(kept)}

    def keep(samples: list[Sample]) -> list[Sample]:
        return [Sample(s.path, new[index.classes[s.label].wnid]) for s in samples if index.classes[s.label].wnid in new]

    parts = Splits(keep(splits.train), keep(splits.val), keep(splits.test), splits.official, list(splits.notes))
    return replace(index, classes=kept, samples=keep(index.samples)), parts


def index_and_split(
    root: Path | None,
    store: StorePart | None,
    vocabulary: Vocabulary,
    *,
    seed: int,
    val_fraction: float,
    limit: int | None,
    skip_small: bool,
) -> tuple[DatasetIndex, Splits]:
    """The one index of every source, and its splits (see the module doc)."""
    if root is None and store is None:
        raise DogbreedError("say which data: --dataset DIR, --store, or both")
    parts = []
    if root is not None:
        parts.append(_folder(Path(root), vocabulary, seed, val_fraction, limit))
    if store is not None:
        parts.append(_store(store, vocabulary, seed, val_fraction))
    small = _small(parts) if store is None or store.recorded is None else {}
    if small and not skip_small:
        raise stored.small_breeds_error("the store" if root is None else str(root), small)
    if small:
        gone = {b.wnid for b in small}
        parts = [_drop(index, splits, gone) for index, splits in parts]
        names = ", ".join(f"{b.name} ({n})" for b, n in small.items())
        parts[0][1].notes.append(f"--skip-small: left out {len(small)} breed(s) with too few images: {names}")
    return _combine(parts)
