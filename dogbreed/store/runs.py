"""Reading training runs, their epochs, and the store's summary."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dogbreed.store.db import utcnow, write
from dogbreed.store.jobs import pid_alive

RUN_COLUMNS = (
    "id, name, status, model, mode, device, dataset, num_classes, checkpoint_path, checkpoint_sha256, best_epoch, "
    "best_val_acc, test_acc, test_top5, test_macro_f1, started_at, finished_at, duration_s, error"
)


def mark_abandoned(conn: sqlite3.Connection) -> int:
    """Runs still 'running' whose process is gone (killed, crashed, machine rebooted) become 'interrupted'."""
    rows = conn.execute("SELECT id, owner_pid FROM runs WHERE status = 'running'").fetchall()
    dead = [r[0] for r in rows if not pid_alive(r[1])]
    if dead:
        with write(conn):
            for run_id in dead:
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? WHERE id = ? AND "
                    "status = 'running'",
                    ("the training process ended without finishing (killed?)", utcnow(), run_id),
                )
    return len(dead)


def list_runs(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS}, (SELECT COUNT(*) FROM epochs e WHERE e.run_id = runs.id) AS epochs "
        "FROM runs ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


def get_run(conn: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {RUN_COLUMNS}, params, test_report, skipped FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if row is None:
        return None
    run = dict(row)
    for key in ("params", "test_report", "skipped"):
        run[key] = json.loads(run[key]) if run[key] else None
    run["epochs"] = epochs(conn, run_id)
    return run


def epochs(conn: sqlite3.Connection, run_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT epoch, train_loss, train_acc, val_loss, val_acc, val_top5, val_f1, seconds FROM epochs "
        "WHERE run_id = ? ORDER BY epoch",
        (run_id,),
    )
    return [dict(r) for r in rows]


def store_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts, and how the newest prediction of each labelled image compares with its ground truth."""
    images, labelled = conn.execute("SELECT COUNT(*), COUNT(ground_truth) FROM images").fetchone()
    predicted = conn.execute("SELECT COUNT(DISTINCT image_id) FROM predictions").fetchone()[0]
    scored, correct = conn.execute(
        """SELECT COUNT(*), COALESCE(SUM(p.top1 = i.ground_truth), 0) FROM images i
           JOIN predictions p ON p.id = (
               SELECT id FROM predictions WHERE image_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1)
           WHERE i.ground_truth IS NOT NULL"""
    ).fetchone()
    return {
        "images": images,
        "labelled": labelled,
        "predicted": predicted,
        "scored": scored,
        "correct": correct,
        "accuracy": (correct / scored) if scored else None,
        "runs": conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
    }
