"""The accuracy guard: a faster engine or precision is chosen automatically only on a recorded measurement.

- bf16, fp16, and any engine other than the fp32 torch reference (OpenVINO f32 computes the same function with
  other kernels): top-1 agreement with the fp32 torch model of at least 99% on held-out images;
- int8: a top-1 accuracy drop of at most 1 point against the fp32 torch model on labelled held-out images.

A measurement on fewer than ``MIN_IMAGES`` images does not count: 99% of 50 images would mean "no disagreement at
all", and a one-point drop cannot be told from noise on a few dozen labels. Checks are measured by
``dogbreed check`` and ``dogbreed export`` (``dogbreed.checks``) and stored in ``engine_checks``.

Light module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dogbreed.store.evaluations import EngineCheck

MIN_AGREEMENT = 0.99
MAX_INT8_DROP = 0.01
MIN_IMAGES = 100


def latest(
    checks: Iterable[EngineCheck], engine: str, precision: str, device: str, target_key: str | None = None
) -> EngineCheck | None:
    """The newest check of ``engine`` at ``precision`` on this device kind (of the export ``target_key``, or of the
    model itself when None). ``checks`` come newest first (``store.evaluations.checks_for``)."""
    kind = device.split(":")[0]
    for c in checks:
        if (
            c.engine == engine
            and c.precision == precision
            and (c.device or "cpu") == kind
            and c.target_key == target_key
        ):
            return c
    return None


def verdict(check: EngineCheck | None, precision: str) -> tuple[bool, str]:
    """(whether the guard lets auto pick it, a short reason for the note)."""
    if check is None:
        return False, "no accuracy check recorded"
    if precision == "int8":
        labelled = check.labelled or 0
        if check.accuracy is None or check.reference_accuracy is None or labelled == 0:
            return False, "its check had no labelled images, so no accuracy drop was measured"
        if labelled < MIN_IMAGES:
            return False, (
                f"its accuracy was measured on only {labelled} labelled images "
                f"(the guard needs {MIN_IMAGES}: check again with --dataset DIR)"
            )
        drop = check.reference_accuracy - check.accuracy
        text = (
            f"top-1 {check.accuracy:.1%} vs {check.reference_accuracy:.1%} at fp32 on {labelled} labelled images "
            f"(a {'drop' if drop >= 0 else 'gain'} of {abs(drop) * 100:.1f} points)"
        )
        return drop <= MAX_INT8_DROP + 1e-9, text if drop <= MAX_INT8_DROP + 1e-9 else f"{text}, over the 1-point guard"
    if check.n < MIN_IMAGES:
        return False, f"checked on only {check.n} images (the guard needs {MIN_IMAGES}: check again with --dataset DIR)"
    text = f"{check.agreement:.1%} top-1 agreement with fp32 on {check.n} images"
    if check.agreement < MIN_AGREEMENT:
        return False, f"{text}, under the {MIN_AGREEMENT:.0%} guard"
    return True, text
