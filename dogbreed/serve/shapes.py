"""Store rows -> the JSON shapes the API answers with. Breed names follow the original service's spelling: ground
truth lower-case with underscores (``border_collie``), prediction keys as Stanford's folders spell them
(``Border_collie``); the richer calls use the shapes `dogbreed show --json` and `list --json` print."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dogbreed.breeds import BY_WNID, OWN_PREFIX, is_own
from dogbreed.records import not_a_dog

# Celery's names for a task's state, which the original service's clients read.
TASK_STATES = {
    "queued": "PENDING",
    "abandoned": "PENDING",
    "running": "STARTED",
    "done": "SUCCESS",
    "failed": "FAILURE",
}


def folder_label(wnid: str, names: Any = None) -> str:
    """'Border_collie' for n02106166: the Stanford folder name without its WordNet id; an own breed's name spelled
    the same way ('Shiba_Inu'). ``names``: a vocabulary (the store's breeds) or a {key: name} map (a model's)."""
    breed = BY_WNID.get(wnid)
    if breed is not None:
        return breed.folder.split("-", 1)[1]
    name = names.name(wnid) if hasattr(names, "name") else (names or {}).get(wnid, wnid)
    return "_".join(name.split())


def ground_truth_label(wnid: str | None, names: Any = None) -> str | None:
    """'border_collie' for n02106166: how the original service spelled ground truth ('shiba_inu' for an own breed,
    from its name, or from its key when no names are at hand: a key is its name's slug)."""
    if wnid is None:
        return None
    if names is None and is_own(wnid):
        return wnid[len(OWN_PREFIX) :].replace("-", "_")
    return folder_label(wnid, names).lower()


def original_predictions(pred: Any | None) -> dict[str, float] | None:
    """{breed: probability} over every breed the model knows (those it was not trained on are stored as 0)."""
    if pred is None:
        return None
    return {folder_label(w, pred.class_names): p for w, p in pred.probs.items() if p > 0}


def original_image(image: Any, pred: Any | None, names: Any = None) -> dict[str, Any]:
    """The original service's image: exactly id, filename, ground_truth, predictions (never the bytes)."""
    return {
        "id": image.id,
        "filename": image.filename,
        "ground_truth": ground_truth_label(image.ground_truth, names),
        "predictions": original_predictions(pred),
    }


def task(state: str, job: Any, image: Any | None, pred: Any | None) -> dict[str, Any]:
    """The original service's task status: task_id, task_status (Celery's names for the job's ``state``) and,
    when it is done, the image it predicted; when it failed, the reason."""
    status = TASK_STATES.get(state, "PENDING")
    result = None
    if status == "SUCCESS" and image is not None:
        result = original_image(image, pred)
    elif status == "FAILURE":
        result = job.error
    return {"task_id": str(job.id), "task_status": status, "task_result": result}


def classified(upload: Any, job_id: int | None, state: str, result: Any | None, top_k: int) -> dict[str, Any]:
    """One photo's answer from /api/classify: what was stored, and its breeds once predicted."""
    image = upload.image
    pred = result.prediction if result is not None else None
    top = pred.top(top_k) if pred is not None else []
    return {
        "id": upload.image_id,
        "filename": image.filename if image else upload.path,
        "upload": upload.status,
        "reason": upload.reason,
        "ground_truth": ground_truth_label(image.ground_truth) if image else None,
        "task_id": None if job_id is None else str(job_id),
        "state": state,
        "error": result.error if result is not None else None,
        "breed": top[0].breed if top else None,
        "probability": top[0].probability if top else None,
        "top": [asdict(s) for s in top],
        "dog_probability": pred.dog_probability if pred else None,
        "not_a_dog": not_a_dog(pred.dog_probability) if pred else None,
        "model": pred.model if pred else None,
    }


def training_history(run: Any) -> dict[str, dict[str, float | None]]:
    """The original service's /api/stats/: one column per measure, each {epoch index: value} (its training
    history CSV read by pandas, ``to_dict()``); 'score' is the macro F1."""
    columns = {
        "train_loss": "train_loss",
        "val_loss": "val_loss",
        "train_score": "train_f1",
        "train_acc": "train_acc",
        "val_score": "val_f1",
        "val_acc": "val_acc",
    }
    return {name: {str(i): e.get(key) for i, e in enumerate(run.epochs)} for name, key in columns.items()}
