"""What a run trains on, beyond the dataset folder: the breeds the store knows (class folders may add breeds of
your own, with ``add_breeds``), the store's labelled images (a fresh snapshot, or the very splits a resumed run
recorded), and the record of which stored image went to which split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.breeds import Vocabulary
from dogbreed.datasets import PARTS, StorePart
from dogbreed.train import distributed
from dogbreed.train.config import TrainConfig

if TYPE_CHECKING:
    from dogbreed.datasets import OpenedDataset
    from dogbreed.train.config import Listener
    from dogbreed.train.distributed import Context


def _unknown_folders(config: TrainConfig, vocabulary: Vocabulary) -> list[str]:
    from dogbreed.datasets import folders

    if config.dataset is None or not folders.is_folders_dataset(config.dataset):
        return []
    try:
        folders.scan_folders(config.dataset, vocabulary)
    except folders.UnknownBreeds as exc:
        return exc.names
    return []


def vocabulary(db_path: Path, config: TrainConfig, ctx: Context, listener: Listener) -> Vocabulary:
    """The store's breeds (rank 0 reads them, and with ``add_breeds`` first adds the class folders' new names);
    every rank gets the same vocabulary."""
    own = None
    if ctx.main:
        from dogbreed import labels
        from dogbreed.store import connect

        conn = connect(db_path)
        try:
            known = labels.vocabulary(conn)
            new = _unknown_folders(config, known) if config.add_breeds else []
            for name in new:
                breed = labels.add_breed(conn, name, note=f"class folder of {config.dataset}")
                listener.stage(f"added breed {breed.name} ({breed.wnid}) from the class folder {name!r}")
            own = labels.vocabulary(conn).own if new else known.own
        finally:
            conn.close()
    return Vocabulary(distributed.broadcast(ctx, own))


def store_part(db_path: Path, config: TrainConfig, resume_id: int | None) -> StorePart | None:
    """The store's labelled images for this run: the splits a resumed run recorded, else a fresh snapshot."""
    if not config.store:
        return None
    if resume_id is None:
        return StorePart(Path(db_path))
    from dogbreed.store import connect
    from dogbreed.store.runs import recorded_images

    conn = connect(db_path)
    try:
        return StorePart(Path(db_path), recorded_images(conn, resume_id))
    finally:
        conn.close()


def record_store_splits(conn: Any, run_id: int, data: OpenedDataset) -> None:
    """Which stored image went to which split, with the label it trained on (the run's own snapshot)."""
    from dogbreed.store.runs import record_images

    rows = [
        (s.image_id, name, data.index.classes[s.label].wnid)
        for name in PARTS
        for s in data.part(name)
        if s.image_id is not None
    ]
    if rows:
        record_images(conn, run_id, rows)
