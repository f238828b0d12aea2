"""Mixed precision for training: which precision a device trains fastest at without losing accuracy, and the
autocast / gradient-scaler pair that runs it.

- bf16 autocast where the hardware computes bf16 natively: CPUs with AVX512_BF16 or AMX-BF16, GPUs that support
  it. bf16 keeps fp32's exponent range, so no loss scaling is needed.
- fp16 autocast with a GradScaler on other CUDA GPUs (fp16's small range needs the scaled loss).
- fp32 elsewhere. bf16 on a CPU without native support is honoured when asked for, but emulated: usually slower.

CPU features come from /proc/cpuinfo. ``DOGBREED_CPU_FEATURES=none`` hides them all (as if the CPU had no native
bf16); any other value is taken as the CPU's flag list (e.g. ``avx512_bf16``), which is how tests and odd kernels
state what the CPU can do. Inference reads the same variable.

Light module: torch is imported inside the functions that need it.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from dogbreed.errors import DogbreedError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENV_CPU_FEATURES = "DOGBREED_CPU_FEATURES"
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_features() -> frozenset[str]:
    """The CPU's feature flags (lower case), from $DOGBREED_CPU_FEATURES when set, else /proc/cpuinfo."""
    forced = os.environ.get(ENV_CPU_FEATURES)
    if forced is not None:
        text = forced.strip().lower()
        return frozenset() if text in ("", "none") else frozenset(text.replace(",", " ").split())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].lower().split())
    except OSError:  # not Linux: no flags we can trust, so no native bf16 claimed
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return bool(cpu_features() & NATIVE_BF16_FLAGS)


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


def _cuda_bf16(device: Any) -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def choose(device: Any, requested: str = "auto") -> Precision:
    """The training precision for ``device`` (a torch.device). ``auto``: bf16 where it is native, fp16 on other
    CUDA GPUs, else fp32. An explicit request is honoured where it can run; fp16 off CUDA is an error."""
    if requested not in PRECISIONS:
        raise DogbreedError(f"unknown precision {requested!r}; use {', '.join(PRECISIONS)}")
    kind = device.type
    if kind == "cuda":
        bf16 = _cuda_bf16(device)
        if requested == "auto":
            if bf16:
                return Precision("bf16", kind, "bf16 autocast (this GPU computes bf16 natively)")
            return Precision("fp16", kind, "fp16 autocast with a gradient scaler (this GPU has no native bf16)")
        if requested == "bf16" and not bf16:
            raise DogbreedError(f"{device} has no native bf16: use --precision fp16 or fp32")
        return Precision(requested, kind, f"{requested} (requested)")
    if requested == "fp16":
        raise DogbreedError(f"fp16 training needs a CUDA GPU; this run is on {device}: use --precision bf16 or fp32")
    if kind == "cpu":
        flags = sorted(cpu_features() & NATIVE_BF16_FLAGS)
        native = bool(flags)
        if requested == "auto":
            if native:
                return Precision("bf16", kind, f"bf16 autocast (this CPU has native bf16: {', '.join(flags)})")
            return Precision("fp32", kind, "fp32 (this CPU has no native bf16)")
        if requested == "bf16" and not native:
            return Precision(
                "bf16", kind, "bf16 (requested)", "this CPU has no native bf16: bf16 is emulated and likely slower"
            )
        return Precision(requested, kind, f"{requested} (requested)")
    if requested == "bf16":
        raise DogbreedError(f"bf16 training is not supported on {device}; use --precision fp32")
    return Precision("fp32", kind, "fp32" + (" (requested)" if requested == "fp32" else ""))
