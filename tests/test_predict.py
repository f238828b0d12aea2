from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest


def test_probabilities_cover_all_breeds_and_sum_to_one(cli, uploaded, checkpoint):
    ids = uploaded(3, breed="beagle")
    out = cli.json("predict", "--id", ids[0], "--id", ids[2], "--checkpoint", checkpoint, "--top-k", 5)
    assert out["done"] == 2 and out["failed"] == 0
    assert [r["image_id"] for r in out["results"]] == [ids[0], ids[2]]
    for (probs,) in cli.sql("SELECT probs FROM predictions"):
        p = json.loads(probs)
        assert len(p) == 120
        assert abs(sum(p.values()) - 1.0) < 1e-4
    top1, prob = cli.sql("SELECT top1, top1_prob FROM predictions WHERE image_id = ?", (ids[0],))[0]
    shown = cli.json("show", ids[0])["predictions"][0]
    assert shown["top1"] == top1 and shown["top"][0]["probability"] == pytest.approx(prob, abs=1e-6)
    assert len(cli.json("show", ids[0], "--all-breeds")["predictions"][0]["top"]) == 120
    old = cli("show", ids[0], "--all", "--json")  # the old spelling still works, with a note
    assert len(json.loads(old.stdout)["predictions"][0]["top"]) == 120 and "Deprecated" in old.stderr
    listed = {r["id"]: r for r in cli.json("list")}
    assert listed[ids[0]]["top1"] == top1 and listed[ids[1]]["top1"] is None


def test_unavailable_device_falls_back_to_cpu_with_a_warning(cli, uploaded, checkpoint):
    ids = uploaded(1)
    result = cli("predict", "--id", ids[0], "--device", "mps", "--checkpoint", checkpoint)
    assert "MPS is not available; using cpu" in result.output
    assert cli.sql("SELECT device FROM predictions") == [("cpu",)]
    assert cli.sql("SELECT device, status FROM jobs") == [("cpu", "done")]


def test_corrupt_stored_image_fails_alone(cli, uploaded, checkpoint):
    ids = uploaded(5)
    import sqlite3

    conn = sqlite3.connect(cli.db)
    conn.execute("UPDATE image_blobs SET data = ? WHERE image_id = ?", (b"\xff\xd8garbage", ids[2]))
    conn.commit()
    conn.close()
    out = cli.json("predict", "--all", "--checkpoint", checkpoint, expect=1)
    assert out["done"] == 4 and out["failed"] == 1
    failed = [r for r in out["results"] if r["status"] == "failed"]
    assert failed[0]["image_id"] == ids[2] and "not a recognised image" in failed[0]["error"]
    assert cli.json("tasks", "--status", "failed")[0]["image_id"] == ids[2]
    assert "no running jobs" in cli("tasks", "--status", "running").output


def test_pending_skips_done_images_and_all_replaces_them(cli, uploaded, checkpoint):
    ids = uploaded(3)
    cli("predict", "--id", ids[0], "--checkpoint", checkpoint)
    assert cli.json("predict", "--pending", "--checkpoint", checkpoint)["done"] == 2
    assert cli.json("predict", "--pending", "--checkpoint", checkpoint)["done"] == 0
    assert cli.json("predict", "--all", "--checkpoint", checkpoint, "--workers", 1)["done"] == 3
    assert cli.sql("SELECT COUNT(*) FROM predictions")[0][0] == 3  # one per image per checkpoint


def test_predict_errors_are_one_line(cli, uploaded, checkpoint, tmp_path):
    ids = uploaded(1)
    assert "no image with id 999" in cli("predict", "--id", 999, "--checkpoint", checkpoint, expect=1).output
    assert "does not exist" in cli("predict", "--id", ids[0], "--checkpoint", tmp_path / "nope.pt", expect=1).output
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert "is a text file, not a torch file" in cli("predict", "--id", ids[0], "--checkpoint", bogus, expect=1).output
    assert "say which images" in cli("predict", "--checkpoint", checkpoint, expect=1).output
    both = cli("predict", "--id", ids[0], "--all", "--checkpoint", checkpoint, expect=1).output
    assert "choose one of" in both
    assert cli.sql("SELECT COUNT(*) FROM jobs")[0][0] == 0  # nothing was queued by the refused commands


