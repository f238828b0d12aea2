"""The predict use case: a ``PredictRequest`` in, a ``PredictOutcome`` out.

Jobs are written to the store before any work starts. The parent claims them a batch at a time and is the ONE
writer of results; each worker process loads the engine once, reads its batch's bytes straight from the store
(read-only, WAL), decodes and preprocesses them and returns scores. Memory stays flat whatever the number of
images: only a few batches are in flight. How many workers, how many threads each and whether they are forked
is the engine's call (``Engine.execution``). A worker that dies (the OOM killer, say) has its jobs requeued and
the pool is restarted once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.engines import Choice, Engine, Execution, choose_for, engine_class, load_engine, validate
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource
from dogbreed.pause import pause_point
from dogbreed.store import jobs as job_rows
from dogbreed.store.jobs import JobOutcome
from dogbreed.store.predictions import JobResult

PREDICT_BATCH = 16


@dataclass
class PredictRequest:
    """Which images (exactly one of: ``paths`` to store first, ``image_ids``, ``every``, ``pending``), which model
    (None: the default, see ``sources.resolve``) and how to run it."""

    paths: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    every: bool = False
    pending: bool = False
    source: ModelSource | None = None
    device: str = "auto"
    engine: str = "auto"
    precision: str = "auto"
    workers: int | None = None
    threads: int | None = None
    batch_size: int = PREDICT_BATCH
    background: bool = False


@dataclass
class PredictOutcome:
    source: ModelSource
    choice: Choice
    job_ids: list[int] = field(default_factory=list)
    uploads: list[Any] = field(default_factory=list)  # ingest.UploadResult, for PATH requests
    results: list[JobResult] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    dropped: int = 0  # results for images deleted while they were being predicted
    seconds: float = 0.0  # the whole run
    load_seconds: float = 0.0  # of which: loading the model before the first batch
    background_pid: int | None = None
    log: Path | None = None
    store_empty: bool = False  # --all/--pending on a store without images
    measured: str | None = None  # the held-out images a ready model's checks were just measured on (once)
    measure_error: str | None = None  # why that measurement failed (predict goes on at the checked choice)

    @property
    def rate(self) -> float:
        """Images per second once the model was loaded."""
        work = self.seconds - self.load_seconds
        return (self.done + self.failed) / work if work > 0 else 0.0


def _check_selection(request: PredictRequest) -> None:
    chosen = sum(map(bool, (request.paths, request.image_ids, request.every, request.pending)))
    if chosen > 1:
        raise DogbreedError("choose one of: PATH..., --id, --all, --pending")
    if chosen == 0:
        raise DogbreedError("say which images: PATH... (files to classify), --id N, --all or --pending")


def predict_images(
    db_path: Path,
    request: PredictRequest,
    on_progress: Callable[[int, int, int], None] | None = None,
    on_start: Callable[[PredictOutcome], None] | None = None,
    on_check: Callable[[str, int, int], None] | None = None,
) -> PredictOutcome:
    """Plan, run and record one predict request. ``on_start`` is called once the model and the jobs are known,
    ``on_progress(done, failed, total)`` after every batch, ``on_check(what, done, total)`` while a ready model's
    engine checks are measured (once, before its first predict at auto: ``checks.measure_once``)."""
    from dogbreed.models import sources
    from dogbreed.store import open_store, predictions
    from dogbreed.store.images import list_images

    _check_selection(request)
    conn = open_store(db_path)
    try:
        source = request.source or sources.resolve(conn)
        measured = _measure_first(conn, source, request, on_check)
        choice = choose_for(conn, source, request.device, request.engine, request.precision)
        outcome = PredictOutcome(source, choice)
        outcome.measured, outcome.measure_error = measured
        engine = None
        if not request.background:  # load now: a model that cannot be built fails before any job exists
            started = time.perf_counter()
            engine = _preload(source, choice)
            outcome.load_seconds = time.perf_counter() - started
        else:
            validate(source)
        ids = _target_ids(conn, request, outcome)
        outcome.store_empty = ids is None and not list_images(conn, limit=1)
        outcome.job_ids = _plan(conn, request, source, ids)
        if on_start:
            on_start(outcome)
        if request.background:
            if outcome.job_ids:
                outcome.background_pid, outcome.log = start_background(db_path, source, choice, request)
            return outcome
        started = time.perf_counter() - outcome.load_seconds
        run_jobs(conn, db_path, source, choice, outcome, request, engine, on_progress)
        outcome.seconds = time.perf_counter() - started
        outcome.results = predictions.for_jobs(conn, outcome.job_ids)
        return outcome
    finally:
        _PRELOADED.clear()
        conn.close()


def _measure_first(
    conn: sqlite3.Connection,
    source: ModelSource,
    request: PredictRequest,
    on_check: Callable[[str, int, int], None] | None,
) -> tuple[str | None, str | None]:
    """A ready model that auto would keep at torch fp32 only for want of a check is measured once, here, on
    held-out images (``checks.measure_once``): auto then picks the fastest engine that passed, now and later.
    (description of the images, None) when measured, (None, why) when the measurement failed, else (None, None)."""
    if request.background or request.engine != "auto" or request.precision != "auto" or source.kind != "ready":
        return None, None
    from dogbreed import checks
    from dogbreed.engines import resolve_device

    device, _ = resolve_device(request.device, "auto")
    if not checks.needs_check(conn, source, device):
        return None, None
    what = ""

    def started(images: checks.ImageSet) -> None:
        nonlocal what
        what = f"measuring the faster engines once, on {images.description}"
        if on_check:
            on_check(what, 0, len(images))

    def progress(done: int, total: int) -> None:
        if on_check:
            on_check(what, done, total)

    try:
        images = checks.measure_once(conn, source, device, started, progress)
    except DogbreedError as exc:
        return None, str(exc)
    return (images.description if images is not None else None), None


def _target_ids(conn: sqlite3.Connection, request: PredictRequest, outcome: PredictOutcome) -> list[int] | None:
    from dogbreed.store.images import existing_ids

    if request.paths:
        from dogbreed.ingest import expand_paths, upload

        files, refused = expand_paths(request.paths)
        outcome.uploads = refused + list(upload(conn, files))
        return list(dict.fromkeys(u.image_id for u in outcome.uploads if u.image_id is not None))
    if request.image_ids:
        missing = sorted(set(request.image_ids) - existing_ids(conn, request.image_ids))
        if missing:
            raise DogbreedError(f"no image with id {', '.join(map(str, missing))}; see 'dogbreed list'")
        return list(dict.fromkeys(request.image_ids))
    return None  # every image


def _plan(conn: sqlite3.Connection, request: PredictRequest, source: ModelSource, ids: list[int] | None) -> list[int]:
    if ids is not None and not ids:
        return []
    return job_rows.plan(conn, ids, source.identity, only_missing=request.pending)


# ---------------------------------------------------------------- worker side

_WORKER: dict[str, Any] = {}
_PRELOADED: dict[str, Any] = {}  # an engine loaded by the parent; forked workers inherit it copy-on-write


def _preload(source: ModelSource, choice: Choice) -> Engine:
    engine = load_engine(source, choice)
    _PRELOADED.update({"key": (source.key, choice), "engine": engine})
    return engine


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


def init_worker(source: ModelSource, choice: Choice, db_path: str, threads: int, parent_pid: int | None = None) -> None:
    """Pool initializer: load the engine once per worker process (or adopt the one inherited from the parent)."""
    from dogbreed.store import connect

    _WORKER.pop("error", None)
    if parent_pid is not None:  # a pool process
        from dogbreed.procs import default_stop_signals

        default_stop_signals()  # Ctrl-C is the parent's to handle; SIGTERM/SIGHUP end a worker quietly
        _exit_with_parent(parent_pid)
    if _PRELOADED.get("key") == (source.key, choice):
        engine = _PRELOADED["engine"]
    else:
        try:
            engine = load_engine(source, choice)
        except DogbreedError as exc:  # its file changed or broke since the jobs were planned: they fail, saying why
            _WORKER.update(error=f"the model could not be loaded: {exc}")
            return
    engine.set_threads(threads)
    _WORKER.update(engine=engine, conn=connect(db_path, readonly=True))


def worker_error() -> str | None:
    """Why this worker process holds no model (``init_worker`` could not load it), or None."""
    return _WORKER.get("error")


def breed_probs(classes: tuple[str, ...], row: Any) -> dict[str, float]:
    """Probabilities over all 120 Stanford breeds in canonical order (breeds the model was not trained on get 0),
    then the model's own breeds in its order."""
    from dogbreed.breeds import BREEDS, BY_WNID

    known = {w: float(p) for w, p in zip(classes, row)}
    probs = {b.wnid: known.get(b.wnid, 0.0) for b in BREEDS}
    probs.update((w, p) for w, p in known.items() if w not in BY_WNID)
    return probs


