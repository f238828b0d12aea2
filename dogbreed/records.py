"""The JSON records of stored things: an image with its predictions (`show --json`), a row of a listing
(`list --json`), one prediction. The CLI prints them and the web API answers with them: one builder each, so the
two never drift apart. Breed names come from a vocabulary (Stanford's 120 and the store's own breeds)."""

from __future__ import annotations

from typing import Any

from dogbreed.breeds import Vocabulary
from dogbreed.imagenet import DOG_THRESHOLD


def not_a_dog(p: float | None) -> bool | None:
    """Whether a dog probability says "probably not a dog" (None: the model cannot tell)."""
    return None if p is None else p < DOG_THRESHOLD


def prediction_record(pred: Any, top_k: int) -> dict[str, Any]:
    """One stored prediction (``PredictionRecord``) with its top ``top_k`` breeds and the not-a-dog flag."""
    data = pred.to_dict(top_k)
    data["not_a_dog"] = not_a_dog(pred.dog_probability)
    return data


def image_record(image: Any, preds: list[Any], top_k: int, vocabulary: Vocabulary) -> dict[str, Any]:
    """A stored image (never its bytes) with its ground truth named and its predictions, newest first."""
    data = image.to_dict()
    data["ground_truth_name"] = vocabulary.name(image.ground_truth) or None
    data["predictions"] = [prediction_record(p, top_k) for p in preds]
    return data


def listing_row(item: Any, vocabulary: Vocabulary) -> dict[str, Any]:
    """One image of a listing (``ImageListing``): its fields, breeds named, its newest top-1 and dog figures."""
    row = item.to_dict()
    row["ground_truth_name"] = vocabulary.name(item.ground_truth) or None
    row["top1_name"] = vocabulary.name(item.top1) or None
    row["top1_prob_among_breeds"] = item.top1_prob  # the same figure, named for what it is
    row["not_a_dog"] = not_a_dog(item.dog_probability)
    return row


def run_record(run: Any) -> dict[str, Any]:
    """A training run (``RunRecord``), saying whether it learnt from a synthetic dataset (runs recorded before
    that was recorded: as their dataset's marker says)."""
    from dogbreed.models.sources import is_synthetic_run

    return dict(run.to_dict(), synthetic=is_synthetic_run(run))
