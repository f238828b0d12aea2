"""Prediction jobs: planned before work starts, claimed atomically, finished with their result.

A job is queued -> running -> done | failed. A running job whose owner process is gone (killed, crashed) is
queued again by the next planner, so no work is ever lost and no image is predicted twice at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from dogbreed.store.db import utcnow, write

JOB_STATUSES = ("queued", "running", "done", "failed")


def pid_alive(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that its parent has not reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def requeue_abandoned(conn: sqlite3.Connection, checkpoint_sha256: str | None = None) -> int:
    """Queue again the running jobs whose owner process no longer exists. Call inside ``write``."""
    sql = "SELECT id, owner_pid FROM jobs WHERE status = 'running'"
    params: tuple = ()
    if checkpoint_sha256:
        sql += " AND checkpoint_sha256 = ?"
        params = (checkpoint_sha256,)
    dead = [row[0] for row in conn.execute(sql, params) if not pid_alive(row[1])]
    for job_id in dead:
        conn.execute("UPDATE jobs SET status = 'queued', owner_pid = NULL, started_at = NULL WHERE id = ?", (job_id,))
    return len(dead)


def plan(
    conn: sqlite3.Connection,
    image_ids: list[int] | None,
    checkpoint_sha256: str,
    checkpoint_path: str,
    *,
    only_missing: bool,
) -> list[int]:
    """The job ids that will predict ``image_ids`` (None: every image) with one checkpoint.

    An image that already has a queued job (or an abandoned one) reuses it; an image being worked on by a live
    process is left to that process. With ``only_missing``, images that already have a prediction from this
    checkpoint are skipped.
    """
    with write(conn):
        requeue_abandoned(conn, checkpoint_sha256)
        if image_ids is None:
            targets = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id")]
        else:
            targets = image_ids
        active = {
            r[0]: (r[1], r[2])
            for r in conn.execute(
                "SELECT image_id, id, status FROM jobs WHERE checkpoint_sha256 = ? AND status IN "
                "('queued', 'running') ORDER BY id",
                (checkpoint_sha256,),
            )
        }
        predicted: set[int] = set()
        if only_missing:
            predicted = {
                r[0]
                for r in conn.execute(
                    "SELECT image_id FROM predictions WHERE checkpoint_sha256 = ?", (checkpoint_sha256,)
                )
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
                "INSERT INTO jobs (image_id, checkpoint_sha256, checkpoint_path, status, created_at) "
                "VALUES (?, ?, ?, 'queued', ?)",
                (image_id, checkpoint_sha256, checkpoint_path, now),
            )
            job_ids.append(cur.lastrowid)
    return job_ids


def queued_ids(conn: sqlite3.Connection, checkpoint_sha256: str) -> list[int]:
    with write(conn):
        requeue_abandoned(conn, checkpoint_sha256)
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' AND checkpoint_sha256 = ? ORDER BY id",
                (checkpoint_sha256,),
            )
        ]


def claim(conn: sqlite3.Connection, job_ids: list[int], device: str) -> list[tuple[int, int]]:
    """Atomically take the still-queued jobs among ``job_ids``; returns (job id, image id) pairs."""
    if not job_ids:
        return []
    marks = ",".join("?" * len(job_ids))
    with write(conn):
        rows = conn.execute(
            f"UPDATE jobs SET status = 'running', owner_pid = ?, device = ?, started_at = ? "
            f"WHERE status = 'queued' AND id IN ({marks}) RETURNING id, image_id",
            (os.getpid(), device, utcnow(), *job_ids),
        ).fetchall()
    return sorted((r[0], r[1]) for r in rows)


def finish(conn: sqlite3.Connection, results: list[dict[str, Any]], meta_path: str, sha: str, device: str) -> None:
    """Record a batch of outcomes in one transaction: predictions upserted, jobs marked done or failed."""
    now = utcnow()
    with write(conn):
        for r in results:
            if r["error"] is None:
                conn.execute(
                    "INSERT INTO predictions (image_id, checkpoint_sha256, checkpoint_path, top1, top1_prob, probs,"
                    " device, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (image_id, checkpoint_sha256) DO UPDATE SET checkpoint_path = excluded."
                    "checkpoint_path, top1 = excluded.top1, top1_prob = excluded.top1_prob, probs = excluded.probs,"
                    " device = excluded.device, job_id = excluded.job_id, created_at = excluded.created_at",
                    (
                        r["image_id"],
                        sha,
                        meta_path,
                        r["top1"],
                        r["top1_prob"],
                        json.dumps(r["probs"], separators=(",", ":")),
                        device,
                        r["job_id"],
                        now,
                    ),
                )
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, finished_at = ?, seconds = ? WHERE id = ?",
                ("done" if r["error"] is None else "failed", r["error"], now, r["seconds"], r["job_id"]),
            )


def release(conn: sqlite3.Connection, job_ids: list[int]) -> None:
    """Put claimed-but-unfinished jobs back in the queue (an interrupted run hands its work back)."""
    if not job_ids:
        return
    marks = ",".join("?" * len(job_ids))
    with write(conn):
        conn.execute(
            f"UPDATE jobs SET status = 'queued', owner_pid = NULL, started_at = NULL "
            f"WHERE status = 'running' AND id IN ({marks})",
            job_ids,
        )


def list_jobs(
    conn: sqlite3.Connection, *, job_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where, params = [], []
    if job_id is not None:
        where.append("id = ?")
        params.append(job_id)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    sql = (
        "SELECT id, image_id, status, error, device, checkpoint_path, created_at, started_at, finished_at, seconds"
        f" FROM jobs {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT ?"
    )
    return [dict(r) for r in conn.execute(sql, (*params, limit))]


def status_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({r[0]: r[1] for r in conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")})
    return counts
