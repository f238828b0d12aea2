"""The one validator for what a model file says about itself: its classes and its preprocessing.

Checkpoints (``formats.checkpoint``) and exports (``formats.export``) are files from outside: every field is type-
and range-checked here, the same way for both, and breed names always come from our own table, never the file.
Each check takes ``bad``, a function that turns a short reason into the file's one-line error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.imaging import INTERPOLATIONS

MAX_INPUT_SIZE = 1024  # larger inputs are a crafted file, not a real classifier
MAX_CLASSES = 1000
Bad = Callable[[str], DogbreedError]


def check_classes(value: Any, bad: Bad) -> list[list[str]]:
    """[[WordNet id, name], ...] in output order: 2 to 1000 known breeds, none twice, names from our table."""
    from dogbreed.breeds import BY_WNID

    pairs_text = f"'classes' must be a list of 2 to {MAX_CLASSES} [WordNet id, name] pairs"
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_CLASSES:
        raise bad(pairs_text)
    if not all(isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(s, str) for s in c) for c in value):
        raise bad(pairs_text)
    wnids = [c[0] for c in value]
    if len(set(wnids)) != len(wnids):
        raise bad("'classes' names a breed twice")
    unknown = [w for w in wnids if w not in BY_WNID]
    if unknown:
        raise bad(f"{unknown[0][:20]!r} in 'classes' is not one of the 120 Stanford breeds")
    return [[w, BY_WNID[w].name] for w in wnids]


def check_size(value: Any, key: str, bad: Bad, *, optional: bool = False) -> int | None:
    """A whole number of pixels from 8 to ``MAX_INPUT_SIZE`` (None allowed where ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 8 <= value <= MAX_INPUT_SIZE:
        raise bad(f"{key!r} must be a whole number of pixels from 8 to {MAX_INPUT_SIZE}")
    return value


def check_stats(value: Any, key: str, bad: Bad) -> tuple[float, float, float]:
    """Three finite numbers (the normalisation mean, or a std above 0)."""
    positive = key == "std"
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value)
        or (positive and not all(x > 0 for x in value))
    ):
        raise bad(f"{key!r} must be three finite numbers" + (" above 0" if positive else ""))
    return (float(value[0]), float(value[1]), float(value[2]))


def check_interpolation(value: Any, bad: Bad) -> str:
    if value not in INTERPOLATIONS:
        raise bad(f"'interpolation' must be one of {', '.join(INTERPOLATIONS)}")
    return value
