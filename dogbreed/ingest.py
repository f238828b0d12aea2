"""Upload: files, folders and globs -> validated image rows. One bad file never stops the others.

Pictures are read and fully decoded BEFORE the write transaction that stores them, so the store's write lock is
held only for the inserts themselves (a large upload never makes a concurrent predict or delete wait). Only
regular files are read, with the size cap enforced while reading; anything odd on the way (a FIFO, a link to a
device, a symlink loop, an unreadable folder, a name that is not valid UTF-8) is one refusal with its reason.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from dogbreed import imaging
from dogbreed.breeds import Breed, breed_from_folder, display_name
from dogbreed.files import NotReadable, read_regular_file
from dogbreed.pause import pause_point
from dogbreed.store import images as image_rows

BATCH = 32  # files decoded per insert transaction


@dataclass(frozen=True)
class UploadResult:
    path: str
    status: str  # "new", "duplicate" or "refused"
    reason: str | None = None
    image: image_rows.ImageRecord | None = None
    ground_truth_name: str | None = None

    @property
    def image_id(self) -> int | None:
        return self.image.id if self.image else None

    def to_dict(self) -> dict:
        """The outcome, with the stored record in the same shape as ``show --json``'s image part."""
        data: dict = {"path": self.path, "status": self.status, "reason": self.reason, "image_id": self.image_id}
        if self.image is not None:
            data.update(self.image.to_dict())
        else:  # a refusal: the same keys, nothing stored
            data.update(dict.fromkeys(f.name for f in fields(image_rows.ImageRecord)))
        data["ground_truth_name"] = self.ground_truth_name or display_name(data["ground_truth"]) or None
        return data


