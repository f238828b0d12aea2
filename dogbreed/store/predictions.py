"""Predictions: one per image per checkpoint, with all class probabilities."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dogbreed.breeds import display_name


def top_breeds(probs: dict[str, float], k: int) -> list[dict[str, Any]]:
    ranked = sorted(probs.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return [{"wnid": w, "name": display_name(w), "prob": p} for w, p in ranked]


def for_image(conn: sqlite3.Connection, image_id: int, top_k: int = 5) -> list[dict[str, Any]]:
    """The image's predictions, newest first, each with its top-k breeds."""
    rows = conn.execute(
        "SELECT id, checkpoint_sha256, checkpoint_path, top1, top1_prob, probs, device, job_id, created_at "
        "FROM predictions WHERE image_id = ? ORDER BY created_at DESC, id DESC",
        (image_id,),
    ).fetchall()
    result = []
    for row in rows:
        item = dict(row)
        probs = json.loads(item.pop("probs"))
        item["top1_name"] = display_name(item["top1"])
        item["top"] = top_breeds(probs, top_k)
        result.append(item)
    return result


def for_jobs(conn: sqlite3.Connection, job_ids: list[int], top_k: int) -> list[dict[str, Any]]:
    """Each job with its image's prediction from the job's checkpoint (top-k breeds) or its error, in job order."""
    out = []
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT j.id AS job_id, j.image_id, j.status, j.error, p.probs, p.device FROM jobs j "
            "LEFT JOIN predictions p ON p.image_id = j.image_id AND p.checkpoint_sha256 = j.checkpoint_sha256 "
            f"WHERE j.id IN ({marks}) ORDER BY j.id",
            chunk,
        )
        for row in rows:
            item = dict(row)
            probs = json.loads(item.pop("probs")) if item["probs"] and item["status"] == "done" else {}
            item["top"] = top_breeds(probs, top_k)
            out.append(item)
    return out


def format_top(top: list[dict[str, Any]]) -> str:
    """'Beagle 81.2%, Basset 9.0%' for a short list of ranked breeds."""
    return ", ".join(f"{t['name']} {t['prob']:.1%}" for t in top)
