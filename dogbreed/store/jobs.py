"""Prediction jobs: planned before work starts, claimed atomically, finished with their result.

A job is queued -> running -> done | failed. A running job whose owner process is gone (killed, crashed) is
reported as abandoned and queued again by the next planner, so no work is lost and no image is predicted twice at
once. Deleting an image deletes its jobs; a result that comes back for a deleted image is dropped.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from dogbreed.procs import pid_alive
from dogbreed.store.db import chunked, placeholders, utcnow, write

JOB_STATUSES = ("queued", "running", "done", "failed")
ABANDONED = "abandoned"  # shown for a running job whose process is gone; stored as running until requeued


@dataclass(frozen=True)
class ModelId:
    """How the store names a model: ``key`` identifies it (one prediction per image per key), ``ref`` says where it
    comes from (a file path, or torchvision:<arch>:<weights>), ``name`` is what people read."""

    key: str
    ref: str
    name: str


@dataclass(frozen=True)
class JobOutcome:
    """What a worker reports for one job: the breed probabilities (all 120, canonical order) or an error."""

    job_id: int
    image_id: int
    error: str | None = None
    probs: dict[str, float] | None = None
    dog_probability: float | None = None
    seconds: float = 0.0
    class_names: dict[str, str] | None = None  # the names of the model's own breeds, if it has any

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class JobRecord:
    id: int
    image_id: int
    status: str  # one of JOB_STATUSES, or "abandoned"
    error: str | None
    device: str | None
    engine: str | None
    precision: str | None
    model_ref: str
    model_name: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    seconds: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _owner_alive(pid: int | None, own_alive: bool) -> bool:
    """Whether a running job's owner is alive. This process's own running jobs count as stale (a reused pid) unless
    ``own_alive``: a long-lived process (``dogbreed serve``) plans new jobs while it runs others."""
    return pid_alive(pid) or (own_alive and pid == os.getpid())


def requeue_abandoned(conn: sqlite3.Connection, model_key: str | None = None, *, own_alive: bool = False) -> int:
    """Queue again the running jobs whose owner process no longer exists. Call inside ``write``."""
    sql = "SELECT id, owner_pid FROM jobs WHERE status = 'running'"
    params: tuple = ()
    if model_key:
        sql += " AND model_key = ?"
        params = (model_key,)
    dead = [row[0] for row in conn.execute(sql, params) if not _owner_alive(row[1], own_alive)]
    for job_id in dead:
        conn.execute("UPDATE jobs SET status = 'queued', owner_pid = NULL, started_at = NULL WHERE id = ?", (job_id,))
    return len(dead)


def plan(conn: sqlite3.Connection, image_ids: Sequence[int] | None, model: ModelId, *, only_missing: bool) -> list[int]:
    """The job ids that will predict ``image_ids`` (None: every image) with one model.

    An image that already has a queued job (or an abandoned one) reuses it; an image being worked on by a live
    process is left to that process. With ``only_missing``, images that already have a prediction from this
    model are skipped.
    """
    with write(conn):
        requeue_abandoned(conn, model.key)
        if image_ids is None:
            targets = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")]
        else:  # an image deleted since the caller chose it gets no job (its row is gone: no foreign key to hold)
            live = {
                r[0]
                for chunk in chunked(list(image_ids))
                for r in conn.execute(f"SELECT id FROM images WHERE id IN ({placeholders(len(chunk))})", chunk)
            }
            targets = [i for i in image_ids if i in live]
        active = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT image_id, id, status FROM jobs WHERE model_key = ? AND status IN ('queued', 'running') "
                "ORDER BY id",
                (model.key,),
            )
        }
        predicted: set[int] = set()
        if only_missing:
            predicted = {
                r[0] for r in conn.execute("SELECT image_id FROM predictions WHERE model_key = ?", (model.key,))
            }
        now = utcnow()
        job_ids = []
        for image_id in targets:
            if image_id in active:
                job_id, status = active[image_id]
                if status == "queued":
                    job_ids.append(job_id)
                continue
            if image_id in predicted:
                continue
            cur = conn.execute(
                "INSERT INTO jobs (image_id, model_key, model_ref, model_name, status, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?)",
                (image_id, model.key, model.ref, model.name, now),
            )
            job_ids.append(cur.lastrowid)
    return job_ids


def queued_ids(conn: sqlite3.Connection, model_key: str, *, own_alive: bool = False) -> list[int]:
    """This model's queued jobs (abandoned ones included), oldest first."""
    with write(conn):
        requeue_abandoned(conn, model_key, own_alive=own_alive)
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND model_key = ? ORDER BY id", (model_key,)
            )
        ]


