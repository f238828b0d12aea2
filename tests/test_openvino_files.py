"""OpenVINO's files on disk (issue 22): exports and the conversion cache on a full file system, and a damaged cache.

OpenVINO reports a failed write as a RuntimeError ("basic_ios::clear: iostream error"), not an OSError; the promise
is one line naming the path and the space needed, and nothing partial left. The full disks are small tmpfs mounts
in a private mount namespace (``unshare -rm``), as in test_hostile.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images import jpeg_bytes, write
from tests.test_hostile import full_disk, mounted, one_error_line, output_of, store_intact

OPENVINO = ["--engine", "openvino", "--precision", "fp32"]


def dogbreed(home: Path, *args, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    import os

    cmd = [*(prefix or []), sys.executable, "-m", "dogbreed", *map(str, args)]
    env = {**os.environ, "DOGBREED_HOME": str(home)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def left(proc: subprocess.CompletedProcess) -> str:
    """What the mounted folder held afterwards (the last 'LEFT:' line the prefix prints)."""
    return [line for line in proc.stdout.splitlines() if line.startswith("LEFT:")][-1][len("LEFT:") :].strip()


@pytest.mark.parametrize("fmt, name", [("openvino", "model.xml"), ("onnx", "model.onnx")])
def test_an_export_onto_a_full_disk_is_one_line_with_the_space_needed_and_leaves_nothing(
    home, tmp_path, checkpoint, fmt, name
):
    out = tmp_path / "out"
    out.mkdir()
    proc = dogbreed(
        home, "export", checkpoint, "--format", fmt, "-o", out / name, "--no-check", prefix=full_disk(out, "4m", True)
    )
    assert proc.returncode == 1, output_of(proc)
    line = one_error_line(output_of(proc), f"cannot write {out / name}", "MB free", "needs about")
    assert "choose another --output" in line
    assert left(proc) == ""  # no staging folder, no half-written .bin


def test_an_ir_export_that_openvino_cannot_write_is_one_line_and_leaves_nothing(home, tmp_path, checkpoint):
    """Room for the bytes but not for the files (three inodes: the mount, the staging folder, the .xml): OpenVINO
    fails to create model.bin and raises a RuntimeError of its own."""
    out = tmp_path / "out"
    out.mkdir()
    prefix = mounted(f"mount -t tmpfs -o size=200m,nr_inodes=3 tmpfs {shlex.quote(str(out))}", out)
    proc = dogbreed(home, "export", checkpoint, "-o", out / "model.xml", "--no-check", prefix=prefix)
    assert proc.returncode == 1, output_of(proc)
    one_error_line(output_of(proc), f"cannot write {out / 'model.xml'}", "OpenVINO could not write it")
    assert left(proc) == ""


def test_the_conversion_cache_on_a_full_disk_is_one_line_and_leaves_nothing(home, tmp_path, checkpoint):
    cache = home / "cache"
    cache.mkdir(parents=True)
    picture = write(tmp_path / "dog.jpg", jpeg_bytes())
    setup = f"mount -t tmpfs -o size=4m tmpfs {shlex.quote(str(cache))}"
    prefix = mounted(setup, cache / "openvino")
    proc = dogbreed(home, "predict", picture, "-c", checkpoint, *OPENVINO, prefix=prefix)
    assert proc.returncode == 1, output_of(proc)
    line = one_error_line(output_of(proc), f"cannot write {cache / 'openvino'}/", "MB free", "needs about")
    assert "DOGBREED_HOME" in line and "--engine torch" in line
    assert left(proc) == ""  # no entry, no .converting- folder
    store_intact(home / "dogbreed.db")
    assert not (home / "dogbreed.db").exists() or dogbreed(home, "list", "--json").stdout.strip() == "[]"


DAMAGE = {
    "model.bin truncated": lambda entry: _truncate(entry / "model.bin"),
    "one byte of model.xml changed": lambda entry: _flip(entry / "model.xml"),
    "model.bin deleted": lambda entry: (entry / "model.bin").unlink(),
    "its record deleted": lambda entry: (entry / "entry.json").unlink(),
    "another model's entry copied over it": lambda entry: _foreign(entry),
}


def _foreign(entry: Path) -> None:
    """Sound files and a sound record, of another model (its key in the record)."""
    record = json.loads((entry / "entry.json").read_text())
    record["source_key"] = "0" * 64
    (entry / "entry.json").write_text(json.dumps(record))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20  # a letter's case: still text, another graph
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_entry_is_rebuilt_with_one_warning(home, tmp_path, checkpoint, damage):
    picture = write(tmp_path / "dog.jpg", jpeg_bytes())
    first = dogbreed(home, "predict", picture, "-c", checkpoint, *OPENVINO, "--json")
    assert first.returncode == 0, first.stderr
    (entry,) = [p for p in (home / "cache" / "openvino").iterdir() if not p.name.startswith(".")]
    DAMAGE[damage](entry)
    again = dogbreed(home, "predict", "--all", "-c", checkpoint, *OPENVINO, "--json")
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1, again.stderr
    assert f"the cached OpenVINO conversion {entry} is damaged" in warnings[0] and "converting" in warnings[0]
    before, after = (json.loads(p.stdout)["results"][0]["top"] for p in (first, again))
    assert [t["breed"] for t in after] == [t["breed"] for t in before]  # the same model, rebuilt
    assert [t["probability"] for t in after] == pytest.approx([t["probability"] for t in before])
    third = dogbreed(home, "predict", "--all", "-c", checkpoint, *OPENVINO, "--json")
    assert third.returncode == 0 and "Warning" not in third.stderr, third.stderr  # the rebuilt entry is sound
