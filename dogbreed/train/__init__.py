"""Training: explicit, flag-driven, with honest metrics, resumable, on one process or many.

- The official split decides train vs test; validation (model selection) is carved from the training part; the
  test part is scored once, at the end, with the best epoch's weights, through predict's engine and preprocessing
  (``evaluate.score``): ``dogbreed eval`` of the run on its test split gives the very same numbers.
- Each architecture gets its own published preprocessing (``preprocessing_for``), recorded in the checkpoint.
- Metrics come from scikit-learn (``evaluate.compute_metrics`` / ``build_report``), not hand-written formulas.
- Extractor mode runs the frozen backbone over the (centre-cropped) images once and trains the head on those
  cached features; epochs after the first then cost a small fraction of it. What is traded away: random crops and
  flips for the head (use ``cache_features=False`` to keep them).
- Mixed precision (``precision.training_precision``): bf16 autocast where the hardware has it, fp16 with a
  gradient scaler on other CUDA GPUs, else fp32.
- Every run is recorded in the store (parameters, epochs, test report, checkpoint and its sha256, precision,
  timings, status). After every epoch the full training state (weights, optimizer, scheduler, gradient scaler,
  every rank's RNG state, the epochs so far, the best weights) is written atomically to the run's
  ``last_checkpoint_path``, so an interrupted, failed or killed run continues with ``resume`` exactly where its
  last completed epoch left it. Ctrl-C keeps the best checkpoint and marks the run interrupted; SIGTERM (what
  torchrun sends when another rank dies) marks it failed.
- Under torchrun (``distributed``) every rank trains a DistributedDataParallel replica on its share; rank 0
  alone writes the store, the checkpoints and the console.

Modules, by concern: ``config`` (TrainConfig, TrainResult, Listener), ``precision``, ``distributed``, ``loops``
(one training pass, evaluation, feature extraction, gathering every rank's share), ``fitters`` (full network or
cached head), ``state`` (RNG state, seeding, the checked resume state), ``record`` (the run record, epochs,
checkpoints, TensorBoard), ``plan`` (fresh, warm start or resumed model; preprocessing), ``session`` (one run,
start to end). The data comes from ``datasets.open_dataset``.

Light module: importing it (or ``config``, ``precision``, ``distributed``) imports no torch; ``train``, ``resume``
and ``preprocessing_for`` load the rest when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dogbreed.train.config import Listener, TrainConfig, TrainResult

if TYPE_CHECKING:
    from dogbreed.train.plan import preprocessing_for
    from dogbreed.train.session import resume, train

__all__ = ["Listener", "TrainConfig", "TrainResult", "preprocessing_for", "resume", "train"]
_LAZY = {"train": "session", "resume": "session", "preprocessing_for": "plan"}


def __getattr__(name: str) -> Any:
    """``train``, ``resume`` and ``preprocessing_for`` import torch: they load on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
