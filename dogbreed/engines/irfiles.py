"""OpenVINO IR files on disk: written with room checked first (OpenVINO reports a full disk as a RuntimeError,
"basic_ios::clear: iostream error", not as an OSError), and, for the conversion cache, recorded when written (each
file's size and sha256 in ``entry.json``) so that a damaged entry is found and rebuilt instead of failing every run.

Light at import: OpenVINO is imported by the function that writes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError, one_line
from dogbreed.files import read_hashed

IR_FILES = ("model.xml", "model.bin")
MANIFEST = "entry.json"  # written last: an entry without it was cut short
XML_BYTES_PER_OP = 2048  # a generous allowance for the .xml text beside the weights


@dataclass(frozen=True)
class IRBytes:
    """An IR read from disk and checked against what was recorded when it was written."""

    path: Path  # its .xml, for messages
    graph: bytes
    weights: bytes


def bytes_needed(model: Any) -> int:
    """About how many bytes ``save_ir`` writes for ``model``: its constants (the .bin) and the .xml text."""
    ops = model.get_ordered_ops()
    weights = sum(op.get_byte_size() for op in ops if op.get_type_name() == "Constant")
    return weights + XML_BYTES_PER_OP * len(ops)


def free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def no_room(shown: Path, needed: int, free: int, hint: str) -> str:
    return f"cannot write {shown}: its disk has {_mb(free)} free and the model needs about {_mb(needed)}; {hint}"


def save_ir(model: Any, xml: Path, shown: Path, hint: str) -> list[Path]:
    """``ov.save_model`` to ``xml`` and its .bin (fp32 weights, no fp16 compression). Refused before a byte is
    written when the disk has no room for it; a write that fails anyway leaves nothing behind and is one line
    naming ``shown`` (the path the user knows) and the space needed, ``hint`` saying what to do."""
    import openvino as ov

    needed = bytes_needed(model)
    free = free_bytes(xml.parent)
    if free is not None and free < needed:
        raise DogbreedError(no_room(shown, needed, free, hint))
    written = [xml, xml.with_suffix(".bin")]
    try:
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except RuntimeError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        free = free_bytes(xml.parent)
        if free is not None and free < needed:
            raise DogbreedError(no_room(shown, needed, free, hint)) from None
        reason = re.sub(r"(Check '[^']*' failed|Exception from) at \S+:\d+:\s*", "", one_line(exc))
        raise DogbreedError(f"cannot write {shown}: OpenVINO could not write it ({reason}); {hint}") from None
    return written


def record(folder: Path, source_key: str) -> IRBytes:
    """Write ``entry.json`` (the model's key; each IR file's size and sha256, as read back) in ``folder``, last;
    returns the bytes it recorded."""
    blobs, files = {}, {}
    for name in IR_FILES:
        blobs[name], digest = read_hashed(folder / name)
        files[name] = {"size": len(blobs[name]), "sha256": digest}
    (folder / MANIFEST).write_text(json.dumps({"source_key": source_key, "files": files}))
    return IRBytes(folder / IR_FILES[0], blobs["model.xml"], blobs["model.bin"])


def verified(folder: Path, source_key: str) -> IRBytes | str:
    """The IR in ``folder`` read once and checked against its record (made from the model ``source_key``, these
    sizes and sha256): its bytes, or why they cannot be used."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its record {MANIFEST} is missing or unreadable (a conversion cut short?)"
    if manifest.get("source_key") != source_key:
        return "it holds the conversion of another model"
    blobs = {}
    for name in IR_FILES:
        want = files.get(name) if isinstance(files, dict) else None
        try:
            blobs[name], digest = read_hashed(folder / name)
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
        if not isinstance(want, dict) or len(blobs[name]) != want.get("size"):
            size = want.get("size") if isinstance(want, dict) else "?"
            return f"{name} is {len(blobs[name])} bytes, {size} were written"
        if digest != want.get("sha256"):
            return f"{name} is not what was written (its sha256 differs)"
    return IRBytes(folder / IR_FILES[0], blobs["model.xml"], blobs["model.bin"])
