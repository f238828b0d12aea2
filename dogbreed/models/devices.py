"""Which torch device a command runs on: cuda, then mps, then cpu for ``auto``; an unavailable request falls back
to the CPU with a one-line warning."""

from __future__ import annotations

import torch

from dogbreed.errors import DogbreedError


def select_device(requested: str = "auto") -> tuple[torch.device, str | None]:
    """The device to use and, when the request cannot be met, a one-line warning naming the fallback.

    ``auto`` picks cuda, then mps, then cpu. ``gpu`` is an alias of ``cuda``.
    """
    name = requested.strip().lower()
    name = "cuda" if name == "gpu" else name
    cuda_ok = torch.cuda.is_available()
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda_ok else "mps" if mps_ok else "cpu"), None
    if name.startswith("cuda"):
        if not cuda_ok:
            return torch.device("cpu"), f"device {requested!r} requested but CUDA is not available; using cpu"
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DogbreedError(f"unknown device {requested!r}; use cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DogbreedError(f"no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device, None
    if name == "mps":
        if mps_ok:
            return torch.device("mps"), None
        return torch.device("cpu"), f"device {requested!r} requested but MPS is not available; using cpu"
    if name == "cpu":
        return torch.device("cpu"), None
    raise DogbreedError(f"unknown device {requested!r}; use auto, cpu, cuda (or gpu), or mps")