def _predict_proc(db, checkpoint, *extra, env=None):
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "dogbreed", "--db", str(db), "predict", "--checkpoint", str(checkpoint)]
    return subprocess.Popen(
        [*args, *map(str, extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for(cli, sql, predicate, timeout=300):
    """Poll the store until ``predicate`` holds (``timeout`` only bounds a hang, generously for a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cli.sql(sql)[0][0]
            if predicate(value):
                return value
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting on {sql}")


def _children(pid: int) -> list[int]:
    from pathlib import Path

    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory):
    from tests.conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("slow") / "slow.pt", image_size=160)


def test_run_killed_with_sigkill_is_finished_by_the_next_run(cli, uploaded, slow_checkpoint, gate):
    n = 32  # 8 batches: the run is held after the first, so its size need not outlast a timer
    uploaded(n, size=(200, 160))
    proc = _predict_proc(cli.db, slow_checkpoint, "--all", "--batch-size", 4, "--workers", 1, env=gate.env())
    gate.wait(proc)  # held right after recording its first batch, with its second batch claimed
    done = cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0]
    assert done >= 4
    workers = _children(proc.pid)
    assert workers, "the pool's workers should be running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gate.open()
    deadline = time.monotonic() + 60  # the workers check on their parent every second: this only bounds a hang
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "orphaned workers outlived their killed parent"
    remaining = cli.sql("SELECT COUNT(*) FROM jobs WHERE status != 'done'")[0][0]
    assert remaining > 0, f"the run finished before it was killed ({done} done)"
    assert cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'running'")[0][0] > 0

    out = cli.json("predict", "--pending", "--checkpoint", slow_checkpoint, "--batch-size", 32)
    assert out["failed"] == 0
    assert cli.sql("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM predictions") == [(n, n)]
    assert cli.sql("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM jobs") == [(n, n)]
    assert cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0] == n
    assert cli.sql("PRAGMA integrity_check")[0][0] == "ok"


def test_two_concurrent_runs_share_the_work_without_duplicates_or_lock_errors(cli, uploaded, checkpoint, gate):
    """Overlap made certain: the first run is held with batches claimed while the second starts and records at
    least one (so each does a share); then both run on, whatever the timing."""
    n = 120
    uploaded(n)
    first = _predict_proc(cli.db, checkpoint, "--pending", "--batch-size", 4, "--workers", 1, env=gate.env())
    gate.wait(first)
    held = cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0]
    second = _predict_proc(cli.db, checkpoint, "--pending", "--batch-size", 4, "--workers", 1)
    until = time.monotonic() + 300  # only a bound on a hang: the second run must record while the first holds
    while cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0] == held and second.poll() is None:
        assert time.monotonic() < until, "the second run recorded nothing"
        time.sleep(0.02)
    assert cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0] > held, "the second run did nothing"
    gate.open()
    procs = [first, second]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
        assert "locked" not in stderr.lower() and "Traceback" not in stderr
    assert cli.sql("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM predictions") == [(n, n)]
    assert cli.sql("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM jobs") == [(n, n)]
    assert cli.sql("SELECT COUNT(*) FROM jobs WHERE status = 'done'")[0][0] == n


def test_background_queues_jobs_and_a_detached_worker_runs_them(cli, uploaded, checkpoint):
    ids = uploaded(4)
    out = cli.json("predict", "--all", "--background", "--checkpoint", checkpoint)
    assert len(out["job_ids"]) == 4 and out["pid"]
    _wait_for(cli, "SELECT COUNT(*) FROM jobs WHERE status = 'done'", lambda v: v == 4)
    job = cli.json("tasks", out["job_ids"][0])
    assert job["status"] == "done" and job["image_id"] == ids[0]
    assert "no job with id 999" in cli("tasks", 999, expect=1).output


def test_view_writes_a_png_of_the_expected_size(cli, uploaded, checkpoint, tmp_path, golden_weights):
    from PIL import Image

    from dogbreed.viz import VIEW_DPI, VIEW_SIZE_INCHES

    ids = uploaded(1, breed="beagle")
    assert "no prediction yet" in cli("view", ids[0], expect=1).output
    cli("predict", "--id", ids[0], "--checkpoint", checkpoint)
    target = tmp_path / "out" / "v.png"
    result = cli("view", ids[0], "--output", target, "--top-k", 5)
    assert str(target) in result.output
    with Image.open(target) as img:
        assert img.format == "PNG"
        assert img.size == (VIEW_SIZE_INCHES[0] * VIEW_DPI, VIEW_SIZE_INCHES[1] * VIEW_DPI)
    assert "no image with id 77" in cli("view", 77, expect=1).output
    cli("view", ids[0], "--output", tmp_path / "v.jpg")
    with Image.open(tmp_path / "v.jpg") as img:
        assert img.format == "JPEG"  # the format the name asks for
    assert "figures are written as .png, .jpg" in cli("view", ids[0], "-o", tmp_path / "v.gif", expect=1).stderr
    other = cli("view", ids[0], "--model", "resnet18", "--weights", golden_weights, expect=1).stderr
    assert f"run 'dogbreed predict --id {ids[0]} --model resnet18 --weights {golden_weights.resolve()}' first" in other


def test_a_worker_loads_the_model_once_not_per_batch(cli, uploaded, checkpoint, monkeypatch):
    from dogbreed import engines, predict
    from dogbreed.models import sources
    from dogbreed.store import jobs, open_store

    ids = uploaded(6)
    conn = open_store(cli.db)
    source = sources.from_checkpoint(checkpoint)
    choice = engines.choose(source, "cpu")
    job_ids = jobs.plan(conn, None, source.identity, only_missing=False)
    predict.init_worker(source, choice, str(cli.db), 1)  # what the pool initializer runs once
    try:

        def no_reload(*a, **k):
            raise AssertionError("model loaded again")

        monkeypatch.setattr(engines, "load_engine", no_reload)
        monkeypatch.setattr(predict, "load_engine", no_reload)
        for chunk in (job_ids[:3], job_ids[3:]):
            results = predict.run_batch(jobs.claim(conn, chunk, "cpu", "torch", "fp32"))
            assert [r.error for r in results] == [None] * 3
    finally:
        predict._WORKER.clear()
    assert sorted(r.image_id for r in results) == ids[3:]


def test_a_checkpoint_over_a_few_breeds_still_stores_all_120_probabilities(cli, uploaded, tmp_path):
    from tests.conftest import make_checkpoint

    few = [["n02085620", "Chihuahua"], ["n02088364", "Beagle"], ["n02099601", "Golden retriever"]]
    ckpt = make_checkpoint(tmp_path / "three.pt", classes=few)
    ids = uploaded(2)
    cli("predict", "--all", "--checkpoint", ckpt)
    probs = json.loads(cli.sql("SELECT probs FROM predictions WHERE image_id = ?", (ids[0],))[0][0])
    assert len(probs) == 120 and abs(sum(probs.values()) - 1) < 1e-4
    assert {w for w, p in probs.items() if p > 0} <= {c[0] for c in few}


def test_view_title_colour_says_whether_the_prediction_matches():
    from dogbreed.viz import title_color

    assert title_color("n02088364", "n02088364") == "green"
    assert title_color("n02088364", "n02099601") == "red"
    assert title_color("n02088364", None) == "black"


def test_jobs_claimed_when_the_pool_is_already_broken_go_back_to_the_caller(cli, uploaded, checkpoint):
    """A worker that dies between two batches breaks the pool before the next submit: the jobs just claimed must
    be handed back (released and retried), not left 'running'."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from dogbreed import engines, predict
    from dogbreed.models import sources
    from dogbreed.store import jobs, open_store

    uploaded(4)
    conn = open_store(cli.db)
    source = sources.from_checkpoint(checkpoint)
    choice = engines.Choice("torch", "fp32", "cpu")
    job_ids = jobs.plan(conn, None, source.identity, only_missing=False)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pid = pool.submit(os.getpid).result()
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:  # wait until the pool knows its worker is gone
        try:
            pool.submit(os.getpid).result()
        except BrokenProcessPool:
            break
    in_flight: dict = {}
    with pytest.raises(BrokenProcessPool):
        predict._drain(pool, conn, choice, deque([job_ids[:2], job_ids[2:]]), in_flight, 2, lambda r: None)
    held = sorted(j for claimed in in_flight.values() for j, _ in claimed)
    running = sorted(r[0] for r in conn.execute("SELECT id FROM jobs WHERE status = 'running'"))
    assert held and held == running  # every claimed job is known to the caller, which requeues it
    pool.shutdown(wait=False)