def claim(
    conn: sqlite3.Connection, job_ids: Sequence[int], device: str, engine: str, precision: str
) -> list[tuple[int, int]]:
    """Atomically take the still-queued jobs among ``job_ids``; returns (job id, image id) pairs."""
    if not job_ids:
        return []
    with write(conn):
        rows = conn.execute(
            "UPDATE jobs SET status = 'running', owner_pid = ?, device = ?, engine = ?, precision = ?, "
            f"started_at = ? WHERE status = 'queued' AND id IN ({placeholders(len(job_ids))}) RETURNING id, image_id",
            (os.getpid(), device, engine, precision, utcnow(), *job_ids),
        ).fetchall()
    return sorted((r[0], r[1]) for r in rows)


def _invalid(outcome: JobOutcome) -> str | None:
    """Why a successful-looking outcome cannot be stored (a model that produced NaN or inf), or None."""
    values = list((outcome.probs or {}).values())
    if outcome.dog_probability is not None:
        values.append(outcome.dog_probability)
    if not values or not all(math.isfinite(v) for v in values):
        return "the model produced NaN or infinite scores for this image (a broken or diverged model?)"
    return None


def finish(
    conn: sqlite3.Connection,
    outcomes: Sequence[JobOutcome],
    model: ModelId,
    device: str,
    engine: str,
    precision: str,
) -> tuple[int, int, int]:
    """Record a batch of outcomes in one transaction: predictions upserted, jobs marked done or failed. Returns
    (done, failed, dropped), where dropped counts results for images deleted while they were being predicted."""
    now = utcnow()
    done = failed = dropped = 0
    with write(conn):
        live = {
            r[0]
            for chunk in chunked([o.image_id for o in outcomes])
            for r in conn.execute(f"SELECT id FROM images WHERE id IN ({placeholders(len(chunk))})", chunk)
        }
        for o in outcomes:
            if o.image_id not in live:
                dropped += 1
                continue
            error = o.error or _invalid(o)
            if error is None:
                top1 = max(o.probs, key=o.probs.get)
                conn.execute(
                    "INSERT INTO predictions (image_id, model_key, model_ref, model_name, top1, top1_prob, probs, "
                    "dog_probability, device, engine, precision, job_id, created_at, class_names) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (image_id, model_key) DO UPDATE SET model_ref = excluded.model_ref, "
                    "model_name = excluded.model_name, top1 = excluded.top1, top1_prob = excluded.top1_prob, "
                    "probs = excluded.probs, dog_probability = excluded.dog_probability, device = excluded.device, "
                    "engine = excluded.engine, precision = excluded.precision, job_id = excluded.job_id, "
                    "created_at = excluded.created_at, class_names = excluded.class_names",
                    (
                        o.image_id,
                        model.key,
                        model.ref,
                        model.name,
                        top1,
                        o.probs[top1],
                        json.dumps(o.probs, separators=(",", ":")),
                        o.dog_probability,
                        device,
                        engine,
                        precision,
                        o.job_id,
                        now,
                        json.dumps(o.class_names, separators=(",", ":")) if o.class_names else None,
                    ),
                )
                done += 1
            else:
                failed += 1
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, seconds = ? WHERE id = ?",
                ("done" if error is None else "failed", error, now, o.seconds, o.job_id),
            )
    return done, failed, dropped


def fail(conn: sqlite3.Connection, job_ids: Sequence[int], reason: str) -> None:
    """Mark queued or running jobs failed with one reason (their model could not be loaded, say)."""
    now = utcnow()
    with write(conn):
        for chunk in chunked(list(job_ids)):
            conn.execute(
                f"UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id IN "
                f"({placeholders(len(chunk))}) AND status IN ('queued', 'running')",
                (reason, now, *chunk),
            )


