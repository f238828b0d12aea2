"""Weights into models: torchvision state dicts read from a file (``--weights FILE``), a state dict loaded into a
model with a one-line explanation when it does not fit, and models built without initialising weights that are
about to be replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from dogbreed.errors import DogbreedError
from dogbreed.formats.checkpoint import CHECKPOINT_FORMAT
from dogbreed.formats.torchfile import load_tensors

M = TypeVar("M", bound=nn.Module)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision state dict read safely from ``path``, or a one-line error saying what the file
    is instead."""
    state = load_tensors(path, "weights file")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise DogbreedError(
            f"weights file {path} is a dogbreed checkpoint, not a torchvision state dict; "
            "use it with --checkpoint (or train --from it)"
        )
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        raise DogbreedError(f"weights file {path} holds a {kind}, not a state dict (parameter name -> tensor)")
    return state


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], what: str, expected: str) -> None:
    """``model.load_state_dict(state)`` with a one-line explanation when it does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    mistyped = [k for k in own if k in state and not _same_kind(own[k], state[k])]
    if missing or unexpected or wrong or mistyped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) such as {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) such as {unexpected[0]!r}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatch(es) such as {k!r} {tuple(state[k].shape)} instead of "
                f"{tuple(own[k].shape)}"
            )
        if mistyped:
            k = mistyped[0]
            parts.append(
                f"{len(mistyped)} tensor(s) of the wrong kind such as {k!r} ({state[k].dtype}, {state[k].layout})"
            )
        raise DogbreedError(f"{what} does not fit {expected}: {'; '.join(parts)}")
    # fp16 or fp64 weights (or int32 counters) take the model's own dtype: one dtype per graph
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, assign=True)


def _same_kind(own: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Both dense, both real floating point or both integer: what a cast can reconcile without losing meaning."""
    if theirs.layout != torch.strided or theirs.is_complex() or theirs.is_quantized:
        return False
    return own.is_floating_point() == theirs.is_floating_point()



def skeleton(build: Callable[[], M]) -> M:
    """``build()`` on the meta device, so no time goes into initialising weights that are about to be replaced;
    built normally for the architectures whose constructors compute with tensors (RegNet's block widths)."""
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        return build()


