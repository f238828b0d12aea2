"""The training state a run can continue from: every random stream, the seeding, and the checked state a
``.last.pt`` checkpoint keeps (read back for ``resume``, with the run's configuration, from the store).
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dogbreed.errors import DogbreedError
from dogbreed.formats.checkpoint import read_checkpoint
from dogbreed.store import connect
from dogbreed.store import runs as run_rows
from dogbreed.train import distributed
from dogbreed.train.config import TrainConfig
from dogbreed.train.distributed import Context

STATE_KEY = "train_state"  # where a last-state checkpoint keeps what resuming needs


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """Every random stream this process draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "loader": generator.get_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return state


def set_rng_state(state: dict[str, Any], device: torch.device, generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    keys = np_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_state["pos"], np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_resume(
    db_path: Path, run_id: int, overrides: dict[str, Any], checkpoints_dir: Path | None, ctx: Context
) -> tuple[TrainConfig, dict | None, dict | None]:
    """Rank 0 reads the run and its saved state; every rank gets the configuration (and, later, by broadcast, the
    optimizer state)."""
    config = state = model_state = None
    if ctx.main:
        conn = connect(db_path)
        try:
            run_rows.mark_abandoned(conn)
            run = run_rows.get_run(conn, run_id)
        finally:
            conn.close()
        if run is None:
            raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
        if run.status == "finished":
            raise DogbreedError(
                f"run {run_id} already finished; to train further start a new run from it: --from {run_id}"
            )
        if run.status == "running":
            raise DogbreedError(f"run {run_id} is still running (its process is alive); stop it before resuming")
        if not run.last_checkpoint_path or not Path(run.last_checkpoint_path).is_file():
            raise DogbreedError(
                f"run {run_id} kept no training state to resume from (it ended before its first epoch, ran with "
                "--no-save, or its .last.pt file was removed); start a new run"
            )
        config = TrainConfig.from_params(run.params or {}, checkpoints_dir or Path(run.last_checkpoint_path).parent)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, Path(value) if key in ("dataset", "tensorboard") else value)
        meta, model_state, rest = read_checkpoint(run.last_checkpoint_path)
        state = checked_state(rest.get(STATE_KEY), run.last_checkpoint_path, config.epochs)
        state = {**state, "meta": asdict(meta)}
    config = distributed.broadcast(ctx, config)
    return config, state, model_state


_STATE_TYPES = {
    "epoch": int,
    "optimizer": dict,
    "scheduler": dict,
    "epochs": list,
    "best_epoch": int,
    "best_val_acc": float,
    "rng": list,
}


def checked_state(state: Any, path: str, epochs: int) -> dict:
    """A saved training state with the parts resuming reads, of the right types (a damaged or crafted file is a
    one-line error, not a traceback half-way through restoring)."""
    if not isinstance(state, dict):
        raise DogbreedError(f"{path} holds no training state to resume from")
    for key, kind in _STATE_TYPES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise DogbreedError(f"{path} holds a damaged training state ({key!r} is missing or not a {kind.__name__})")
    if not 1 <= state["epoch"] <= epochs or len(state["epochs"]) != state["epoch"]:
        raise DogbreedError(f"{path} holds a damaged training state (epoch {state['epoch']} of {epochs})")
    return state


def shareable(state: dict | None) -> dict | None:
    """The part of a saved state other ranks need (not the weights: those travel by ``sync_weights``)."""
    if state is None:
        return None
    return {k: v for k, v in state.items() if k != "best_state"}
