"""Datasets: labelled pictures to train and evaluate on, opened through one function.

``open_dataset`` is the one way in: it indexes a dataset folder, splits it (train / validation / test, as
``stanford.make_splits`` makes them: the official lists when present, else seeded and stratified per breed) and
verifies its images, leaving the unreadable ones out of every split. Training, evaluation and the engine checks all
open their data here, so a split means the same thing to each of them; a new kind of dataset (any class folders,
the store's labelled images) plugs in behind it.

Modules: ``stanford`` (the Stanford Dogs layout, its .mat lists, splits, the verify scan and its cache, download),
``download`` (bounded, resumable HTTP), ``archive`` (a safe tar extractor), ``synthetic`` (an offline stand-in
dataset), ``loaders`` (torch datasets and loaders over the splits or the store: the only module importing torch).

Light module: importing it imports neither torch nor PIL.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.breeds import Vocabulary
from dogbreed.errors import DogbreedError

if TYPE_CHECKING:
    from dogbreed.datasets.stanford import DatasetIndex, Sample, Splits

PARTS = ("train", "val", "test")
SYNTHETIC_MARKER = "dogbreed-synthetic.json"  # written by ``synthetic.make_synthetic`` into the dataset folder
_SYNTHETIC_README = "SYNTHETIC data made by dogbreed"  # how datasets made before the marker existed begin
_PART_NAMES = {"train": "train", "val": "validation", "test": "test"}
VERIFYING = "verifying dataset images (cached after the first run)"


@dataclass
class OpenedDataset:
    """A dataset split and verified: its index, its three splits with the unreadable images left out, and what was
    left out and why."""

    root: Path
    index: DatasetIndex
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    unreadable: dict[str, str]  # every image of the dataset that failed verification (path -> reason), split or not
    official: bool  # whether the dataset's own lists decided train vs test
    notes: list[str] = field(default_factory=list)  # what the user should know about the split
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)  # per split: its unreadable images, in order
    synthetic: bool = False  # made by 'dogbreed dataset synthetic' (stripe patterns, not photos): its marker says so

    def part(self, name: str) -> list[Sample]:
        """The split called ``name`` (train, val or test)."""
        if name not in PARTS:
            raise ValueError(f"no split {name!r}; the splits are {', '.join(PARTS)}")
        return getattr(self, name)

    def leaving_out(self, unreadable: dict[str, str]) -> OpenedDataset:
        """This dataset with the images of ``unreadable`` (path -> reason) left out as well: how a verdict made
        elsewhere (rank 0 of a distributed run) reaches a copy opened without verifying."""
        kept: dict[str, list[Sample]] = {}
        left_out = {name: dict(self.left_out.get(name, {})) for name in PARTS}
        for name in PARTS:
            kept[name] = [s for s in self.part(name) if s.path not in unreadable]
            left_out[name].update((s.path, unreadable[s.path]) for s in self.part(name) if s.path in unreadable)
        return replace(self, **kept, unreadable={**self.unreadable, **unreadable}, left_out=left_out)


INCOMPLETE = ".dogbreed-incomplete"  # in a dataset folder while dogbreed writes it; removed last


@contextmanager
def being_written(root: Path, what: str) -> Iterator[None]:
    """``root`` while ``what`` (a command) writes a dataset into it: marked incomplete before the first file and
    unmarked after the last, so a write cut short (a full disk, a kill) leaves a folder that ``open_dataset``
    refuses and ``dataset info`` names as incomplete. A failed write is one line naming the folder."""
    from dogbreed.files import write_problem

    marker = root / INCOMPLETE
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{what} began writing this dataset and has not finished; make it again\n")
        yield
        marker.unlink()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise DogbreedError(
            f"cannot write the dataset {root}{where}: {write_problem(exc)}; what was written is marked incomplete "
            f"(train refuses it): remove {root} and make it again"
        ) from None


def incomplete(root: Path) -> str | None:
    """Why the dataset at ``root`` cannot be used as it is (its writing never finished), or None."""
    marker = Path(root) / INCOMPLETE
    if not marker.exists():
        return None
    return f"the dataset {root} is incomplete: its writing stopped before it finished ({marker} is still there)"


@dataclass(frozen=True)
class StorePart:
    """The store's labelled images as (part of) a dataset: a fresh snapshot, or the splits a run recorded
    ({split: [(image id, breed key)]})."""

    db: Path
    recorded: dict[str, list[tuple[int, str]]] | None = None


def open_dataset(
    root: Path | None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_per_class: int | None = None,
    verify: bool = True,
    require: Collection[str] = (),
    on_stage: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    store: StorePart | None = None,
    vocabulary: Vocabulary | None = None,
    skip_small: bool = False,
) -> OpenedDataset:
    """Index, split and (with ``verify``) verify the dataset at ``root`` (Stanford's layout, or any class folders),
    the store's labelled images (``store``), or both; the splits come without the images that cannot be decoded
    (see ``stanford.verify``, cached in the dataset folder).

    ``vocabulary``: the breeds class folders and stored labels may name (Stanford's alone by default).
    ``require``: the splits that must hold images (training needs all three, evaluation the one it scores),
    checked before the slow verification. ``on_stage`` hears what is being done, ``on_note`` each note about the
    split (also kept in ``notes``) as soon as it is known. ``skip_small``: breeds with too few images (folders,
    store) are left out with a note instead of refused. Raises ``DogbreedError`` for a folder that is not a
    dataset, a damaged split list, too few images, or a required split that is empty; ``folders.UnknownBreeds``
    for class folders that name no known breed.
    """
    from dogbreed.datasets import combine, stanford

    unfinished = incomplete(root) if root is not None else None
    if unfinished:
        raise DogbreedError(f"{unfinished}; remove it and make it again (or point --dataset elsewhere)")
    vocabulary = vocabulary or Vocabulary()
    index, splits = combine.index_and_split(
        root, store, vocabulary, seed=seed, val_fraction=val_fraction, limit=limit_per_class, skip_small=skip_small
    )
    for note in splits.notes:
        if on_note:
            on_note(note)
    where = root if root is not None else "the store"
    _check_required(where, splits, require)
    opened = OpenedDataset(
        index.root, index, splits.train, splits.val, splits.test, {}, splits.official, list(splits.notes),
        synthetic=root is not None and is_synthetic(root),  # the folder's marker (a store of photos has none)
    ).leaving_out({})
    if not verify or index.layout == "store":
        return opened
    if on_stage:
        on_stage(VERIFYING)
    return opened.leaving_out(stanford.verify(index))


def is_synthetic(root: Path) -> bool:
    """Whether the dataset at ``root`` was made by ``dogbreed dataset synthetic``: its marker file (datasets made
    before the marker existed are known by the first words of their README). A model trained on it has learnt
    stripe patterns, not dogs, so it never becomes the default model for photos."""
    root = Path(root)
    if (root / SYNTHETIC_MARKER).is_file():
        return True
    try:
        with open(root / "README.txt", encoding="utf-8", errors="replace") as fh:
            return fh.read(len(_SYNTHETIC_README)) == _SYNTHETIC_README
    except OSError:
        return False


def _check_required(root: Path | str, splits: Splits, require: Collection[str]) -> None:
    if all(getattr(splits, name) for name in require):
        return
    if len(require) == 1:
        (name,) = require
        raise DogbreedError(f"the {name} split of {root} is empty; choose another --split or add images")
    names = "/".join(_PART_NAMES[name] for name in require)
    sizes = "/".join(str(len(getattr(splits, name))) for name in require)
    raise DogbreedError(f"{root} is too small to split into {names} ({sizes}); add images")


def split_params(run: Any) -> dict[str, Any]:
    """The seed, validation fraction and per-breed limit a run split its dataset with (the defaults without one):
    ``open_dataset(root, **split_params(run))`` makes the very splits that run trained on."""
    params = (run.params if run is not None else None) or {}
    return {
        "seed": int(params.get("seed", 0)),
        "val_fraction": float(params.get("val_fraction", 0.1)),
        "limit_per_class": params.get("limit_per_class"),
    }


def run_sources(conn: Any, db_path: Path, run: Any) -> tuple[Path | None, StorePart | None]:
    """Where a run's data is: its dataset folder (as recorded, None for the store alone) and the stored images it
    recorded per split (None when it did not train on the store)."""
    from dogbreed.store.runs import recorded_images

    params = run.params or {}
    root = params["dataset"] if "dataset" in params else run.dataset
    store = StorePart(Path(db_path), recorded_images(conn, run.id)) if params.get("store") else None
    return (Path(root) if root else None), store
