"""The Python API: the same calls the CLI makes, for notebooks and scripts.

    import dogbreed

    model = dogbreed.load_model()                      # or load_model("efficientnet_b0"), checkpoint="run3.pt"
    for p in model.predict(["rex.jpg"], top_k=3):
        print(p.source, p.breed, f"{p.probability:.1%}", "dog" if p.is_dog else "probably not a dog")

    store = dogbreed.Store()                           # the store the CLI uses (or Store("other.db"))
    store.upload(["photos/"], ground_truth="beagle")
    store.predict(every=True)
    dogbreed.train(dataset="~/data/stanford-dogs", epochs=10)

``load_model`` runs in this process and stores nothing; ``Store`` keeps photos, predictions and jobs exactly as the
CLI does (it calls the same ``ingest``, ``predict`` and ``train`` functions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError

__all__ = ["Model", "Prediction", "Store", "load_model", "train"]


@dataclass(frozen=True)
class Prediction:
    """One picture's result: ``top`` ranks breeds (``BreedScore``: wnid, breed, probability), best first."""

    source: str  # the path, or "<bytes>" / "<image>" for in-memory input
    top: list[Any] = field(default_factory=list)
    dog_probability: float | None = None
    model: str = ""
    error: str | None = None  # why this picture could not be classified (the others still are)

    @property
    def breed(self) -> str | None:
        return self.top[0].breed if self.top else None

    @property
    def probability(self) -> float | None:
        """The top breed's probability AMONG THE BREEDS THE MODEL KNOWS (not "that it is a dog": see
        ``dog_probability``)."""
        return self.top[0].probability if self.top else None

    @property
    def probability_among_breeds(self) -> float | None:
        """The same figure as ``probability``, under a name that says what it is."""
        return self.probability

    @property
    def is_dog(self) -> bool | None:
        """False when the model says the photo probably shows no dog; None when it cannot tell."""
        from dogbreed.imagenet import DOG_THRESHOLD

        return None if self.dog_probability is None else self.dog_probability >= DOG_THRESHOLD


class Model:
    """A loaded classifier (checkpoint, ready ImageNet model or export) on one engine and device."""

    def __init__(self, source: Any, engine: Any):
        self.source, self.engine = source, engine

    @property
    def name(self) -> str:
        return self.source.name

    def __repr__(self) -> str:
        e = self.engine
        return f"<dogbreed.Model {self.source.name!r} on {e.device}, {e.name} {e.precision}>"

    def predict(self, items: Any, top_k: int = 5, batch_size: int = 16) -> list[Prediction]:
        """Classify file paths, encoded image bytes or PIL images (one or a list). A picture that cannot be read
        gets a Prediction with ``error`` set; the others are classified."""
        import numpy as np

        from dogbreed.imaging import center_crop, normalise, preprocess
        from dogbreed.predict import breed_probs
        from dogbreed.store.predictions import rank

        batch = [items] if isinstance(items, (str, Path, bytes)) or hasattr(items, "convert") else list(items)
        prep = self.engine.spec.preprocessing
        results: list[Prediction | None] = [None] * len(batch)
        arrays: list[tuple[int, Any]] = []
        labels = [_label(item) for item in batch]
        for i, item in enumerate(batch):
            label = labels[i]
            try:
                if hasattr(item, "convert"):  # a PIL image: it skips decoding, not the rest of the pipeline
                    arrays.append((i, normalise(center_crop(item.convert("RGB"), prep), prep)))
                else:
                    arrays.append((i, preprocess(_read(item), prep)))
            except DogbreedError as exc:
                results[i] = Prediction(label, model=self.name, error=str(exc))
        for start in range(0, len(arrays), batch_size):
            chunk = arrays[start : start + batch_size]
            scores = self.engine.predict(np.stack([a for _, a in chunk]))
            for row, (i, _) in enumerate(chunk):
                probs = breed_probs(self.engine.spec.classes, scores.probs[row])
                dog = float(scores.dog[row]) if scores.dog is not None else None
                results[i] = Prediction(labels[i], rank(probs, top_k, self.engine.spec.names), dog, self.name)
        return [r for r in results if r is not None]


def _label(item: Any) -> str:
    return str(item) if isinstance(item, (str, Path)) else "<bytes>" if isinstance(item, bytes) else "<image>"


def _read(item: str | Path | bytes) -> bytes:
    from dogbreed.files import NotReadable, read_regular_file
    from dogbreed.imaging import MAX_BYTES, ImageRejected

    if isinstance(item, bytes):
        return item
    try:
        return read_regular_file(Path(item).expanduser(), MAX_BYTES)
    except NotReadable as exc:
        raise ImageRejected(f"{item}: {exc}") from None


def load_model(
    model: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    weights: str | Path | None = None,
    run: int | None = None,
    db: str | Path | None = None,
    device: str = "auto",
    engine: str = "auto",
    precision: str = "auto",
) -> Model:
    """A classifier ready to ``predict``: a ready ImageNet model by name (``model``, with ``weights`` from disk
    when offline), a dogbreed checkpoint or export (``checkpoint``), a training run's model (``run``), or, with
    none of these, the same default the CLI uses (the pinned model, else the best trained run in the store, else
    the default ready model)."""
    from dogbreed.engines import choose_for, load_engine
    from dogbreed.models import sources
    from dogbreed.store import open_store

    store_path = Path(db) if db is not None else _default_store()
    conn = open_store(store_path) if store_path is not None else None
    try:
        source = sources.resolve(conn, checkpoint=checkpoint, model=model, weights=weights, run=run)
        choice = choose_for(conn, source, device, engine, precision)  # auto picks what predict would pick
    finally:
        if conn is not None:
            conn.close()
    return Model(source, load_engine(source, choice))


