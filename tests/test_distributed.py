"""Distributed training through torchrun, on this CPU with gloo: two real processes, one run record, one checkpoint,
metrics from every rank's predictions; a rank killed mid-run fails the run cleanly, and the run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.datasets.synthetic import make_synthetic

ARGS = ["--no-pretrained", "--image-size", "32", "--loader-workers", "0", "--finetune", "--precision", "fp32"]


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic(root, breeds=4, per_class=24, size=(48, 36), lists=True, seed=1)
    return root


def launch(db: Path, *args, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``dogbreed train --nproc 2 ...`` as a user would run it (its own session, so a hang can be cleaned up)."""
    command = [sys.executable, "-m", "dogbreed", "--db", str(db), "train", "--nproc", "2", *map(str, args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the training process of ``rank`` whose environment holds ``marker`` (this test's home)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and marker.encode() in env:
            return int(entry.name)
    return None


def test_two_gloo_processes_make_one_run_one_checkpoint_and_exact_metrics(cli, home, learnable):
    from sklearn.metrics import accuracy_score

    from dogbreed.datasets.stanford import make_splits, scan

    cli("stats")  # the store exists before the ranks start
    proc = launch(cli.db, "--dataset", learnable, "--epochs", 2, "--batch-size", 8, *ARGS, "--json")
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)  # rank 0 alone printed: one JSON document
    runs = cli.json("stats")["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "finished" and runs[0]["id"] == result["run_id"]
    run = cli.json("stats", result["run_id"])
    assert run["device"] == "cpu x2 (gloo)" and run["params"]["world_size"] == 2
    assert [e["epoch"] for e in run["epochs"]] == [1, 2]
    files = sorted(p.name for p in (home / "checkpoints").iterdir())
    assert files == [Path(run["checkpoint_path"]).name]  # one checkpoint; no state left (finished), no temporaries

    # the test split, scored half by each rank and gathered: every picture once, in the split's order
    splits = make_splits(scan(learnable))
    report = run["test_report"]
    assert report["paths"] == [s.path for s in splits.test] and report["n"] == 24
    assert report["accuracy"] == accuracy_score(report["y_true"], report["y_pred"])
    # exactly what one process gives for the same weights, answer by answer
    single = cli.json("eval", "--run", result["run_id"])
    (stored,) = cli.sql("SELECT report FROM evaluations WHERE id = ?", (single["evaluation_id"],))[0]
    assert json.loads(stored)["y_pred"] == report["y_pred"] and single["accuracy"] == run["test_acc"]
    # validation was gathered the same way: the kept epoch's score is one process's score on the whole split
    kept = next(e for e in run["epochs"] if e["epoch"] == run["best_epoch"])
    val = cli.json("eval", "--run", result["run_id"], "--split", "val")
    assert val["n"] == len(splits.val) and val["accuracy"] == kept["val_acc"] and val["macro_f1"] == kept["val_f1"]


def test_a_killed_rank_fails_the_run_cleanly_and_the_run_resumes(cli, home, learnable, gate):
    from dogbreed.formats.checkpoint import read_checkpoint

    cli("stats")
    proc = launch(cli.db, "--dataset", learnable, "--epochs", 3, "--batch-size", 4, *ARGS, env=gate.env())
    gate.wait(proc)  # rank 0 holds after recording epoch 1; rank 1 waits for it at their next collective
    assert cli.sql("SELECT COUNT(*) FROM epochs") == [(1,)]
    victim = rank_pid(1, f"DOGBREED_HOME={home}")
    assert victim is not None
    os.kill(victim, signal.SIGKILL)  # mid-run for certain: the run cannot end while rank 0 is held
    gate.open()
    _, stderr = finish(proc)
    assert proc.returncode == 1 and "rank 1 exited with signal SIGKILL" in stderr
    (run_id, status, error), *others = cli.sql("SELECT id, status, error FROM runs")
    assert not others and status == "failed" and error
    folder = home / "checkpoints"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # nothing half-written
    for path in folder.glob("*.pt"):
        read_checkpoint(path)  # every file there is whole
    done = [e for (e,) in cli.sql("SELECT epoch FROM epochs ORDER BY epoch")]
    assert done and done == list(range(1, len(done) + 1))

    resumed = cli("train", "--resume", run_id, "--json")  # on one process now
    assert "saved by 2 process(es) and resumes on 1" in " ".join(resumed.stderr.split())
    assert json.loads(resumed.stdout)["status"] == "finished"
    assert [e for (e,) in cli.sql("SELECT epoch FROM epochs ORDER BY epoch")] == [1, 2, 3]
    assert cli.sql("SELECT status FROM runs") == [("finished",)]
