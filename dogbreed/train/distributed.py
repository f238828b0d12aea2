"""Training on several processes with PyTorch's own distributed engine: ``torchrun --nproc-per-node N -m dogbreed
train ...`` (one node or many), or ``dogbreed train --nproc N``, which starts torchrun on this machine.

Each process (rank) trains a DistributedDataParallel replica on its share of the data: backend nccl on CUDA (one
GPU per process, by LOCAL_RANK), gloo on the CPU. Rank 0 alone writes the store, the checkpoints and the console;
every other rank receives from it what it needs (the weights to start from, the resumed optimizer state, the list
of unreadable images), so no rank but 0 needs the store or the checkpoint folder. Metrics are computed from every
rank's predictions gathered together, so they are exactly those of one process seeing all the data.

Light module: torch is imported inside the functions that need it (the CLI reads the rank from the environment).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.train.config import Terminated

TIMEOUT = timedelta(minutes=30)  # one rank may extract features or verify the dataset while the others wait


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def env_world() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes (1: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> range:
        """The indices of ``n`` items this rank handles (every world-th one; no padding, no repeats)."""
        return range(self.rank, n, self.world)


SINGLE = Context()


def start(device_request: str) -> tuple[Context, Any]:
    """Join the process group torchrun described in the environment. Returns (context, the torch.device this rank
    uses) or (SINGLE, None) when not launched by torchrun with more than one process."""
    world = env_world()
    if world <= 1:
        return SINGLE, None
    import torch
    import torch.distributed as dist

    rank, local_rank = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    wants_cpu = device_request.strip().lower() == "cpu"
    if not wants_cpu and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise DogbreedError(
                f"{os.environ.get('LOCAL_WORLD_SIZE', '?')} processes on this node but only "
                f"{torch.cuda.device_count()} GPU(s): use --nproc-per-node {torch.cuda.device_count()} or fewer"
            )
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT, **kwargs)
    return Context(rank, world, local_rank, backend), device


def stop(ctx: Context) -> None:
    if not ctx.active:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def gather(ctx: Context, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.active:
        return [obj]
    import torch.distributed as dist

    found: list[Any] = [None] * ctx.world
    dist.all_gather_object(found, obj)
    return found


def broadcast(ctx: Context, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.active:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_agree(ctx: Context, ok: bool) -> bool:
    """True on every rank when ``ok`` is true on every rank (e.g. every rank has a batch it can train on)."""
    if not ctx.active:
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], device="cuda" if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def sync_weights(ctx: Context, module: Any) -> None:
    """Give every rank rank 0's parameters and buffers (how warm starts and resumes reach ranks that never read the
    checkpoint)."""
    if not ctx.active:
        return
    import torch.distributed as dist

    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def broadcast_weights(ctx: Context, weights: dict | None, module: Any) -> dict:
    """Rank 0's ``weights`` (a state dict shaped like ``module``'s) on every rank (how a resumed run's best weights,
    which rank 0 alone read, reach the others)."""
    if not ctx.active:
        return weights
    import torch
    import torch.distributed as dist

    own = module.state_dict()
    if not ctx.main:
        weights = {k: torch.empty_like(v) for k, v in own.items()}
    out = {}
    for key, value in weights.items():
        tensor = value.to(own[key].device).contiguous()
        dist.broadcast(tensor, src=0)
        out[key] = tensor
    return out


def wrap(ctx: Context, module: Any, device: Any) -> Any:
    """``module`` as a DistributedDataParallel replica (itself when not distributed)."""
    if not ctx.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


# ---------------------------------------------------------------- SIGTERM and failed peers


class SigtermAsException:
    """While training (main thread only), SIGTERM raises ``Terminated`` so the run is recorded as failed instead of
    the process vanishing mid-epoch with its record still 'running'. ``hold`` ignores further SIGTERMs while the
    end of the run is written; leaving restores the previous handler."""

    def __enter__(self) -> SigtermAsException:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the run is being recorded as failed
        raise Terminated()

    def hold(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def is_peer_failure(exc: BaseException) -> bool:
    """An error of the collective layer: another rank died or hung up (gloo reports a reset connection as a plain
    RuntimeError naming itself)."""
    import torch.distributed

    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection reset", "closed"))


# ---------------------------------------------------------------- the launcher


def launch(nproc: int, argv: list[str]) -> None:
    """Run ``python -m dogbreed ARGV`` as ``nproc`` ranks on this machine through torchrun (in this process, which
    becomes torchrun's agent). A failed rank is a one-line error naming it and how it ended."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if nproc < 1:
        raise DogbreedError("--nproc must be at least 1")
    cores = os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))  # torchrun's own default is 1
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "--module", "dogbreed", *argv])
    except ChildFailedError as exc:
        parts = []
        for rank, failure in sorted(exc.failures.items()):
            code = failure.exitcode
            how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else code
            parts.append(f"rank {rank} exited with {how}")
        raise DogbreedError(f"distributed training failed: {'; '.join(parts)}; see 'dogbreed stats'") from None
