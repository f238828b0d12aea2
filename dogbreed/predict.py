"""Prediction jobs in a local process pool.

The parent plans jobs in the store, claims them a batch at a time and is the ONE writer of results. Each
worker loads the model once (pool initializer), limits its torch threads so workers do not oversubscribe the
cores, reads its batch's bytes straight from the store (read-only, WAL) and returns probabilities. Memory stays
flat whatever the number of images: only a few batches are in flight at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.store import jobs as job_rows

DEFAULT_BATCH = 16


@dataclass
class PredictOutcome:
    job_ids: list[int]
    done: int = 0
    failed: int = 0
    device: str = "cpu"
    seconds: float = 0.0  # the whole run
    load_seconds: float = 0.0  # of which: loading the model before the first batch (fork and in-process modes)


def default_checkpoint(conn: sqlite3.Connection) -> Path:
    """The best checkpoint of the newest finished training run whose file still exists."""
    rows = conn.execute(
        "SELECT id, checkpoint_path FROM runs WHERE status = 'finished' AND checkpoint_path IS NOT NULL "
        "ORDER BY finished_at DESC, id DESC"
    ).fetchall()
    for row in rows:
        if Path(row["checkpoint_path"]).is_file():
            return Path(row["checkpoint_path"])
    raise DogbreedError("no trained model yet: train one with 'dogbreed train' or pass --checkpoint PATH")


def plan_jobs(
    conn: sqlite3.Connection,
    checkpoint: Path,
    *,
    image_ids: list[int] | None = None,
    every: bool = False,
    pending: bool = False,
) -> tuple[list[int], str]:
    """Write the jobs for this request to the store before any work starts; returns (job ids, checkpoint sha)."""
    from dogbreed.model import file_sha256, read_checkpoint

    if sum(map(bool, (image_ids, every, pending))) > 1:
        raise DogbreedError("choose one of --id, --all and --pending")
    read_checkpoint(checkpoint)  # a clear error now beats one per worker later
    sha = file_sha256(checkpoint)
    path = str(checkpoint.resolve())
    if image_ids:
        from dogbreed.store.images import existing_ids

        missing = sorted(set(image_ids) - existing_ids(conn, image_ids))
        if missing:
            raise DogbreedError(f"no image with id {', '.join(map(str, missing))}; see 'dogbreed list'")
        ids = list(dict.fromkeys(image_ids))
        return job_rows.plan(conn, ids, sha, path, only_missing=False), sha
    if not (every or pending):
        raise DogbreedError("say which images: --id N (repeatable), --all or --pending")
    return job_rows.plan(conn, None, sha, path, only_missing=pending), sha


def queued_jobs(conn: sqlite3.Connection, checkpoint: Path) -> tuple[list[int], str]:
    """The jobs already queued for this checkpoint (what a background worker runs); (job ids, checkpoint sha)."""
    from dogbreed.model import file_sha256

    sha = file_sha256(checkpoint)
    return job_rows.queued_ids(conn, sha), sha


# ---------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {}
_PRELOADED: dict[str, Any] = {}  # a model loaded by the parent before forking; workers inherit it copy-on-write


def _load_model(checkpoint: str, device: str) -> dict[str, Any]:
    import torch

    from dogbreed.model import load_checkpoint, prepare_for_inference

    dev = torch.device(device)
    model, meta = load_checkpoint(checkpoint, dev)
    return {"key": (checkpoint, device), "model": prepare_for_inference(model, dev), "meta": meta, "device": dev}


def _exit_with_parent(parent_pid: int, every: float = 1.0) -> None:
    """A worker whose parent was killed (kill -9 leaves no time to shut the pool down) ends itself instead of
    waiting forever on a queue nobody writes to."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="dogbreed-parent-watch", daemon=True).start()


def init_worker(checkpoint: str, device: str, db_path: str, threads: int, parent_pid: int | None = None) -> None:
    """Pool initializer: load the model once per worker process (or adopt the one inherited from the parent)."""
    import torch

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    torch.set_num_threads(max(1, threads))
    loaded = _PRELOADED if _PRELOADED.get("key") == (checkpoint, device) else _load_model(checkpoint, device)
    _WORKER.update(loaded)
    from dogbreed.store import connect

    _WORKER["conn"] = connect(db_path, readonly=True)


def _load_blobs(conn: sqlite3.Connection, image_ids: list[int]) -> dict[int, bytes]:
    marks = ",".join("?" * len(image_ids))
    rows = conn.execute(f"SELECT image_id, data FROM image_blobs WHERE image_id IN ({marks})", image_ids)
    return {r[0]: r[1] for r in rows}


