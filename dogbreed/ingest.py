"""Upload: files, folders and globs -> validated image rows. One bad file never stops the others."""

from __future__ import annotations

import glob
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dogbreed import imaging
from dogbreed.breeds import Breed, breed_from_folder
from dogbreed.store import images as image_rows
from dogbreed.store.db import write

# Inside folders we pick pictures by extension; files named explicitly are judged by their content.
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jfif",
    ".png",
    ".gif",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".ppm",
    ".pgm",
}
COMMIT_EVERY = 64


@dataclass(frozen=True)
class UploadResult:
    path: str
    status: str  # "new", "duplicate" or "refused"
    image_id: int | None = None
    reason: str | None = None
    ground_truth: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def expand_paths(args: Iterable[str]) -> tuple[list[Path], list[UploadResult]]:
    """Files to upload (folders recursed, globs expanded, first-seen order, no repeats), and one refusal per
    argument that names nothing."""
    files: list[Path] = []
    missing: list[UploadResult] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for arg in args:
        path = Path(arg).expanduser()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                        add(Path(root) / name)
        elif path.is_file():
            add(path)
        elif glob.has_magic(arg):
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            matched_files = [Path(m) for m in matches if Path(m).is_file()]
            for match in matched_files:
                add(match)
            if not matched_files:
                missing.append(UploadResult(arg, "refused", reason="no file matches this pattern"))
        else:
            missing.append(UploadResult(arg, "refused", reason="no such file or folder"))
    return files, missing


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > imaging.MAX_BYTES:
        raise imaging.ImageRejected(f"{size / 2**20:.0f} MB is over the {imaging.MAX_BYTES // 2**20} MB limit")
    return path.read_bytes()


def _label_for(path: Path, ground_truth: Breed | None, label_from_folder: bool) -> str | None:
    if ground_truth is not None:
        return ground_truth.wnid
    if label_from_folder:
        breed = breed_from_folder(path.parent.name)
        if breed is None:
            raise imaging.ImageRejected(
                f"folder {path.parent.name!r} is not a Stanford breed folder (like n02085620-Chihuahua); "
                "upload it without --label-from-folder or with --ground-truth"
            )
        return breed.wnid
    return None


def upload_one(
    conn: sqlite3.Connection,
    path: Path,
    *,
    ground_truth: Breed | None = None,
    label_from_folder: bool = False,
    filename: str | None = None,
) -> UploadResult:
    """Validate and store one file; call inside a write transaction. Never raises for a bad file."""
    try:
        label = _label_for(path, ground_truth, label_from_folder)
        data = _read(path)
        info = imaging.validate(data)
    except imaging.ImageRejected as exc:
        return UploadResult(str(path), "refused", reason=str(exc))
    except OSError as exc:
        return UploadResult(str(path), "refused", reason=f"cannot read: {exc.strerror or exc}")
    new = image_rows.NewImage(
        filename=filename or path.name,
        sha256=info.sha256,
        format=info.format,
        width=info.width,
        height=info.height,
        data=data,
        ground_truth=label,
    )
    image_id, created = image_rows.insert_image(conn, new)
    if created:
        return UploadResult(str(path), "new", image_id, ground_truth=label)
    note = None
    if label and image_rows.label_if_unlabelled(conn, image_id, label):
        note = "ground truth added to the stored image"
    return UploadResult(str(path), "duplicate", image_id, reason=note, ground_truth=label)


def upload(
    conn: sqlite3.Connection,
    files: list[Path],
    *,
    ground_truth: Breed | None = None,
    label_from_folder: bool = False,
    filename: str | None = None,
) -> Iterator[UploadResult]:
    """Upload files in small transactions, yielding each file's outcome as soon as it is committed."""
    for start in range(0, len(files), COMMIT_EVERY):
        with write(conn):
            batch = [
                upload_one(
                    conn, path, ground_truth=ground_truth, label_from_folder=label_from_folder, filename=filename
                )
                for path in files[start : start + COMMIT_EVERY]
            ]
        yield from batch