def _default_store() -> Path | None:
    """The CLI's store, if it exists (loading a model never creates one)."""
    from dogbreed.config import resolve_paths

    path = resolve_paths().db
    return path if path.is_file() else None


class Store:
    """A dogbreed store: photos with their bytes, predictions, jobs and training runs, in one SQLite file."""

    def __init__(self, path: str | Path | None = None):
        from dogbreed.config import resolve_paths
        from dogbreed.store import open_store

        self.path = resolve_paths(db=Path(path).expanduser() if path is not None else None).db
        self._conn = open_store(self.path)

    def __repr__(self) -> str:
        return f"<dogbreed.Store {str(self.path)!r}>"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(
        self, paths: Iterable[str | Path], ground_truth: str | None = None, label_from_folder: bool = False
    ) -> list[Any]:
        """Store files, folders or globs (``UploadResult`` per file: status new / duplicate / refused)."""
        from dogbreed import labels
        from dogbreed.ingest import expand_paths, upload

        breed = labels.resolve(self._conn, ground_truth) if ground_truth else None
        files, refused = expand_paths(str(p) for p in paths)
        return refused + list(upload(self._conn, files, ground_truth=breed, label_from_folder=label_from_folder))

    def images(self, limit: int = 50, offset: int = 0, after: int | None = None, breed: str | None = None) -> list[Any]:
        from dogbreed import labels
        from dogbreed.store import images

        wnid = labels.resolve(self._conn, breed).wnid if breed else None
        return images.list_images(self._conn, limit=limit, offset=offset, after_id=after, breed=wnid)

    def image(self, image_id: int) -> Any:
        from dogbreed.store import images

        found = images.get_image(self._conn, image_id)
        if found is None:
            raise DogbreedError(f"no image with id {image_id}")
        return found

    def image_bytes(self, image_id: int) -> bytes:
        from dogbreed.store import images

        data = images.get_image_bytes(self._conn, image_id)
        if data is None:
            raise DogbreedError(f"no image with id {image_id}")
        return data

    def predictions(self, image_id: int) -> list[Any]:
        """The image's predictions, newest first (``PredictionRecord``: ``.top(k)``, ``.dog_probability``...)."""
        from dogbreed.store import predictions

        return predictions.for_image(self._conn, image_id)

    def breeds(self) -> list[Any]:
        """Every breed this store knows: Stanford's 120, then your own (``Breed``: wnid is the key, own, note)."""
        from dogbreed import labels

        return list(labels.vocabulary(self._conn).breeds)

    def add_breed(self, name: str, note: str | None = None) -> Any:
        """Register a breed of your own (a DogbreedError if Stanford has it or it exists); returns its ``Breed``."""
        from dogbreed import labels

        return labels.add_breed(self._conn, name, note)

    def remove_breed(self, name: str) -> Any:
        """Forget one of your breeds, named exactly; refused while images or runs use it."""
        from dogbreed import labels

        return labels.remove_breed(self._conn, name)

    def label(self, image_ids: int | Sequence[int], breed: str | None) -> Any:
        """Set (or with None, clear) the ground truth of images: all of them, or none if an id does not exist.
        Returns ``Labelled`` (breed, changed ids, unchanged ids)."""
        from dogbreed import labels

        ids = [image_ids] if isinstance(image_ids, int) else list(image_ids)
        return labels.label(self._conn, ids, breed)

    def delete(self, image_ids: Sequence[int]) -> list[int]:
        from dogbreed.store import images

        return images.delete_images(self._conn, list(image_ids))

    def predict(
        self,
        ids: Sequence[int] = (),
        *,
        every: bool = False,
        pending: bool = False,
        paths: Sequence[str | Path] = (),
        model: str | None = None,
        checkpoint: str | Path | None = None,
        weights: str | Path | None = None,
        run: int | None = None,
        **options: Any,
    ) -> Any:
        """Run the predict use case on this store, as `dogbreed predict` does; returns its ``PredictOutcome``
        (``.results``: one ``JobResult`` per image, with ``.prediction``). ``options``: device, engine,
        precision, workers, threads, batch_size."""
        from dogbreed import predict
        from dogbreed.models import sources

        source = sources.resolve(self._conn, checkpoint=checkpoint, model=model, weights=weights, run=run)
        request = predict.PredictRequest(
            paths=[str(p) for p in paths], image_ids=list(ids), every=every, pending=pending, source=source, **options
        )
        return predict.predict_images(self.path, request)

    def session(self) -> Any:
        """A read-only SQLModel session for typed queries (see ``dogbreed.store.tables``)."""
        from dogbreed.store.tables import read_session

        return read_session(self.path)


def train(
    dataset: str | Path | None = None, *, store: bool = False, db: str | Path | None = None, **config: Any
) -> Any:
    """Train a classifier as `dogbreed train` does and record the run in the store; returns its ``TrainResult``.
    ``store=True`` trains on the store's labelled images (with ``dataset``: on both). ``config``: any
    ``TrainConfig`` field (model, mode, epochs, batch, lr, image_size, pretrained, add_breeds, skip_small...)."""
    from dogbreed.config import resolve_paths
    from dogbreed.train import TrainConfig
    from dogbreed.train import train as run_training

    paths = resolve_paths(
        db=Path(db).expanduser() if db is not None else None,
        dataset=Path(dataset).expanduser() if dataset is not None else None,
    )
    folder = None if store and dataset is None else paths.dataset
    return run_training(
        TrainConfig(dataset=folder, checkpoints_dir=paths.checkpoints, store=store, **config), paths.db
    )
