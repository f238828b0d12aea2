"""The training state a run can continue from: every random stream, the seeding, and the checked state a
``.last.pt`` checkpoint keeps (read back for ``resume``, with the run's configuration, from the store).
"""

from __future__ import annotations

import os
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
from dogbreed.store.runs import ResumeClaim
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
) -> tuple[TrainConfig, dict | None, dict | None, ResumeClaim | None]:
    """Rank 0 claims the run in the store (``runs.claim_for_resume``: of two resumers one wins, the other is refused
    having written nothing) and reads its saved state; every rank gets the configuration (and, later, by
    broadcast, the optimizer state). Returns the claim too: a resume that fails before training hands it back."""
    config = state = model_state = claim = None
    if ctx.main:
        conn = connect(db_path)
        try:
            claim = run_rows.claim_for_resume(conn, run_id, os.getpid())
            _refuse_unclaimed(run_id, claim)
            try:
                config, state, model_state = _saved_state(conn, run_id, overrides, checkpoints_dir)
            except BaseException:
                run_rows.hand_back(conn, run_id, claim, os.getpid())
                raise
        finally:
            conn.close()
    config = distributed.broadcast(ctx, config)
    return config, state, model_state, claim


def _refuse_unclaimed(run_id: int, claim: ResumeClaim) -> None:
    if claim.taken:
        return
    if claim.status is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    if claim.status == "finished":
        raise DogbreedError(f"run {run_id} already finished; to train further start a new run from it: --from {run_id}")
    raise DogbreedError(
        f"run {run_id} is already being trained by process {claim.owner_pid} (another 'dogbreed train --resume "
        f"{run_id}'?); it was left alone: wait for that process, or stop it before resuming"
    )


def _saved_state(
    conn: Any, run_id: int, overrides: dict[str, Any], checkpoints_dir: Path | None
) -> tuple[TrainConfig, dict, dict]:
    """The run's configuration (with the allowed overrides) and its checked training state."""
    run = run_rows.get_run(conn, run_id)
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
    return config, {**state, "meta": asdict(meta)}, model_state


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
