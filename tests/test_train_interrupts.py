"""Training runs stopped and resumed by several hands (issue 22): a dead run is claimed by one resumer only, and a
stopped run is told to resume only when a resume can work.

Runs are held at the pause point after rank 0 records an epoch (``dogbreed/pause.py``) while the test acts, so
nothing here races a timer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dogbreed.datasets.synthetic import make_synthetic
from tests.pausing import Gate

SMALL = ["--no-pretrained", "--image-size", "32", "--batch-size", "8", "--loader-workers", "0", "--finetune"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    make_synthetic(root, breeds=3, per_class=16, size=(40, 32), lists=True, seed=3)
    return root


def train_cmd(db: Path, *args) -> list[str]:
    return [sys.executable, "-m", "dogbreed", "--db", str(db), "train", *map(str, args)]


def home_env(home: Path) -> dict[str, str]:
    return {**os.environ, "DOGBREED_HOME": str(home)}


def error_lines(text: str) -> list[str]:
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("Error:")]


def dead_run(cli, home: Path, tiny: Path, gate: Gate, epochs: int = 3) -> int:
    """A run killed with SIGKILL right after its first epoch was recorded: interrupted, resumable."""
    proc = gate.start(train_cmd(cli.db, "--dataset", tiny, "--epochs", epochs, *SMALL), env=home_env(home))
    gate.wait(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    run = cli.json("stats")["runs"][0]
    assert run["status"] == "interrupted" and run["epochs_done"] == 1 and Path(run["last_checkpoint_path"]).is_file()
    return run["id"]


def first_to_end(procs: list[subprocess.Popen], patience: float = 300) -> subprocess.Popen:
    until = time.monotonic() + patience
    while True:
        ended = [p for p in procs if p.poll() is not None]
        if ended:
            return ended[0]
        assert time.monotonic() < until, "neither resumer ended"
        time.sleep(0.02)


def test_two_resumers_of_one_dead_run_train_it_once(cli, home, tiny, gate):
    """Two 'train --resume N' started together: one claims the run (atomically, in the store) and trains it; the
    other is refused in one line, having written nothing, and the winner's record ends finished, without error."""
    run_id = dead_run(cli, home, tiny, gate)
    gate.arm()  # the winner will hold after its next epoch: the loser then certainly meets a live owner
    resumers = [gate.start(train_cmd(cli.db, "--resume", run_id), env=home_env(home)) for _ in range(2)]
    loser = first_to_end(resumers)
    winner = resumers[1 - resumers.index(loser)]
    out, err = loser.communicate()
    assert loser.returncode == 1, out + err
    (line,) = error_lines(out + err)
    assert f"run {run_id} is already being trained by process {winner.pid}" in line, line
    gate.wait(winner)
    held = cli.sql("SELECT status, owner_pid, error FROM runs WHERE id = ?", (run_id,))
    assert held == [("running", winner.pid, None)]  # the loser changed nothing: the owner is the winner
    gate.open()
    out, err = winner.communicate(timeout=600)
    assert winner.returncode == 0, out + err
    run = cli.json("stats", run_id)
    assert run["status"] == "finished" and run["error"] is None
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3]
    assert "IntegrityError" not in cli("stats", run_id).stdout


def test_a_resume_that_cannot_start_hands_the_run_back_as_it_was(cli, home, tiny, gate, tmp_path):
    """A claimed run whose resume fails before training (its dataset moved) is handed back: interrupted, with its
    own error, resumable by the next try."""
    run_id = dead_run(cli, home, tiny, gate)
    before = cli.sql("SELECT status, error, finished_at FROM runs WHERE id = ?", (run_id,))
    moved = tmp_path / "moved"
    proc = subprocess.run(
        train_cmd(cli.db, "--resume", run_id, "--dataset", moved),
        capture_output=True,
        text=True,
        env=home_env(home),
        timeout=300,
    )
    assert proc.returncode == 1 and len(error_lines(proc.stdout + proc.stderr)) == 1, proc.stderr
    assert cli.sql("SELECT status, error, finished_at FROM runs WHERE id = ?", (run_id,)) == before
    resumed = cli.json("train", "--resume", run_id, "--dataset", tiny)
    assert resumed["status"] == "finished" and resumed["resumed_after"] == 1


def _terminated(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, out + err
    (line,) = error_lines(out + err)
    return line


@pytest.mark.parametrize("save", [True, False], ids=["saved", "no-save"])
def test_sigterm_advises_a_resume_only_when_one_can_work(cli, home, tiny, gate, save):
    """SIGTERM after epoch 1: with its training state saved, the advice is given and works; with --no-save there is
    no state, so no resume is advised, and a resume is refused saying why."""
    args = ["--dataset", tiny, "--epochs", 2, *SMALL, *([] if save else ["--no-save"])]
    proc = gate.start(train_cmd(cli.db, *args), env=home_env(home))
    gate.wait(proc)
    line = _terminated(proc)
    run_id = cli.json("stats")["runs"][0]["id"]
    advice = f"continue it with 'dogbreed train --resume {run_id}'"
    if save:
        assert advice in line, line
        assert cli.json("train", "--resume", run_id)["status"] == "finished"
    else:
        assert advice not in line and "kept no training state" in line, line
        refused = cli("train", "--resume", run_id, expect=1)
        assert "kept no training state to resume from" in refused.output
        assert "continue it with" not in cli("stats", run_id).stdout


def test_sigterm_before_the_first_epoch_never_advises_a_resume_that_cannot_work(cli, home, tiny, gate):
    """SIGTERM as soon as the run is recorded: before its first epoch ends (a run held at the end of epoch 1 is the
    only other outcome, and then the advice must work). Whatever the moment, the advice is given exactly when
    'train --resume' then works."""
    cli("stats")  # the store exists, so the run's row can be watched for
    proc = gate.start(train_cmd(cli.db, "--dataset", tiny, "--epochs", 2, *SMALL), env=home_env(home))
    until = time.monotonic() + 300
    while not cli.sql("SELECT id FROM runs"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < until, "the run was never recorded"
        time.sleep(0.01)
    line = _terminated(proc)
    run_id = cli.sql("SELECT id FROM runs")[0][0]
    resumed = cli("train", "--resume", run_id, expect=None)
    advised = f"continue it with 'dogbreed train --resume {run_id}'" in line
    assert advised == (resumed.exit_code == 0), (line, resumed.output)
    if not advised:
        assert "ended before its first epoch" in line and "kept no training state" in resumed.output
