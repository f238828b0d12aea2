"""The SQLite store: images with their bytes, predictions, prediction jobs, training runs."""

from dogbreed.store.db import connect, open_store, snapshot, utcnow, write

__all__ = ["connect", "open_store", "snapshot", "utcnow", "write"]
