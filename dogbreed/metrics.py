"""Metrics every use case reports the same way, from scikit-learn: top-1, top-5, macro F1, per-breed precision /
recall / F1 / support, the most-confused pairs (``build_report``), and accuracy restricted to some breeds.

Training's epochs and test report, ``eval`` and the accuracy checks all come from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MOST_CONFUSED = 10


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, float]:
    """Top-1 accuracy, top-5 accuracy and macro F1 (over the classes present in truth or prediction),
    all from scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

    y_pred = probs.argmax(axis=1)
    k = min(5, num_classes)
    labels = list(range(num_classes))
    top5 = 1.0 if k >= num_classes else top_k_accuracy_score(y_true, probs, k=k, labels=labels)
    return {
        "acc": float(accuracy_score(y_true, y_pred)),
        "top5": float(top5),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def build_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    keys: list[str],
    most_confused: int = MOST_CONFUSED,
) -> dict[str, Any]:
    """The full report: accuracy, top-5, macro F1, per-breed precision / recall / F1 / support (breeds in the truth
    or the predictions), the most-confused pairs, and the predictions themselves (``y_true``, ``y_pred``, ``paths``:
    what the confusion matrix is drawn from)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from dogbreed.breeds import display_name

    n = len(classes)
    y_pred = probs.argmax(axis=1)
    summary = compute_metrics(y_true, probs, n)
    labels = list(range(n))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    np.fill_diagonal(cm, 0)
    off = np.argwhere(cm > 0)
    pairs = sorted(((int(cm[i, j]), int(i), int(j)) for i, j in off), key=lambda t: (-t[0], t[1], t[2]))
    return {
        "n": int(len(y_true)),
        "accuracy": summary["acc"],
        "top5": summary["top5"],
        "macro_f1": summary["macro_f1"],
        "per_breed_f1": {classes[i]: float(f1[i]) for i in present},
        "per_breed": [
            {
                "breed": classes[i],
                "name": display_name(classes[i]),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in present
        ],
        "most_confused": [
            {"true": classes[i], "predicted": classes[j], "count": c} for c, i, j in pairs[:most_confused]
        ],
        "classes": classes,
        "y_true": [int(v) for v in y_true],
        "y_pred": [int(v) for v in y_pred],
        "paths": keys,
    }


def accuracy_within(y_true: np.ndarray, probs: np.ndarray, allowed: list[int]) -> float:
    """Accuracy when the answer is restricted to the ``allowed`` classes (the breeds the data has)."""
    restricted = np.asarray(allowed)[probs[:, allowed].argmax(axis=1)]
    return float((restricted == y_true).mean())