def _failure(job_id: int, image_id: int, exc: BaseException) -> JobOutcome:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JobOutcome(job_id, image_id, error=reason)


def run_batch(claimed: list[tuple[int, int]]) -> list[JobOutcome]:
    """Predict one batch of (job id, image id); an image that cannot be decoded fails alone."""
    import numpy as np

    from dogbreed.imaging import preprocess
    from dogbreed.store.images import get_blobs

    if "error" in _WORKER:  # this worker could not load the model: every batch it is given fails with the reason
        raise DogbreedError(_WORKER["error"])
    engine: Engine = _WORKER["engine"]
    start = time.perf_counter()
    blobs = get_blobs(_WORKER["conn"], [image_id for _, image_id in claimed])
    outcomes, arrays, ok = [], [], []
    for job_id, image_id in claimed:
        data = blobs.get(image_id)
        try:
            if data is None:
                raise DogbreedError("image was deleted")
            arrays.append(preprocess(data, engine.spec.preprocessing))
            ok.append((job_id, image_id))
        except Exception as exc:  # one bad image never sinks the batch
            outcomes.append(_failure(job_id, image_id, exc))
    per_image = 0.0
    if arrays:
        scores = engine.predict(np.stack(arrays))
        per_image = (time.perf_counter() - start) / len(claimed)
        for i, (job_id, image_id) in enumerate(ok):
            dog = float(scores.dog[i]) if scores.dog is not None else None
            probs = breed_probs(engine.spec.classes, scores.probs[i])
            outcomes.append(JobOutcome(job_id, image_id, None, probs, dog, per_image, engine.spec.names or None))
    return [o if o.seconds else JobOutcome(o.job_id, o.image_id, o.error, seconds=per_image) for o in outcomes]


