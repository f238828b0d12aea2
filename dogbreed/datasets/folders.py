"""Any class folders (the ImageFolder layout): ``<dataset>/<class name>/**/*.jpg``.

A folder named like a Stanford breed (its WordNet id, its Stanford folder name, or its name in any spelling) is
that breed; a folder named like one of the store's own breeds is that breed; any other name is a breed the store
does not know yet, which ``UnknownBreeds`` lists so the caller can add it (``train --add-breeds``) or say so.
There is no official split: train / validation / test are seeded and stratified per breed.
"""

from __future__ import annotations

from pathlib import Path

from dogbreed.breeds import Breed, Vocabulary, breed_from_folder, check_own_name
from dogbreed.datasets.stanford import DatasetIndex, Sample
from dogbreed.errors import DogbreedError
from dogbreed.imaging import IMAGE_SUFFIXES

MAX_FILES = 2_000_000  # a folder tree larger than this is a mistake (a home folder), not a dataset


class UnknownBreeds(DogbreedError):
    """Class folders whose names are not breeds this store knows."""

    def __init__(self, root: Path, names: list[str]):
        self.names = names
        shown = ", ".join(repr(n[:60]) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        super().__init__(
            f"{len(names)} class folder(s) of {root} are not breeds this store knows: {shown}; add them as breeds "
            "of your own with --add-breeds (or 'dogbreed breeds add NAME'), or rename the folders"
        )


def is_folders_dataset(root: Path) -> bool:
    """Class folders at the top (and no Stanford Images/ folder)."""
    root = Path(root)
    return root.is_dir() and not (root / "Images").is_dir()


def _images_in(folder: Path, budget: list[int]) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_file():
            found.append(path)
            budget[0] -= 1
            if budget[0] < 0:
                raise DogbreedError(f"{folder.parent} holds over {MAX_FILES} pictures; point --dataset at the dataset")
    return found


def _breed_of(name: str, vocabulary: Vocabulary) -> Breed | None:
    return breed_from_folder(name) or vocabulary.find(name)


def scan_folders(root: Path, vocabulary: Vocabulary) -> DatasetIndex:
    """Index ``root/<class>/...``: one class per folder holding pictures (Stanford breeds first, in their order,
    then your own); ``UnknownBreeds`` when some folder names no breed the store knows."""
    root = Path(root)
    if not root.is_dir():
        raise DogbreedError(f"--dataset {root} is not a folder")
    budget = [MAX_FILES]
    classes: dict[str, tuple[Breed, list[Path]]] = {}
    unknown = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images_in(folder, budget)
        if not files:
            continue
        breed = _breed_of(folder.name, vocabulary)
        if breed is None:
            unknown.append(_usable_name(folder))
        elif breed.wnid in classes:
            other = classes[breed.wnid][1][0].parent.relative_to(root).parts[0]
            raise DogbreedError(f"{root} has two folders for {breed.name} ({other} and {folder.name}); merge them")
        else:
            classes[breed.wnid] = (breed, files)
    if unknown:
        raise UnknownBreeds(root, unknown)
    return _index(root, classes)


def _usable_name(folder: Path) -> str:
    try:
        return check_own_name(folder.name)
    except DogbreedError as exc:
        raise DogbreedError(f"class folder {str(folder)[:200]!r} cannot name a breed: {exc}; rename it") from None


def _index(root: Path, classes: dict[str, tuple[Breed, list[Path]]]) -> DatasetIndex:
    ordered = sorted(classes.values(), key=lambda bf: (bf[0].own, bf[0].index if not bf[0].own else 0))
    if not ordered:
        raise DogbreedError(
            f"no Images/ folder (Stanford's layout) and no class folders with pictures (DIR/<breed>/*.jpg) in {root}; "
            f"fetch the dataset with 'dogbreed dataset download --dataset {root}' or point --dataset at one"
        )
    if len(ordered) < 2:
        raise DogbreedError(f"{root} holds {len(ordered)} class folder(s) with pictures; training needs at least 2")
    samples = [
        Sample(path.relative_to(root).as_posix(), label) for label, (_, files) in enumerate(ordered) for path in files
    ]
    return DatasetIndex(root, [b for b, _ in ordered], samples, layout="folders", images_root=root)
