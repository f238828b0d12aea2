"""A dataset is complete only when dogbreed finished writing it (issue 22): ``dataset synthetic`` onto a full disk
names the folder, leaves it marked incomplete, ``dataset info`` says so and ``train`` refuses it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from dogbreed.datasets import INCOMPLETE, being_written, open_dataset
from dogbreed.datasets.synthetic import make_synthetic
from dogbreed.errors import DogbreedError
from tests.test_hostile import mounted, one_error_line, runs_recorded

# Runs inside the private mount namespace (the full disk exists only there): each command's exit code and output.
DRIVER = """
import json, os, subprocess, sys
runs = []
for args in json.loads(sys.argv[1]):
    proc = subprocess.run([sys.executable, "-m", "dogbreed", *args], capture_output=True, text=True)
    runs.append({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr})
runs.append(sorted(os.listdir(sys.argv[2])))
print(json.dumps(runs))
"""


def test_a_synthetic_dataset_cut_short_by_a_full_disk_is_named_incomplete_and_refused_by_train(home, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    root = disk / "synthetic"
    commands = [
        ["dataset", "synthetic", "--dataset", str(root), "--per-class", "200"],
        ["dataset", "info", "--dataset", str(root), "--no-verify"],
        ["dataset", "info", "--dataset", str(root), "--no-verify", "--json"],
        ["--db", str(home / "dogbreed.db"), "train", "--dataset", str(root), "--no-pretrained", "--epochs", "1"],
    ]
    prefix = mounted(f"mount -t tmpfs -o size=3m tmpfs {shlex.quote(str(disk))}")
    import os
    import subprocess

    env = {**os.environ, "DOGBREED_HOME": str(home)}
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", DRIVER, json.dumps(commands), str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    synthetic, info, info_json, train, left = json.loads(proc.stdout)
    assert synthetic["rc"] == 1
    one_error_line(
        synthetic["out"] + synthetic["err"], f"cannot write the dataset {root}", "disk is full", "incomplete"
    )
    assert INCOMPLETE in left and "Images" in left  # what was written stays, marked
    assert info["rc"] == 1 and f"INCOMPLETE: the dataset {root} is incomplete" in info["err"], info
    assert info_json["rc"] == 1 and "is incomplete" in json.loads(info_json["out"])["incomplete"]
    assert train["rc"] == 1
    one_error_line(train["out"] + train["err"], f"the dataset {root} is incomplete")
    assert runs_recorded(home / "dogbreed.db") == 0  # refused before a run is recorded


def test_a_write_stopped_any_other_way_leaves_the_marker_and_a_finished_one_does_not(tmp_path):
    """Ctrl-C (or any exception) half-way: the folder stays marked and is refused; a finished write is unmarked."""
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt), being_written(cut, "a test"):
        (cut / "Images").mkdir()
        raise KeyboardInterrupt
    with pytest.raises(DogbreedError, match=f"the dataset {cut} is incomplete"):
        open_dataset(cut)
    done = tmp_path / "done"
    make_synthetic(done, breeds=2, per_class=8, size=(32, 24))
    assert not (done / INCOMPLETE).exists()
    assert len(open_dataset(done, verify=False).index.samples) == 16
    assert Path(done / "README.txt").is_file()
