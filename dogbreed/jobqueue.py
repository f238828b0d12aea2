"""A long-lived prediction service over the store's job queue: what `dogbreed serve` runs behind its handlers.

``Supervisor`` starts a pool of worker processes that load the model ONCE each (the same ``predict.init_worker``
and ``predict.run_batch`` that `dogbreed predict` uses) and one writer thread, the only thing in the process that
claims jobs and records results (as predict's parent does). Callers queue jobs in the store (``store.jobs``), hand
their ids to ``submit`` and get a future that the writer thread settles once every one of them is finished, so a
request handler waits on an event, never by polling.

Jobs from concurrent callers are batched together: while the workers are busy, newly submitted ids accumulate and
the next free slot claims up to ``batch_size`` of them at once. A job that another process claimed first (a
second server, a `dogbreed predict` on the same store) is watched in the store by the writer thread until it is
finished, and taken over if that process hands it back or dies. A worker that dies has its batch handed back and
the pool is restarted. ``stop`` hands every claimed, unfinished job back to the queue (``jobs.release``), exactly
as an interrupted `dogbreed predict` does.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogbreed.engines import Choice, engine_class
from dogbreed.errors import DogbreedError
from dogbreed.models.sources import ModelSource
from dogbreed.store import jobs as job_rows
from dogbreed.store.jobs import JobOutcome

FOREIGN_POLL_S = 0.1  # how often jobs that another process runs are looked up in the store
MAX_RESTARTS = 3  # consecutive pool deaths before the jobs involved fail instead of being retried
FINISHED = ("done", "failed")


class ServiceStopping(DogbreedError):
    """The service is shutting down (or never started): no new work is taken."""

    status_code = 503  # what an HTTP caller is answered


# ---------------------------------------------------------------- worker side (runs in the pool processes)

_INIT_ERROR: list[str] = []


def _init(source: ModelSource, choice: Choice, db_path: str, threads: int, parent_pid: int) -> None:
    """Load the model once in this worker; a failure is kept and reported by ``_ping`` in one line instead of a
    traceback that breaks the pool."""
    from dogbreed import predict

    try:
        predict.init_worker(source, choice, db_path, threads, parent_pid)
    except Exception as exc:  # the parent turns this into one line and refuses to start
        _INIT_ERROR.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    else:
        error = predict.worker_error()  # a model that cannot be loaded is kept as a reason, not raised
        if error:
            _INIT_ERROR.append(error.removeprefix("the model could not be loaded: "))


def _ping() -> tuple[int, str | None]:
    return os.getpid(), (_INIT_ERROR[0] if _INIT_ERROR else None)


def _run_batch(claimed: list[tuple[int, int]]) -> list[JobOutcome]:
    from dogbreed import predict

    return predict.run_batch(claimed)


# ---------------------------------------------------------------- parent side


@dataclass
class Ticket:
    """One caller's wait: settled when every job in ``remaining`` is finished."""

    remaining: set[int]
    future: Future = field(default_factory=Future)


@dataclass
class ServiceStats:
    state: str  # starting | ready | stopping | stopped | failed
    workers: int
    threads: int
    batch_size: int
    queued: int  # submitted, not claimed yet
    in_flight: int  # jobs claimed and running in the pool
    watched: int  # jobs another process runs that a caller waits for
    done: int
    failed: int
    batches: int
    restarts: int
    error: str | None = None


def _settle(future: Future, exc: BaseException | None = None) -> None:
    if future.done():  # a caller that gave up waiting cancelled it
        return
    try:
        future.set_exception(exc) if exc is not None else future.set_result(None)
    except Exception:  # settled concurrently by a cancel: nothing left to tell
        pass