def run_batch(claimed: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Predict one batch of (job id, image id); an image that cannot be decoded fails alone."""
    import torch

    from dogbreed.imaging import preprocess
    from dogbreed.model import predict_probs

    model, meta, device, conn = _WORKER["model"], _WORKER["meta"], _WORKER["device"], _WORKER["conn"]
    start = time.perf_counter()
    blobs = _load_blobs(conn, [image_id for _, image_id in claimed])
    results, tensors, ok = [], [], []
    for job_id, image_id in claimed:
        data = blobs.get(image_id)
        try:
            if data is None:
                raise DogbreedError("image was deleted")
            tensors.append(preprocess(data, meta.image_size, tuple(meta.mean), tuple(meta.std)))
            ok.append((job_id, image_id))
        except Exception as exc:  # one bad image never sinks the batch
            results.append(_failure(job_id, image_id, exc))
    if tensors:
        probs = predict_probs(model, torch.stack(tensors), device).numpy()
        wnids = meta.wnids
        for (job_id, image_id), row in zip(ok, probs):
            top = int(row.argmax())
            results.append(
                {
                    "job_id": job_id,
                    "image_id": image_id,
                    "error": None,
                    "top1": wnids[top],
                    "top1_prob": float(row[top]),
                    "probs": all_breed_probs(wnids, row),
                }
            )
    per_image = (time.perf_counter() - start) / max(1, len(claimed))
    for r in results:
        r["seconds"] = per_image
    return results


def all_breed_probs(wnids: list[str], row: Any) -> dict[str, float]:
    """Probabilities over all 120 breeds in canonical order; breeds the checkpoint was not trained on get 0."""
    from dogbreed.breeds import BREEDS

    known = {w: round(float(p), 7) for w, p in zip(wnids, row)}
    return {b.wnid: known.get(b.wnid, 0.0) for b in BREEDS}


def _failure(job_id: int, image_id: int, exc: Exception) -> dict[str, Any]:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"job_id": job_id, "image_id": image_id, "error": reason}


# ---------------------------------------------------------------- parent side


def plan_workers(
    workers: int | None, threads: int | None, n_jobs: int, batch_size: int, device: str = "cpu"
) -> tuple[int, int]:
    """(worker processes, torch threads each); 0 processes means run in this process.

    Default on CPU: one single-threaded worker per core. Two 1-thread processes forward ResNet18 about 8% faster
    than one 2-thread process here, and each decodes its own images while the other computes. A single batch
    runs in-process: starting a pool would cost more than the work. An accelerator gets one worker.
    """
    cores = os.cpu_count() or 1
    if workers is None:
        if n_jobs <= batch_size:
            workers = 0
        elif device != "cpu":
            workers = 1
        else:
            workers = min(cores, -(-n_jobs // batch_size))
    per = threads if threads and threads > 0 else max(1, cores // max(1, workers))
    return workers, per


class _InlineExecutor:
    """The executor interface, run synchronously in this process (``--workers 0``)."""

    def __init__(self, initializer: Callable[..., None], initargs: tuple):
        initializer(*initargs)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        _WORKER.clear()
        _PRELOADED.clear()


def _executor(n_workers: int, checkpoint: str, device: str, db_path: str, threads: int) -> Any:
    if n_workers == 0:
        return _InlineExecutor(init_worker, (checkpoint, device, db_path, threads))
    initargs = (checkpoint, device, db_path, threads, os.getpid())
    import multiprocessing
    import sys

    # Forking single-threaded CPU workers from a parent that already holds the model starts them in milliseconds
    # and shares the weights' memory. CUDA and MPS cannot cross a fork, macOS forbids it, and OpenMP thread pools
    # are only safe after a fork when each worker keeps to one thread: spawn in those cases.
    if device == "cpu" and threads == 1 and sys.platform.startswith("linux"):
        _PRELOADED.clear()
        _PRELOADED.update(_load_model(checkpoint, device))
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=init_worker, initargs=initargs)


def run_jobs(
    db_path: Path,
    checkpoint: Path,
    checkpoint_sha256: str,
    job_ids: list[int],
    *,
    device: str = "cpu",
    workers: int | None = None,
    threads: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> PredictOutcome:
    """Run the given jobs to completion (or failure) and record every outcome."""
    from dogbreed.store import connect

    outcome = PredictOutcome(job_ids=job_ids, device=device)
    if not job_ids:
        return outcome
    conn = connect(db_path)
    n_workers, n_threads = plan_workers(workers, threads, len(job_ids), batch_size, device)
    start = time.perf_counter()
    chunks = iter([job_ids[i : i + batch_size] for i in range(0, len(job_ids), batch_size)])
    in_flight: dict[Future, list[int]] = {}
    path = str(checkpoint.resolve())

    def record(results: list[dict[str, Any]]) -> None:
        job_rows.finish(conn, results, path, checkpoint_sha256, device)
        for r in results:
            if r["error"] is None:
                outcome.done += 1
            else:
                outcome.failed += 1
        if on_progress:
            on_progress(outcome.done, outcome.failed)

    pool = _executor(n_workers, str(checkpoint), device, str(db_path), n_threads)
    outcome.load_seconds = time.perf_counter() - start
    try:
        while True:
            while len(in_flight) < max(1, n_workers) * 2:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                claimed = job_rows.claim(conn, chunk, device)
                if claimed:
                    in_flight[pool.submit(run_batch, claimed)] = [job_id for job_id, _ in claimed]
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                ids = in_flight.pop(fut)
                try:
                    results = fut.result()
                except Exception as exc:  # a worker died or could not load the model: these jobs fail
                    results = [_failure(job_id, 0, exc) | {"seconds": 0.0} for job_id in ids]
                record(results)
    except BaseException:
        job_rows.release(conn, [j for ids in in_flight.values() for j in ids])
        pool.shutdown(wait=False, cancel_futures=True)
        conn.close()
        raise
    pool.shutdown()
    conn.close()
    outcome.seconds = time.perf_counter() - start
    return outcome


def start_background(
    db_path: Path, checkpoint: Path, device: str, workers: int | None, batch_size: int, log_dir: Path
) -> tuple[int, Path]:
    """Start a detached `dogbreed predict --queued` that runs this checkpoint's queued jobs; (pid, log file)."""
    import subprocess
    import sys
    from datetime import datetime

    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"predict-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    args = [
        sys.executable,
        "-m",
        "dogbreed",
        "--db",
        str(db_path),
        "predict",
        "--queued",
        "--checkpoint",
        str(checkpoint),
        "--device",
        device,
        "--batch-size",
        str(batch_size),
    ]
    if workers is not None:
        args += ["--workers", str(workers)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid, log
