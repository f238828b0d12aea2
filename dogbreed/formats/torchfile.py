"""Torch files read and written safely: the one ``torch.load`` dogbreed does (``weights_only``, stored-only zip
entries, a one-line error naming what a foreign file looks like) and the atomic ``torch.save`` every checkpoint uses.

Both checkpoints (``formats.checkpoint``) and torchvision weights files (``models.weights``) are read through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch

from dogbreed.errors import DogbreedError
from dogbreed.files import write_problem

CHECKPOINTS_HINT = " (DOGBREED_CHECKPOINTS for training)"  # where a write error says the folder can be moved
E = TypeVar("E", bound=BaseException)


def clean_stale_temporaries(folder: Path, max_age_s: float = 3600) -> None:
    """Remove temporary checkpoint files left by a process killed mid-save (older than an hour, so a save in
    progress elsewhere is never touched)."""
    import time

    try:
        for tmp in folder.glob(".*.pt.*.tmp"):
            if time.time() - tmp.stat().st_mtime > max_age_s:
                tmp.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_torch_save(payload: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves half a file under the
    real name. A full disk or a read-only folder is a one-line error."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as fh:  # a Python file: a failed write surfaces as its OSError
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:
        if _behind(exc, KeyboardInterrupt):  # Ctrl-C inside torch.save: its zip writer then fails on the way out
            raise KeyboardInterrupt from None
        cause = _behind(exc, OSError)
        if cause is None:
            raise
        raise DogbreedError(f"cannot write {path}: {write_problem(cause, CHECKPOINTS_HINT)}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _behind(exc: BaseException | None, kind: type[E]) -> E | None:
    """The ``kind`` exception behind ``exc``, if any (torch wraps a failed write of a file object, or one cut
    short by Ctrl-C, in a RuntimeError)."""
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None



def load_tensors(path: Path, what: str) -> Any:
    """torch.load without unpickling arbitrary objects; a file that is not a torch file is a one-line error
    naming what it looks like."""
    if not path.is_file():
        raise DogbreedError(f"{what} {path} does not exist or is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise DogbreedError(f"{what} {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        kind = _sniff(head)
        raise DogbreedError(f"{what} {path} is {kind}, not a torch file (.pt/.pth)")
    if head.startswith(b"PK"):
        _check_stored_only(path, size, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "Weights only load failed" in text or "weights_only" in text or "Unsupported global" in text:
            raise DogbreedError(
                f"{what} {path} contains pickled Python objects, which dogbreed never loads because "
                "unpickling can run arbitrary code; use a plain state dict or a dogbreed checkpoint"
            ) from None
        raise DogbreedError(f"{what} {path} cannot be read as a torch file: {text[:160]}") from None


def _check_stored_only(path: Path, size: int, what: str) -> None:
    """torch.save stores every zip entry uncompressed, so tensors can never be larger than the file; a compressed
    entry would let a 300 KB file allocate gigabytes inside torch.load (a decompression bomb)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DogbreedError(f"{what} {path} is a damaged torch file ({exc})") from None
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or sum(e.file_size for e in entries) > size:
        raise DogbreedError(
            f"{what} {path} holds compressed data, which torch.save never writes; it is not a file dogbreed loads"
        )


def _sniff(head: bytes) -> str:
    signatures = {
        b"\xff\xd8\xff": "a JPEG image",
        b"\x89PNG": "a PNG image",
        b"GIF8": "a GIF image",
        b"%PDF": "a PDF document",
        b"SQLite f": "an SQLite database",
        b"\x08": "possibly an ONNX model (use it with --checkpoint)",
        b"<?xml": "an XML file (an OpenVINO model? use it with --checkpoint)",
    }
    for sig, kind in signatures.items():
        if head.startswith(sig):
            return kind
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "not a recognised file type"

