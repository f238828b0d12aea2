"""A prediction is recorded under the model whose bytes made it (issue 22, "integrity first").

A job names its model by the sha256 of the model's file when it is queued; the file is loaded later (by the
background worker, by a spawned pool worker, by the OpenVINO conversion). Each case here replaces the file in that
gap, for certain: the process is held at a pause point (``dogbreed/pause.py``) or the identity is taken before the
swap. Models A and B answer different breeds whatever the picture, so a prediction tells which model made it.
Promise: nothing is ever stored under A that B computed; jobs whose model changed fail with a reason that says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dogbreed.breeds import BREEDS
from tests.images import jpeg_bytes, write
from tests.pausing import Gate

CHANGED = "changed after it was chosen"
A_BREED, B_BREED = BREEDS[3], BREEDS[70]  # what models A and B answer, whatever the picture


@pytest.fixture
def gate(tmp_path):
    held = Gate(tmp_path)
    yield held
    held.close()


def answering_checkpoint(path: Path, breed_index: int, image_size: int = 32) -> Path:
    """A real dogbreed checkpoint (random resnet18 extractor) whose head answers one breed for every picture."""
    import torch

    from dogbreed.formats.checkpoint import CheckpointMeta, save_checkpoint
    from dogbreed.models.build import build_model

    torch.manual_seed(breed_index)
    model = build_model("resnet18", "extractor", len(BREEDS))
    last = model.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[breed_index] = 30.0
    classes = [[b.wnid, b.name] for b in BREEDS]
    save_checkpoint(path, model, CheckpointMeta("resnet18", "extractor", classes, image_size=image_size))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("identity-models")
    return {
        "A": answering_checkpoint(folder / "A.pt", A_BREED.index),
        "B": answering_checkpoint(folder / "B.pt", B_BREED.index),
    }


def swap(target: Path, replacement: Path, how: str) -> None:
    """Put ``replacement``'s bytes at ``target``: renamed over it (a new inode, as ``mv`` does) or rewritten in
    place (the same inode, as ``cp`` does)."""
    if how == "renamed":
        tmp = target.with_name(f".{target.name}.new")
        shutil.copyfile(replacement, tmp)
        os.replace(tmp, target)
    else:
        with open(target, "r+b") as fh:
            fh.truncate(0)
            fh.write(replacement.read_bytes())


def dogbreed_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "dogbreed", *map(str, args)]


def upload_three(cli, tmp_path) -> list[int]:
    paths = [write(tmp_path / "pics" / f"{i}.jpg", jpeg_bytes(seed=40 + i)) for i in range(3)]
    return [r["image_id"] for r in cli.json("upload", *paths)["results"]]


def wait_for_exit(pid: int, patience: float = 300) -> None:
    """A detached process (not our child) has ended; a bound on a hang only."""
    from dogbreed.procs import pid_alive

    until = time.monotonic() + patience
    while pid_alive(pid):
        assert time.monotonic() < until, f"process {pid} still runs after {patience} s"
        time.sleep(0.05)


def predictions(cli) -> list[tuple[str, str]]:
    return cli.sql("SELECT model_key, top1 FROM predictions ORDER BY image_id")


def sha(path: Path) -> str:
    from dogbreed.files import file_sha256

    return file_sha256(path)


# ---------------------------------------------------------------- the background worker


@pytest.mark.parametrize("how", ["renamed", "rewritten"])
def test_a_checkpoint_swapped_after_predict_background_fails_its_jobs_and_records_nothing(
    cli, home, tmp_path, models, gate, how
):
    """predict --background queues jobs for A; its worker is held after taking them, before loading the model;
    the file becomes B; the worker must fail the jobs (B is not what they were queued for) and store nothing."""
    ids = upload_three(cli, tmp_path)
    path = shutil.copy(models["A"], tmp_path / "model.pt")
    env = gate.env({**os.environ, "DOGBREED_HOME": str(home)})
    queued = subprocess.run(
        dogbreed_cmd("--db", cli.db, "predict", "--all", "-c", path, "--background", "--json"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert queued.returncode == 0, queued.stderr
    worker = json.loads(queued.stdout)["pid"]
    gate.wait(_Detached(worker))
    swap(Path(path), models["B"], how)
    gate.open()
    wait_for_exit(worker)
    rows = cli.sql("SELECT status, error FROM jobs ORDER BY id")
    assert [r[0] for r in rows] == ["failed"] * 3, rows
    assert all(CHANGED in r[1] and str(Path(path).resolve()) in r[1] for r in rows), rows
    assert predictions(cli) == []
    # --pending with the file as it is now: B predicts them, under B's identity
    done = cli.json("predict", "--pending", "-c", path)
    assert done["done"] == 3 and done["model_key"] == sha(models["B"])
    assert predictions(cli) == [(sha(models["B"]), B_BREED.wnid)] * len(ids)


class _Detached:
    """The Popen interface ``Gate.wait`` needs, for a process we did not start (the detached worker)."""

    stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self):
        from dogbreed.procs import pid_alive

        return None if pid_alive(self.pid) else -1

    def wait(self):
        wait_for_exit(self.pid)

    def communicate(self):
        return "", f"the detached worker {self.pid} ended before pausing (see its log)"


def test_weights_and_exports_swapped_before_the_worker_loads_them_fail_their_jobs(cli, home, tmp_path, models):
    """The same gap for the other model files: a ready model's --weights file, and an OpenVINO IR whose .bin is
    replaced (its key covers both files). The jobs are queued in the store, the file replaced, then the worker
    runs them (``python -m dogbreed.worker``, what predict --background starts)."""
    from dogbreed.models import sources
    from dogbreed.store import connect
    from dogbreed.store import jobs as job_rows
    from tests.conftest import imagenet_state_dict

    ids = upload_three(cli, tmp_path)
    exports = {}
    for name in ("A", "B"):
        target = tmp_path / f"export-{name}" / "model.xml"
        cli("export", models[name], "--output", target, "--no-check", "-q")
        exports[name] = target
    cases = {
        "weights": (
            imagenet_state_dict(tmp_path / "golden.pth", 207),
            imagenet_state_dict(tmp_path / "teapot.pth", 849),
            lambda p: sources.from_ready("resnet18", weights_file=p),
            ("torch", "fp32"),
        ),
        "openvino IR": (exports["A"], exports["B"], sources.from_checkpoint, ("openvino", "fp32")),
    }
    for name, (first, second, make_source, (engine, precision)) in cases.items():
        source = make_source(first)
        conn = connect(cli.db)
        job_ids = job_rows.plan(conn, ids, source.identity, only_missing=False)
        conn.close()
        if engine == "openvino":
            swap(first.with_suffix(".bin"), second.with_suffix(".bin"), "renamed")  # the weights only
        else:
            swap(first, second, "renamed")
        cmd = [sys.executable, "-m", "dogbreed.worker", "--db", str(cli.db), "--source", source.to_json()]
        proc = subprocess.run(
            [*cmd, "--engine", engine, "--precision", precision], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, (name, proc.stderr)
        marks = ",".join("?" * len(job_ids))
        rows = cli.sql(f"SELECT status, error FROM jobs WHERE id IN ({marks})", job_ids)
        assert [r[0] for r in rows] == ["failed"] * 3 and all(CHANGED in r[1] for r in rows), (name, rows)
        assert cli.sql("SELECT COUNT(*) FROM predictions WHERE model_key = ?", (source.key,)) == [(0,)], name


# ---------------------------------------------------------------- the foreground


def test_a_model_replaced_between_choosing_and_loading_stores_nothing(home, tmp_path, models):
    """The foreground gap: the model is chosen (hashed), then loaded. Through the Python API the request carries
    the chosen source, so the swap lands exactly there: nothing is uploaded, queued or predicted."""
    from dogbreed import predict
    from dogbreed.errors import ModelChanged
    from dogbreed.models import sources

    db = home / "dogbreed.db"
    path = shutil.copy(models["A"], tmp_path / "model.pt")
    source = sources.from_checkpoint(path)
    swap(Path(path), models["B"], "rewritten")
    picture = write(tmp_path / "dog.jpg", jpeg_bytes())
    with pytest.raises(ModelChanged, match=CHANGED):
        predict.predict_images(db, predict.PredictRequest(paths=[str(picture)], source=source, workers=0))
    import sqlite3

    conn = sqlite3.connect(db)
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("images", "jobs", "predictions")]
    conn.close()
    assert counts == [0, 0, 0]


def test_spawned_workers_that_reload_a_swapped_checkpoint_fail_their_jobs(cli, home, tmp_path, models, gate):
    """Workers that load the model themselves (spawned: more than one thread each) load it again when the pool is
    restarted after a worker died. Held after the first recorded batch, the file becomes B and a worker is killed:
    the restarted workers find B, and the jobs left fail instead of being recorded as A's."""
    folder = tmp_path / "many"
    for i in range(24):
        write(folder / f"{i:02d}.jpg", jpeg_bytes(seed=300 + i))
    cli("upload", folder, "-q")
    path = shutil.copy(models["A"], tmp_path / "model.pt")
    key_a = sha(Path(path))
    cmd = dogbreed_cmd("--db", cli.db, "predict", "--all", "-c", path, "-w", "2", "--threads", "2", "-b", "2", "-q")
    proc = gate.start(cmd, env={**os.environ, "DOGBREED_HOME": str(home)})
    gate.wait(proc)
    swap(Path(path), models["B"], "renamed")
    workers = _pool_workers(proc.pid)
    assert workers, "no pool worker to kill"
    os.kill(workers[0], signal.SIGKILL)
    gate.open()
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in out + err, err
    recorded = predictions(cli)
    assert recorded and all(row == (key_a, A_BREED.wnid) for row in recorded), recorded  # A's, and A's alone
    failed = cli.sql("SELECT error FROM jobs WHERE status = 'failed'")
    assert failed and all(CHANGED in r[0] for r in failed), failed
    assert len(recorded) + len(failed) == 24 and proc.returncode == 1


