"""Mixed precision for training: which precision a device trains fastest at without losing accuracy, and the
autocast / gradient-scaler pair that runs it.

- bf16 autocast where the hardware computes bf16 natively: CPUs with AVX512_BF16 or AMX-BF16
  (``engines.cpu.native_bf16_flags``, which reads ``DOGBREED_CPU_FEATURES`` as inference does), GPUs that support
  it. bf16 keeps fp32's exponent range, so no loss scaling is needed.
- fp16 autocast with a GradScaler on other CUDA GPUs (fp16's small range needs the scaled loss).
- fp32 elsewhere. bf16 on a CPU without native support is honoured when asked for, but emulated: usually slower.

Only the training step runs at this precision (the forward under autocast; the loss, the weights, the gradients
and AdamW's state stay fp32, as do BatchNorm's running statistics). Validation, hence checkpoint selection, and
the test scores run in fp32 whatever it is (``loops.Loop.evaluate``; extractor mode computes the validation
features in fp32): the recorded figures are those the reference fp32 engine, which ``predict`` and ``eval`` run,
gives of the kept weights.

Why ``auto`` keeps bf16 on a CPU with native bf16 (issue 21, ``python bench/run.py --only precision``): on a
12-breed synthetic proxy (resnet18 from scratch, 64 px, 8 epochs, seeds 0-4) ``--precision auto`` (bf16) reached
test accuracy 0.967 / 0.942 / 0.967 / 1.000 / 0.983 (mean 0.972, min 0.942) against fp32's 0.950 / 0.958 / 0.833
/ 1.000 / 0.992 (mean 0.947, min 0.833), and on a 2-core AMX-BF16 Xeon its training step is 2.2x fp32's at
224 px. The accuracy that varied from run to run came from checkpoint selection on a validation split of a few
dozen images that saturates at 100% (fp32's seed 2 kept epoch 4 of 8), not from bf16: scored in fp32 after every
epoch, the weights of both reach the same test accuracy epoch by epoch (epoch 8, mean of the 5 seeds: 0.978 at
fp32, 0.975 at bf16). Scoring the same weights in bf16 instead of fp32 changed none of 88 per-epoch test
accuracies on a 6-breed proxy, so scoring in fp32 makes the selection exact rather than better.

The precisions are the engines' (``engines.PRECISIONS``) but int8, a quantised export no run trains in.

Light module: torch is imported inside the functions that need it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from dogbreed import engines
from dogbreed.engines import cpu
from dogbreed.errors import DogbreedError

PRECISIONS = ("auto", *(p for p in engines.PRECISIONS if p != "int8"))


@dataclass(frozen=True)
class Precision:
    """The precision a training run uses on its device, and why."""

    name: str  # fp32 | bf16 | fp16
    device_type: str  # cpu | cuda | mps
    note: str
    warning: str | None = None

    def autocast(self) -> AbstractContextManager:
        """The forward pass's context: autocast at this precision (nothing at fp32)."""
        if self.name == "fp32":
            return nullcontext()
        import torch

        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

    def grad_scaler(self) -> Any:
        """A GradScaler for fp16 (its range needs the loss scaled); None otherwise."""
        if self.name != "fp16":
            return None
        import torch

        return torch.amp.GradScaler(self.device_type)


def cpu_has_native_bf16() -> bool:
    """Whether training takes this CPU to compute bf16 natively."""
    return bool(cpu.native_bf16_flags())


def training_precision(device: Any, requested: str = "auto") -> Precision:
    """The training step's precision for ``device`` (a torch.device). ``auto``: bf16 where it is native (as
    accurate as fp32 and faster, measured: see the module's notes), fp16 on other CUDA GPUs, else fp32. An explicit
    request is honoured where it can run; fp16 off CUDA is an error. Validation and test run in fp32 regardless."""
    if requested not in PRECISIONS:
        raise DogbreedError(f"unknown precision {requested!r}; use {', '.join(PRECISIONS)}")
    kind = device.type
    if kind == "cuda":
        return _on_cuda(device, requested)
    if requested == "fp16":
        raise DogbreedError(f"fp16 training needs a CUDA GPU; this run is on {device}: use --precision bf16 or fp32")
    if kind == "cpu":
        return _on_cpu(requested)
    if requested == "bf16":
        raise DogbreedError(f"bf16 training is not supported on {device}; use --precision fp32")
    return Precision("fp32", kind, "fp32" + (" (requested)" if requested == "fp32" else ""))


def _cuda_bf16(device: Any) -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def _on_cuda(device: Any, requested: str) -> Precision:
    bf16 = _cuda_bf16(device)
    if requested == "auto":
        if bf16:
            return Precision("bf16", "cuda", "bf16 autocast (this GPU computes bf16 natively)")
        return Precision("fp16", "cuda", "fp16 autocast with a gradient scaler (this GPU has no native bf16)")
    if requested == "bf16" and not bf16:
        raise DogbreedError(f"{device} has no native bf16: use --precision fp16 or fp32")
    return Precision(requested, "cuda", f"{requested} (requested)")


def _on_cpu(requested: str) -> Precision:
    flags = cpu.native_bf16_flags()
    if requested == "auto":
        if flags:
            native = ", ".join(flags)
            return Precision("bf16", "cpu", f"bf16 autocast (this CPU has native bf16: {native}); scoring in fp32")
        return Precision("fp32", "cpu", "fp32 (this CPU has no native bf16)")
    if requested == "bf16" and not flags:
        return Precision(
            "bf16", "cpu", "bf16 (requested)", "this CPU has no native bf16: bf16 is emulated and likely slower"
        )
    return Precision(requested, "cpu", f"{requested} (requested)")
