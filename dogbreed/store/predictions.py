"""Predictions: one per image per model, with the probability of every breed and of "a dog at all".

What the numbers mean: a breed's probability is its probability AMONG THE BREEDS THE MODEL KNOWS (the model's
output renormalised over its breeds: "if this photo shows one of these breeds, how likely is it this one"); the dog
probability is the probability that the photo shows a dog at all. They answer different questions, so a breed at
28% beside a dog probability of 12% is no contradiction: "probably not a dog, and if it is one, most likely this
breed". JSON carries the breed figure under ``probability`` and, saying so, ``probability_among_breeds``.

``probs`` holds all 120 Stanford breeds in canonical order, then the model's own breeds; a breed the model was not
trained on is stored as exactly 0 and is never ranked (a trained softmax gives every class it knows a positive
probability). ``class_names`` keeps the names of the model's own breeds, so a prediction still names a breed the
store no longer has.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from dogbreed.breeds import display_name
from dogbreed.store.db import chunked, placeholders

_COLUMNS = (
    "id, image_id, model_key, model_ref, model_name, top1, top1_prob, dog_probability, probs, device, engine, "
    "precision, job_id, created_at, class_names"
)


@dataclass(frozen=True)
class BreedScore:
    wnid: str
    breed: str
    probability: float  # among the breeds the model knows (see the module doc)

    def to_dict(self) -> dict:
        """JSON's shape: ``probability`` (kept for scripts) and the same figure under a name that says what it is."""
        return {**asdict(self), "probability_among_breeds": self.probability}


def rank(probs: dict[str, float], k: int, names: dict[str, str] | None = None) -> list[BreedScore]:
    """The k most probable breeds, best first; breeds at exactly 0 (unknown to the model) are left out. ``names``:
    the names of the model's own breeds."""
    ranked = sorted(((w, p) for w, p in probs.items() if p > 0), key=lambda wp: wp[1], reverse=True)[:k]
    return [BreedScore(w, display_name(w, names), p) for w, p in ranked]


@dataclass(frozen=True)
class PredictionRecord:
    id: int
    image_id: int
    model_key: str
    model_ref: str
    model_name: str | None
    top1: str
    top1_prob: float
    dog_probability: float | None
    device: str
    engine: str | None
    precision: str | None
    job_id: int | None
    created_at: str
    probs: dict[str, float] = field(repr=False)
    class_names: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> str:
        """What to call the model in output: its label, or the reference for rows from before labels existed."""
        return self.model_name or self.model_ref

    def top(self, k: int) -> list[BreedScore]:
        return rank(self.probs, k, self.class_names)

    def to_dict(self, top_k: int = 5) -> dict:
        data = asdict(self)
        del data["probs"]
        data["model"] = self.model
        del data["class_names"]
        data["top1_name"] = display_name(self.top1, self.class_names)
        data["top"] = [s.to_dict() for s in self.top(top_k)]
        return data


def _record(row: sqlite3.Row) -> PredictionRecord:
    values = dict(row)
    values["probs"] = json.loads(values["probs"])
    values["class_names"] = json.loads(values["class_names"] or "{}")
    return PredictionRecord(**values)


def for_image(conn: sqlite3.Connection, image_id: int) -> list[PredictionRecord]:
    """The image's predictions, newest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM predictions WHERE image_id = ? ORDER BY created_at DESC, id DESC", (image_id,)
    )
    return [_record(r) for r in rows]


def for_images(conn: sqlite3.Connection, image_ids: Sequence[int], model_key: str) -> dict[int, PredictionRecord]:
    """One model's prediction of each of these images (where it has one)."""
    found: dict[int, PredictionRecord] = {}
    for chunk in chunked(image_ids):
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM predictions WHERE model_key = ? AND image_id IN ({placeholders(len(chunk))})",
            (model_key, *chunk),
        )
        found.update({r["image_id"]: _record(r) for r in rows})
    return found


@dataclass(frozen=True)
class JobResult:
    """A job with its image and, once done, the prediction it produced."""

    job_id: int
    image_id: int
    filename: str | None
    status: str
    error: str | None
    prediction: PredictionRecord | None


def for_jobs(conn: sqlite3.Connection, job_ids: Sequence[int]) -> list[JobResult]:
    """Each job with its image's prediction from the job's model, or its error, in job order. Jobs whose image was
    deleted meanwhile are gone with it and are not returned."""
    out: list[JobResult] = []
    for chunk in chunked(list(job_ids)):
        rows = conn.execute(
            "SELECT j.id AS job_id, j.image_id, j.status, j.error, i.filename, p.id AS prediction_id FROM jobs j "
            "JOIN images i ON i.id = j.image_id "
            "LEFT JOIN predictions p ON p.image_id = j.image_id AND p.model_key = j.model_key "
            f"WHERE j.id IN ({placeholders(len(chunk))}) ORDER BY j.id",
            chunk,
        ).fetchall()
        wanted = [r["prediction_id"] for r in rows if r["prediction_id"] is not None and r["status"] == "done"]
        preds = {}
        for pchunk in chunked(wanted):
            preds.update(
                {
                    r["id"]: _record(r)
                    for r in conn.execute(
                        f"SELECT {_COLUMNS} FROM predictions WHERE id IN ({placeholders(len(pchunk))})", pchunk
                    )
                }
            )
        for r in rows:
            pred = preds.get(r["prediction_id"]) if r["status"] == "done" else None
            out.append(JobResult(r["job_id"], r["image_id"], r["filename"], r["status"], r["error"], pred))
    return out
