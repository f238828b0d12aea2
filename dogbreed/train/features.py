"""The frozen backbone's features, kept between runs: extractor mode computes an image's feature vector once per
backbone, and every later run on the same images (a second `train --store`, another head, more epochs) reads it
back instead of decoding and running the backbone again.

An entry is keyed by the backbone (a hash of its weights, the preprocessing, the precision and the library
versions, so a change of any of them computes anew) and by the image (a stored image's sha256; a file's path, size
and modification time). Entries are small .npy files under ``$DOGBREED_HOME/cache/features/<backbone>/``, written
atomically; the ``KEEP_BACKBONES`` most recently used backbones are kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dogbreed.datasets.stanford import DatasetIndex, Sample
from dogbreed.files import prune_oldest, touch

KEEP_BACKBONES = 8


def backbone_key(model: Any, prep: Any, precision: str) -> str:
    """What makes two runs' features the same: the backbone's weights, the input and the arithmetic."""
    import torch

    from dogbreed.version import __version__

    digest = hashlib.sha256()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(f"{prep}|{precision}|{__version__}|{torch.__version__}".encode())
    return digest.hexdigest()[:32]


def image_keys(index: DatasetIndex, samples: list[Sample]) -> list[str | None]:
    """Each sample's image identity (None when it cannot be read: it is then computed, and fails, as usual)."""
    ids = [s.image_id for s in samples if s.image_id is not None]
    stored = _stored_hashes(index.store, ids) if ids else {}
    keys: list[str | None] = []
    for s in samples:
        if s.image_id is not None:
            keys.append(stored.get(s.image_id))
            continue
        try:
            st = (index.images_dir / s.path).stat()
        except OSError:
            keys.append(None)
            continue
        keys.append(hashlib.sha256(f"{index.images_dir / s.path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest())
    return keys


def _stored_hashes(db: Path | None, ids: list[int]) -> dict[int, str]:
    from dogbreed.store import connect
    from dogbreed.store.images import get_images

    conn = connect(db, readonly=True)
    try:
        return {i: record.sha256 for i, record in get_images(conn, ids).items()}
    finally:
        conn.close()


class FeatureCache:
    """One backbone's cached features (no folder: caching is off, e.g. a randomly initialised backbone)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        if folder is not None:
            touch(folder)

    @classmethod
    def open(cls, root: Path, key: str) -> FeatureCache:
        prune_oldest(root, KEEP_BACKBONES)
        return cls(root / key)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, key: str | None) -> np.ndarray | None:
        if self.folder is None or key is None:
            return None
        try:
            return np.load(self._path(key), allow_pickle=False)
        except (OSError, ValueError):
            return None  # missing or damaged: computed again

    def save(self, key: str | None, feature: np.ndarray) -> None:
        if self.folder is None or key is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(feature, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except OSError:
            pass  # a full or read-only cache only costs the next run the time to compute it again