# ---------------------------------------------------------------- parent side


class _InlineExecutor:
    """The executor interface, run synchronously in this process."""

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
        conn = _WORKER.pop("conn", None)
        if conn is not None:
            conn.close()
        _WORKER.clear()


def _executor(plan: Execution, source: ModelSource, choice: Choice, db_path: Path) -> Any:
    if plan.workers == 0:
        return _InlineExecutor(init_worker, (source, choice, str(db_path), plan.threads))
    import multiprocessing

    if not plan.fork:
        _start_resource_tracker()
    ctx = multiprocessing.get_context("fork" if plan.fork else "spawn")
    initargs = (source, choice, str(db_path), plan.threads, os.getpid())
    return ProcessPoolExecutor(plan.workers, mp_context=ctx, initializer=init_worker, initargs=initargs)


def _close_pool(pool: Any) -> None:
    """Cancel what has not started and wait for the pool's manager thread to end. Python 3.11 races at exit: its
    atexit hook wakes every pool's manager thread without a lock while that thread may be closing the wake-up pipe,
    printing an "Exception ignored ... Bad file descriptor" traceback after a stop message. The hook joins those
    threads anyway, so joining here first makes the exit no later (the stop line now follows the batches in flight
    instead of preceding them) and leaves the hook no pipe to race for."""
    pool.shutdown(wait=True, cancel_futures=True)


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker (a spawned pool's semaphores are registered with it) ignores Ctrl-C and
    SIGTERM but dies of SIGHUP, which a closed terminal sends to the whole group; relaunched, it then prints a
    traceback per semaphore. Started with the stop signals blocked, it keeps SIGHUP blocked for its life (a
    signal mask survives exec; it unblocks only the two it ignores). A signal meanwhile reaches us on release."""
    from multiprocessing import resource_tracker

    from dogbreed.procs import HeldSignals

    with HeldSignals():
        resource_tracker.ensure_running()


def run_jobs(
    conn: sqlite3.Connection,
    db_path: Path,
    source: ModelSource,
    choice: Choice,
    outcome: PredictOutcome,
    request: PredictRequest,
    engine: Engine | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> None:
    """Run ``outcome.job_ids`` to completion (or failure) and record every result in ``outcome``."""
    job_ids = outcome.job_ids
    if not job_ids:
        return
    batch = request.batch_size
    plan = engine_class(choice.engine).execution(choice.device, len(job_ids), batch, request.workers, request.threads)
    if engine is not None and not plan.fork and plan.workers > 0:
        _PRELOADED.clear()  # spawned workers load their own; do not hold a second copy here meanwhile
    todo = deque(job_ids[i : i + batch] for i in range(0, len(job_ids), batch))

    def record(results: list[JobOutcome]) -> None:
        done, failed, dropped = job_rows.finish(
            conn, results, source.identity, choice.device, choice.engine, choice.precision
        )
        outcome.done += done
        outcome.failed += failed
        outcome.dropped += dropped
        if on_progress:
            on_progress(outcome.done, outcome.failed, len(job_ids))
        pause_point()  # tests only (DOGBREED_PAUSE_WHILE): act while the run is certainly under way

    for attempt in range(2):  # a pool whose worker died is restarted once, its jobs requeued first
        in_flight: dict[Future, list[tuple[int, int]]] = {}
        pool = _executor(plan, source, choice, db_path)
        try:
            _drain(pool, conn, choice, todo, in_flight, max(1, plan.workers) * 2, record)
            pool.shutdown()
            return
        except BrokenProcessPool:
            held = [job_id for claimed in in_flight.values() for job_id, _ in claimed]
            job_rows.release(conn, held)
            _close_pool(pool)
            todo.appendleft(held)
            if attempt == 1:
                left = sum(len(chunk) for chunk in todo)
                raise DogbreedError(
                    f"a prediction worker died twice (out of memory?); {left} job(s) are back in the queue: run "
                    "'dogbreed predict --pending' to finish them, perhaps with --workers 1 or a smaller --batch-size"
                ) from None
        except BaseException:  # Ctrl-C can land between a claim and its bookkeeping: hand back every claimed job
            job_rows.release(conn, job_ids)
            _close_pool(pool)
            raise


def _drain(
    pool: Any, conn: sqlite3.Connection, choice: Choice, todo: deque, in_flight: dict, depth: int, record
) -> None:
    """Keep ``depth`` batches in flight until every chunk in ``todo`` is claimed and recorded."""
    while todo or in_flight:
        while todo and len(in_flight) < depth:
            claimed = job_rows.claim(conn, todo.popleft(), choice.device, choice.engine, choice.precision)
            if claimed:
                try:
                    fut = pool.submit(run_batch, claimed)
                except BrokenProcessPool as exc:  # a worker died between two batches: these jobs go back too
                    fut = Future()
                    fut.set_exception(exc)
                in_flight[fut] = claimed
        if not in_flight:
            return
        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for fut in finished:
            try:
                results = fut.result()
            except BrokenProcessPool:  # the batch stays in in_flight: the caller requeues it
                raise
            except Exception as exc:  # the engine failed on this batch: its jobs fail with the reason
                results = [_failure(job_id, image_id, exc) for job_id, image_id in in_flight[fut]]
            del in_flight[fut]
            record(results)


def start_background(db_path: Path, source: ModelSource, choice: Choice, request: PredictRequest) -> tuple[int, Path]:
    """Start a detached worker (``python -m dogbreed.worker``) that runs this model's queued jobs; (pid, log)."""
    import subprocess
    import sys
    from datetime import datetime

    from dogbreed.config import resolve_paths

    log_dir = resolve_paths(db=db_path).logs
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"predict-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    args = [
        sys.executable,
        "-m",
        "dogbreed.worker",
        "--db",
        str(db_path),
        "--source",
        source.to_json(),
        "--device",
        choice.device,
        "--engine",
        choice.engine,
        "--precision",
        choice.precision,
        "--batch-size",
        str(request.batch_size),
    ]
    if request.workers is not None:
        args += ["--workers", str(request.workers)]
    if request.threads is not None:
        args += ["--threads", str(request.threads)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid, log