def _pool_workers(pid: int) -> list[int]:
    """The pool's worker processes (children of ``pid`` other than multiprocessing's resource tracker)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if parent == pid and b"resource_tracker" not in cmdline:
            kids.append(int(entry))
    return kids


# ---------------------------------------------------------------- conversions and exports read once


def test_a_conversion_is_made_only_from_the_chosen_bytes_and_an_export_is_keyed_by_what_it_loaded(
    home, tmp_path, models
):
    """The OpenVINO engine converts a checkpoint into its cache: a checkpoint replaced after it was chosen is
    refused before anything is cached (a cached B under A's key would poison every later run). An export is
    hashed from the bytes it is read from: replaced after being chosen, it is refused too."""
    from dogbreed import engines
    from dogbreed.engines import Choice
    from dogbreed.engines.convert import cache_dir
    from dogbreed.errors import ModelChanged
    from dogbreed.models import sources

    path = shutil.copy(models["A"], tmp_path / "model.pt")
    source = sources.from_checkpoint(path)
    swap(Path(path), models["B"], "renamed")
    with pytest.raises(ModelChanged, match=CHANGED):
        engines.load_engine(source, Choice("openvino", "fp32", "cpu"))
    assert not cache_dir().exists() or not [p for p in cache_dir().iterdir() if not p.name.startswith(".")]
    swap(Path(path), models["A"], "renamed")
    engine = engines.load_engine(source, Choice("openvino", "fp32", "cpu"))  # A again: converted, cached, loaded
    assert engine.meta.source_key == source.key == sha(models["A"])
    xml = next(cache_dir().glob("*/model.xml"))
    exported = tmp_path / "copy.xml"
    shutil.copy(xml, exported)
    shutil.copy(xml.with_suffix(".bin"), exported.with_suffix(".bin"))
    chosen = sources.from_checkpoint(exported)
    with open(exported.with_suffix(".bin"), "r+b") as fh:  # one weight changed in place, same size
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelChanged, match=CHANGED):
        engines.load_engine(chosen, Choice("openvino", "fp32", "cpu"))
