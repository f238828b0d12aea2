"""Labelled pictures as torch datasets, for training and evaluation: files of the dataset folder, or the store's
labelled images. Each item is decoded by the transform it is given (``EvalTransform`` is exactly predict's
preprocessing, ``TrainTransform`` adds training's random crops and flips); a picture that cannot be decoded comes
back as None and its batch skips it, naming it.

The one module of ``datasets`` that imports torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from dogbreed import imaging
from dogbreed.datasets.stanford import DatasetIndex, Sample
from dogbreed.files import read_regular_file
from dogbreed.imaging import Preprocessing


class Batch(NamedTuple):
    x: torch.Tensor | None
    y: torch.Tensor | None
    keys: list[str]  # the images in x, in order (dataset paths, or "image N" for the store)
    failed: list[str]  # images of this batch that could not be decoded


def collate(items) -> Batch:
    good = [(x, y, key) for x, y, key in items if x is not None]
    failed = [key for x, _, key in items if x is None]
    if not good:
        return Batch(None, None, [], failed)
    return Batch(
        torch.stack([x for x, _, _ in good]), torch.tensor([y for _, y, _ in good]), [k for *_, k in good], failed
    )


class EvalTransform:
    """Exactly the preprocessing ``predict`` uses."""

    def __init__(self, prep: Preprocessing):
        self.prep = prep

    def __call__(self, data: bytes) -> torch.Tensor:
        return torch.from_numpy(imaging.preprocess(data, self.prep))


class TrainTransform:
    """RandomResizedCrop (with the model's interpolation) + horizontal flip, then the same normalisation as
    evaluation."""

    def __init__(self, prep: Preprocessing):
        from torchvision.transforms import Compose, InterpolationMode, RandomHorizontalFlip, RandomResizedCrop

        self.prep = prep
        mode = InterpolationMode(prep.interpolation)
        self.augment = Compose([RandomResizedCrop(prep.crop_size, interpolation=mode), RandomHorizontalFlip()])

    def __call__(self, data: bytes) -> torch.Tensor:
        img = imaging.load_rgb(data, min_side=self.prep.resize_size)
        return torch.from_numpy(imaging.normalise(self.augment(img), self.prep))


class DatasetImages(Dataset):
    """A dataset's pictures with their labels: files of the dataset folder, or stored images ("store:N" samples,
    read through one read-only connection per process); item: (tensor or None, label, sample path)."""

    def __init__(self, index: DatasetIndex, samples: list[Sample], transform, labels: list[int] | None = None):
        self.root, self.samples, self.transform = index.images_dir, samples, transform
        self.store = str(index.store) if index.store is not None else None
        self.labels = labels if labels is not None else [s.label for s in samples]
        self._conn = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.samples)

    def _bytes(self, sample: Sample) -> bytes:
        if sample.image_id is None:
            return read_regular_file(self.root / sample.path, imaging.MAX_BYTES)
        if self._conn is None or self._pid != os.getpid():  # a loader worker opens its own
            from dogbreed.store import connect

            self._conn, self._pid = connect(self.store, readonly=True), os.getpid()
        from dogbreed.store.images import get_image_bytes

        data = get_image_bytes(self._conn, sample.image_id)
        if data is None:
            raise LookupError(f"image {sample.image_id} was deleted")
        return data

    def __getitem__(self, i: int):
        sample = self.samples[i]
        try:
            return self.transform(self._bytes(sample)), self.labels[i], sample.path
        except Exception:
            return None, self.labels[i], sample.path

    def __getstate__(self) -> dict:  # a connection never crosses into a loader worker
        return {**self.__dict__, "_conn": None, "_pid": None}


class StoreImages(Dataset):
    """Images stored in the store, by id, with labels; read through one read-only connection per process."""

    def __init__(self, db_path: Path, image_ids: list[int], labels: list[int], transform):
        self.db_path, self.ids, self.labels, self.transform = str(db_path), image_ids, labels, transform
        self._conn = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.ids)

    def _connection(self):
        if self._conn is None or self._pid != os.getpid():  # a loader worker opens its own
            from dogbreed.store import connect

            self._conn, self._pid = connect(self.db_path, readonly=True), os.getpid()
        return self._conn

    def __getitem__(self, i: int):
        from dogbreed.store.images import get_image_bytes

        key = f"image {self.ids[i]}"
        try:
            data = get_image_bytes(self._connection(), self.ids[i])
            if data is None:
                raise LookupError("deleted")
            return self.transform(data), self.labels[i], key
        except Exception:
            return None, self.labels[i], key

    def __getstate__(self) -> dict:  # a connection never crosses into a loader worker
        return {**self.__dict__, "_conn": None, "_pid": None}


def loader(
    dataset: Dataset, batch: int, *, workers: int, shuffle: bool = False, seed: int = 0, sampler=None
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