def release(conn: sqlite3.Connection, job_ids: Sequence[int]) -> None:
    """Put the jobs among ``job_ids`` that this process claimed and has not finished back in the queue (an
    interrupted run hands its work back; jobs another process runs are left alone)."""
    if not job_ids:
        return
    with write(conn):
        for chunk in chunked(list(job_ids)):
            conn.execute(
                "UPDATE jobs SET status = 'queued', owner_pid = NULL, started_at = NULL "
                f"WHERE status = 'running' AND owner_pid = ? AND id IN ({placeholders(len(chunk))})",
                (os.getpid(), *chunk),
            )


_JOB_COLUMNS = (
    "id, image_id, status, error, device, engine, precision, model_ref, model_name, created_at, started_at, "
    "finished_at, seconds, owner_pid"
)


def _job(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    owner = values.pop("owner_pid")
    if values["status"] == "running" and not pid_alive(owner):
        values["status"] = ABANDONED
    return JobRecord(**values)


def list_jobs(conn: sqlite3.Connection, *, status: str | None = None, limit: int = 100) -> list[JobRecord]:
    """The newest jobs first. A running job whose process is gone is reported as abandoned."""
    if status in ("running", ABANDONED):  # the two are told apart by their owner's liveness, not by a column
        rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'running' ORDER BY id DESC")
        return [j for j in map(_job, rows) if j.status == status][:limit]
    where, params = ("WHERE status = ?", (status,)) if status else ("", ())
    rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY id DESC LIMIT ?", (*params, limit))
    return [_job(r) for r in rows]


def get_job(conn: sqlite3.Connection, job_id: int) -> JobRecord | None:
    row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def status_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys((*JOB_STATUSES, ABANDONED), 0)
    counts.update({r[0]: r[1] for r in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")})
    owners = conn.execute("SELECT owner_pid FROM jobs WHERE status = 'running'").fetchall()
    gone = sum(not pid_alive(r[0]) for r in owners)
    counts["running"] -= gone
    counts[ABANDONED] = gone
    return counts


def plan_each(conn: sqlite3.Connection, image_ids: Sequence[int], model: ModelId) -> dict[int, int]:
    """Which job will predict each image with one model, queuing what is missing: {image id: job id}.

    Like ``plan`` without ``only_missing``, except that an image a live process is already predicting keeps that
    running job (so a caller can wait for it) instead of getting none. Images deleted meanwhile are left out. For
    long-lived callers: the jobs this process itself is running are alive.
    """
    wanted = list(dict.fromkeys(image_ids))
    jobs: dict[int, int] = {}
    with write(conn):
        requeue_abandoned(conn, model.key, own_alive=True)
        now = utcnow()
        for chunk in chunked(wanted):
            marks = placeholders(len(chunk))
            live = {r[0] for r in conn.execute(f"SELECT id FROM images WHERE id IN ({marks})", chunk)}
            active = conn.execute(
                f"SELECT image_id, id FROM jobs WHERE model_key = ? AND status IN ('queued', 'running') "
                f"AND image_id IN ({marks}) ORDER BY id",
                (model.key, *chunk),
            )
            for image_id, job_id in active:
                jobs.setdefault(image_id, job_id)
            for image_id in chunk:
                if image_id in live and image_id not in jobs:
                    jobs[image_id] = conn.execute(
                        "INSERT INTO jobs (image_id, model_key, model_ref, model_name, status, created_at) "
                        "VALUES (?, ?, ?, ?, 'queued', ?)",
                        (image_id, model.key, model.ref, model.name, now),
                    ).lastrowid
    return {image_id: jobs[image_id] for image_id in wanted if image_id in jobs}


def job_states(conn: sqlite3.Connection, job_ids: Sequence[int]) -> dict[int, str]:
    """{job id: status} (abandoned for a running job whose process is gone; this process's own are alive); a job
    deleted with its image is missing from the answer."""
    states: dict[int, str] = {}
    for chunk in chunked(list(job_ids)):
        rows = conn.execute(
            f"SELECT id, status, owner_pid FROM jobs WHERE id IN ({placeholders(len(chunk))})", chunk
        ).fetchall()
        for job_id, status, owner in rows:
            states[job_id] = ABANDONED if status == "running" and not _owner_alive(owner, True) else status
    return states