class Supervisor:
    """Worker processes with the model loaded, fed from the store's job queue by one writer thread."""

    def __init__(
        self,
        db_path: Path,
        source: ModelSource,
        choice: Choice,
        *,
        workers: int | None = None,
        threads: int | None = None,
        batch_size: int = 16,
    ):
        plan = engine_class(choice.engine).execution(choice.device, 1 << 20, batch_size, workers, threads)
        self.db_path, self.source, self.choice = Path(db_path), source, choice
        self.workers = max(1, plan.workers)  # the model never runs in the server process itself
        self.threads = threads or plan.threads
        self.batch_size = batch_size
        self.depth = self.workers * 2  # batches in flight: a worker always has its next batch waiting
        self._cond = threading.Condition()
        self._pending: deque[int] = deque()  # submitted job ids not claimed yet
        self._queued: set[int] = set()
        self._waiters: dict[int, list[Ticket]] = {}
        self._mine: set[int] = set()  # claimed by this process, in the pool
        self._foreign: set[int] = set()  # another process runs them
        self._completed: list[Future] = []
        self._in_flight: dict[Future, list[tuple[int, int]]] = {}
        self._state = "starting"
        self._error: str | None = None
        self._counts = {"done": 0, "failed": 0, "batches": 0, "restarts": 0}
        self._released = 0
        self._deaths = 0  # pool deaths since the last batch that predicted something
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None

    # -------------------------------------------------------- the callers' side (any thread)

    def start(self, timeout: float = 600.0) -> None:
        """Start the workers (each loads the model) and the writer thread; returns once they are ready. A model
        that cannot be loaded is a DogbreedError."""
        self._thread = threading.Thread(target=self._main, name="dogbreed-jobs-writer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise DogbreedError(f"the prediction workers did not start within {timeout:.0f} s")
        if self._state == "failed":
            self._thread.join()
            raise DogbreedError(f"the model could not be loaded: {self._error}")

    def submit(self, job_ids: list[int]) -> Ticket:
        """Have these jobs run (those still queued) and return a ticket whose future is settled once all of them
        are finished (done, failed or deleted with their image)."""
        ticket = Ticket(set(job_ids))
        with self._cond:
            if self._state != "ready":
                raise ServiceStopping(f"the prediction service is {self._state}")
            for job_id in ticket.remaining:
                self._waiters.setdefault(job_id, []).append(ticket)
                if job_id not in self._queued and job_id not in self._mine and job_id not in self._foreign:
                    self._pending.append(job_id)
                    self._queued.add(job_id)
            self._cond.notify_all()
        if not ticket.remaining:
            _settle(ticket.future)
        ticket.future.add_done_callback(lambda fut: self._forget(ticket) if fut.cancelled() else None)
        return ticket

    def _forget(self, ticket: Ticket) -> None:
        """A caller stopped waiting (its request timed out): its jobs still run, nobody is told."""
        with self._cond:
            for job_id in ticket.remaining:
                tickets = self._waiters.get(job_id, [])
                if ticket in tickets:
                    tickets.remove(ticket)
                if not tickets:
                    self._waiters.pop(job_id, None)

    def request_stop(self) -> None:
        """Begin stopping without waiting (safe from a signal handler): no new work, waiters are told."""
        with self._cond:
            if self._state in ("starting", "ready"):
                self._state = "stopping"
            self._cond.notify_all()

    def stop(self, timeout: float = 30.0) -> int:
        """Stop: claimed, unfinished jobs go back to the queue. Returns how many were handed back."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._released

    def stats(self) -> ServiceStats:
        with self._cond:
            return ServiceStats(
                self._state,
                self.workers,
                self.threads,
                self.batch_size,
                len(self._pending),
                len(self._mine),
                len(self._foreign),
                error=self._error,
                **self._counts,
            )

    # -------------------------------------------------------- the writer thread

    def _main(self) -> None:
        from dogbreed.store import connect

        conn = connect(self.db_path)
        try:
            if self._warm_up():
                self._adopt(conn)
                self._loop(conn)
        except Exception as exc:  # never silent: the health call and the log say why the service stopped
            with self._cond:
                self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._shut_down(conn)
            conn.close()

    def _new_pool(self) -> ProcessPoolExecutor:
        import multiprocessing

        # spawned, never forked: the server process runs threads (a fork would copy their held locks)
        initargs = (self.source, self.choice, str(self.db_path), self.threads, os.getpid())
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init, initargs=initargs
        )

    def _warm_up(self) -> bool:
        """Start the pool and make every worker load the model before the first request comes."""
        self._pool = self._new_pool()
        try:
            answers = [f.result() for f in [self._pool.submit(_ping) for _ in range(self.workers)]]
        except BrokenProcessPool:
            answers = [(0, "a worker process died while loading the model (out of memory?)")]
        except Exception as exc:  # the processes could not even start
            answers = [(0, f"the worker processes could not start: {exc}")]
        errors = [error for _, error in answers if error]
        with self._cond:
            if errors:
                self._state, self._error = "failed", errors[0]
            elif self._state == "starting":
                self._state = "ready"
        self._ready.set()
        return not errors

    def _adopt(self, conn: Any) -> None:
        """Queued jobs of this model left by an earlier server that was killed: nobody else would run them. (Nothing
        runs here yet, so a running job under this process's pid is a stale one from a reused pid.)"""
        leftovers = job_rows.queued_ids(conn, self.source.key)
        with self._cond:
            for job_id in leftovers:
                if job_id not in self._queued:
                    self._pending.append(job_id)
                    self._queued.add(job_id)

    def _loop(self, conn: Any) -> None:
        next_poll = 0.0
        while True:
            with self._cond:
                while not self._has_work() and self._state == "ready":
                    self._cond.wait(FOREIGN_POLL_S if self._foreign else None)
                    if self._foreign and time.monotonic() >= next_poll:
                        break
                if self._state != "ready":
                    return
                completed, self._completed = self._completed, []
                chunks = self._take_chunks()
            self._record(conn, completed)
            self._dispatch(conn, chunks)
            if self._foreign and time.monotonic() >= next_poll:
                self._check_foreign(conn)
                next_poll = time.monotonic() + FOREIGN_POLL_S

    def _has_work(self) -> bool:
        return bool(self._completed) or (bool(self._pending) and len(self._in_flight) < self.depth)

    def _take_chunks(self) -> list[list[int]]:
        """Up to one batch per free slot from the submitted ids (called with the lock held)."""
        chunks = []
        while self._pending and len(self._in_flight) + len(chunks) < self.depth:
            chunk = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            self._queued.difference_update(chunk)
            chunks.append(chunk)
        return chunks

    def _dispatch(self, conn: Any, chunks: list[list[int]]) -> None:
        c = self.choice
        for chunk in chunks:
            claimed = job_rows.claim(conn, chunk, c.device, c.engine, c.precision)
            taken = {job_id for job_id, _ in claimed}
            with self._cond:
                self._foreign.update(j for j in chunk if j not in taken and j not in self._mine)
                self._mine.update(taken)
            if claimed:
                self._submit_batch(claimed)

    def _submit_batch(self, claimed: list[tuple[int, int]]) -> None:
        try:
            fut = self._pool.submit(_run_batch, claimed)
        except BrokenProcessPool as exc:  # a worker died between two batches: these jobs are handed back too
            fut = Future()
            fut.set_exception(exc)
        with self._cond:
            self._in_flight[fut] = claimed
        fut.add_done_callback(self._on_batch_done)

    def _on_batch_done(self, fut: Future) -> None:
        with self._cond:
            self._completed.append(fut)
            self._cond.notify_all()

    def _record(self, conn: Any, completed: list[Future]) -> None:
        broken: list[tuple[int, int]] = []
        for fut in completed:
            with self._cond:
                claimed = self._in_flight.pop(fut)
            try:
                results = fut.result()
            except BrokenProcessPool:
                broken += claimed
                continue
            except Exception as exc:  # the engine failed on this batch: its jobs fail with the reason
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                results = [JobOutcome(job_id, image_id, error=reason) for job_id, image_id in claimed]
            self._finish(conn, results)
        if broken:
            self._restart(conn, broken)

    def _finish(self, conn: Any, results: list[JobOutcome]) -> None:
        c = self.choice
        done, failed, _ = job_rows.finish(conn, results, self.source.identity, c.device, c.engine, c.precision)
        with self._cond:
            self._counts["done"] += done
            self._counts["failed"] += failed
            self._counts["batches"] += 1
            self._deaths = 0 if done else self._deaths
            self._mine.difference_update(r.job_id for r in results)
            self._settle_jobs([r.job_id for r in results])

    def _settle_jobs(self, job_ids: list[int]) -> None:
        """Tell the callers whose last job this was (called with the lock held)."""
        for job_id in job_ids:
            for ticket in self._waiters.pop(job_id, []):
                ticket.remaining.discard(job_id)
                if not ticket.remaining:
                    _settle(ticket.future)

    def _restart(self, conn: Any, broken: list[tuple[int, int]]) -> None:
        """A worker died: every batch in flight is lost with the pool. Hand their jobs back and start a new pool;
        after MAX_RESTARTS deaths in a row the jobs involved fail instead (a picture that kills a worker each
        time must not stop the service)."""
        with self._cond:
            lost = broken + [pair for claimed in self._in_flight.values() for pair in claimed]
            self._in_flight.clear()
            self._completed.clear()
            self._counts["restarts"] += 1
            self._deaths += 1
            give_up = self._deaths >= MAX_RESTARTS
        self._pool.shutdown(wait=False, cancel_futures=True)
        if give_up:
            reason = f"a prediction worker died {MAX_RESTARTS} times in a row on these images (out of memory?)"
            self._finish(conn, [JobOutcome(job_id, image_id, error=reason) for job_id, image_id in lost])
            with self._cond:
                self._deaths = 0
        else:
            job_rows.release(conn, [job_id for job_id, _ in lost])
            with self._cond:
                self._mine.difference_update(job_id for job_id, _ in lost)
                for job_id, _ in reversed(lost):
                    self._pending.appendleft(job_id)
                    self._queued.add(job_id)
        self._pool = self._new_pool()

    def _check_foreign(self, conn: Any) -> None:
        """Jobs another process claimed: settle the finished ones; take back those it handed back or left behind
        when it died (abandoned)."""
        with self._cond:
            watched = list(self._foreign)
        states = job_rows.job_states(conn, watched)
        finished = [j for j in watched if states.get(j, "done") in FINISHED]
        loose = [j for j in watched if states.get(j) in ("queued", job_rows.ABANDONED)]
        if any(states.get(j) == job_rows.ABANDONED for j in loose):
            job_rows.queued_ids(conn, self.source.key, own_alive=True)  # requeues this model's abandoned jobs
        with self._cond:
            self._foreign.difference_update(finished + loose)
            for job_id in loose:
                if job_id not in self._queued:
                    self._pending.append(job_id)
                    self._queued.add(job_id)
            self._settle_jobs(finished)

    def _shut_down(self, conn: Any) -> None:
        """Hand every claimed, unfinished job back to the queue, tell every waiting caller, stop the workers."""
        with self._cond:
            self._state = "failed" if self._state == "failed" else "stopping"
            held = [job_id for claimed in self._in_flight.values() for job_id, _ in claimed]
            self._in_flight.clear()
        try:
            job_rows.release(conn, held)
            self._released = len(held)
        finally:
            with self._cond:
                self._state = "failed" if self._state == "failed" else "stopped"
                tickets = {id(t): t for waiting in self._waiters.values() for t in waiting}
                self._waiters.clear()
                self._mine.clear()
                self._ready.set()
            for ticket in tickets.values():
                _settle(ticket.future, ServiceStopping("the server is stopping; the jobs stay queued"))
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- the classify use case


@dataclass
class Queued:
    """Photos stored and their predictions queued: ``jobs`` maps image id -> job id; ``ticket`` is settled when
    every job is finished."""

    uploads: list[Any]  # ingest.UploadResult, in the order given
    jobs: dict[int, int]
    ticket: Ticket


def queue_photos(conn: Any, service: Supervisor, photos: list[tuple[str, bytes]], ground_truth: Any = None) -> Queued:
    """Store photos as `predict PHOTO` does (decoded first, duplicates recognised) and queue their prediction
    with the service's model; a refused photo gets no job."""
    from dogbreed.ingest import upload_bytes

    uploads = upload_bytes(conn, photos, ground_truth=ground_truth) if photos else []
    ids = [u.image_id for u in uploads if u.image_id is not None]
    jobs = job_rows.plan_each(conn, ids, service.source.identity) if ids else {}
    return Queued(uploads, jobs, service.submit(list(dict.fromkeys(jobs.values()))))