def printable(text: str) -> str:
    """A path or name as valid UTF-8: bytes that are not (a non-UTF-8 file name) become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def expand_paths(args: Iterable[str]) -> tuple[list[Path], list[UploadResult]]:
    """Files to upload (folders recursed, globs expanded, first-seen order, no repeats), and one refusal per
    argument or folder that cannot be used."""
    files: list[Path] = []
    refused: list[UploadResult] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        try:
            key = os.path.realpath(path, strict=False)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an unreadable link
            refused.append(UploadResult(printable(str(path)), "refused", f"cannot resolve: {exc}"))
            return
        if key not in seen:
            seen.add(key)
            files.append(path)

    def walk_error(exc: OSError) -> None:
        refused.append(UploadResult(printable(str(exc.filename)), "refused", f"cannot list folder: {exc.strerror}"))

    for arg in args:
        if not arg.strip():  # "$UNSET_VARIABLE" would otherwise mean ".": the whole current folder, recursively
            refused.append(UploadResult(repr(arg), "refused", "an empty path names nothing (an unset variable?)"))
            continue
        path = Path(arg).expanduser()
        try:
            is_dir, exists = path.is_dir(), path.exists() or path.is_symlink()
        except OSError as exc:
            refused.append(UploadResult(printable(arg), "refused", f"cannot read: {exc.strerror}"))
            continue
        if is_dir:
            found, errors = 0, len(refused)
            for root, dirs, names in os.walk(path, onerror=walk_error):  # never follows folder links: no loops
                dirs.sort()
                for name in sorted(names):
                    if Path(name).suffix.lower() in imaging.IMAGE_SUFFIXES and not name.startswith("."):
                        found += 1
                        add(Path(root) / name)
            if not found and len(refused) == errors:  # an unreadable folder already has its refusal
                why = "no pictures found in this folder or below it (looked for .jpg, .png, .webp, .heic, ...)"
                refused.append(UploadResult(printable(arg), "refused", why))
        elif exists:
            add(path)  # judged by its content when read: a FIFO or a device is refused then
        elif glob.has_magic(arg):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(arg), recursive=True))]
            matched = [m for m in matches if not m.is_dir()]
            for match in matched:
                add(match)
            if not matched:
                refused.append(UploadResult(printable(arg), "refused", "no file matches this pattern"))
        else:
            refused.append(UploadResult(printable(arg), "refused", "no such file or folder"))
    return files, refused


def _label_for(path: Path, ground_truth: Breed | None, label_from_folder: bool) -> str | None:
    if ground_truth is not None:
        return ground_truth.wnid
    if label_from_folder:
        breed = breed_from_folder(path.parent.name)
        if breed is None:
            raise imaging.ImageRejected(
                f"folder {printable(path.parent.name)!r} is not a Stanford breed folder (like n02085620-Chihuahua); "
                "upload it without --label-from-folder or with --ground-truth"
            )
        return breed.wnid
    return None


def prepare(
    path: Path, *, ground_truth: Breed | None = None, label_from_folder: bool = False, filename: str | None = None
) -> image_rows.NewImage | UploadResult:
    """Read and fully decode one file: a row ready to insert, or the refusal saying why. Never raises for a bad
    file."""
    shown = printable(str(path))
    try:
        label = _label_for(path, ground_truth, label_from_folder)
        data = read_regular_file(path, imaging.MAX_BYTES)
        info = imaging.validate(data)
    except (imaging.ImageRejected, NotReadable) as exc:
        return UploadResult(shown, "refused", str(exc))
    except (OSError, ValueError) as exc:
        return UploadResult(shown, "refused", f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    return image_rows.NewImage(
        filename=printable(filename or path.name),
        sha256=info.sha256,
        format=info.format,
        width=info.width,
        height=info.height,
        data=data,
        ground_truth=label,
    )


def upload(
    conn: sqlite3.Connection,
    files: list[Path],
    *,
    ground_truth: Breed | None = None,
    label_from_folder: bool = False,
    filename: str | None = None,
) -> Iterator[UploadResult]:
    """Validate files outside any transaction, store each batch in one short transaction, and yield each file's
    outcome (in the order given) once it is committed."""
    from dogbreed.labels import vocabulary

    names = vocabulary(conn)
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        prepared = [
            prepare(p, ground_truth=ground_truth, label_from_folder=label_from_folder, filename=filename) for p in batch
        ]
        ready = [p for p in prepared if isinstance(p, image_rows.NewImage)]
        inserted = image_rows.insert_images(conn, ready) if ready else []
        records = image_rows.get_images(conn, [done.image_id for done in inserted])
        stored = iter(inserted)  # in the order of ``ready``
        for path, item in zip(batch, prepared):
            if isinstance(item, UploadResult):
                yield item
                continue
            done = next(stored)
            record = records.get(done.image_id)
            note = "ground truth added to the stored image" if done.labelled else _label_kept(record, item.ground_truth)
            status = "new" if done.created else "duplicate"
            if status == "duplicate" and record is not None:  # the stored name may not be this file's
                same = f"same bytes as image {record.id} ({printable(record.filename)})"
                note = f"{same}; {note}" if note else same
            label = names.name(record.ground_truth) if record and record.ground_truth else None
            yield UploadResult(printable(str(path)), status, note, record, label)
        pause_point()  # tests only (DOGBREED_PAUSE_WHILE): a batch is stored and reported, the rest is not


def _label_kept(stored: image_rows.ImageRecord | None, asked: str | None) -> str | None:
    """A duplicate uploaded with another breed keeps its first label: say so rather than seem to relabel it."""
    if stored is None or asked is None or stored.ground_truth in (None, asked):
        return None
    return f"already labelled {display_name(stored.ground_truth)}; kept: delete it and upload again to change it"


def upload_bytes(
    conn: sqlite3.Connection, items: list[tuple[str, bytes]], *, ground_truth: Breed | None = None
) -> list[UploadResult]:
    """Store pictures received in memory (a web upload: (file name, bytes) each) exactly as ``upload`` stores
    files: fully decoded first, outside the write lock, duplicates recognised by their bytes, each refusal with
    its reason. Results in the order given."""
    prepared: list[image_rows.NewImage | UploadResult] = []
    for name, data in items:
        shown = printable(name)
        try:
            info = imaging.validate(data)
        except imaging.ImageRejected as exc:
            prepared.append(UploadResult(shown, "refused", str(exc)))
            continue
        label = ground_truth.wnid if ground_truth is not None else None
        prepared.append(image_rows.NewImage(shown, info.sha256, info.format, info.width, info.height, data, label))
    ready = [p for p in prepared if isinstance(p, image_rows.NewImage)]
    inserted = iter(image_rows.insert_images(conn, ready) if ready else [])
    results = []
    for item in prepared:
        if isinstance(item, UploadResult):
            results.append(item)
            continue
        done = next(inserted)
        record = image_rows.get_image(conn, done.image_id)
        note = "ground truth added to the stored image" if done.labelled else _label_kept(record, item.ground_truth)
        results.append(UploadResult(item.filename, "new" if done.created else "duplicate", note, record))
    return results
