"""Inference engines behind one small interface.

An engine is loaded for a model (a ``ModelSource``) on a device at a precision, and turns a preprocessed numpy
batch (N x 3 x H x W, float32, see ``imaging.preprocess``) into breed probabilities over the model's classes and,
where the model can tell, the probability of a dog at all. It also says how the job loop should run it
(processes, threads, fork or not), so nothing engine-specific lives in the generic loop.

Adding an engine is one new module in this package with an ``Engine`` subclass, named in ``_MODULES``.

Light module: importing it imports neither torch nor any engine's library.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from dogbreed.errors import DogbreedError
from dogbreed.imaging import Preprocessing

if TYPE_CHECKING:
    import numpy as np

    from dogbreed.sources import ModelSource

ENGINES = ("torch", "openvino")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_MODULES = {"torch": "dogbreed.engines.torch", "openvino": "dogbreed.engines.openvino"}


@dataclass(frozen=True)
class ModelSpec:
    """What every engine knows about a loaded model, whatever runs it."""

    classes: tuple[str, ...]  # WordNet ids of the outputs, in order
    preprocessing: Preprocessing
    has_dog: bool  # whether the model gives a dog probability


@dataclass
class Scores:
    probs: np.ndarray  # (N, len(spec.classes)) float32, rows sum to 1
    dog: np.ndarray | None  # (N,) float32, or None when the model cannot tell


@dataclass(frozen=True)
class Execution:
    """How the job loop runs an engine: ``workers`` processes (0: in the calling process), ``threads`` each, and
    whether workers are forked from a parent that already holds the loaded engine (fast start, shared weights)."""

    workers: int
    threads: int
    fork: bool = False


@dataclass(frozen=True)
class Choice:
    """The engine, precision and device a command runs on, and a note saying why (printed and stored)."""

    engine: str
    precision: str
    device: str
    note: str = ""
    warning: str | None = None  # e.g. a requested device that is not there


class Engine(ABC):
    """Loaded once per process; ``predict`` is called once per batch."""

    name: ClassVar[str]
    spec: ModelSpec
    device: str
    precision: str

    @classmethod
    @abstractmethod
    def choose(cls, source: ModelSource, device: str, precision: str) -> Choice:
        """Resolve ``device`` (auto, cpu, cuda...) and ``precision`` (auto or one of PRECISIONS) for this engine
        and this model, with a note saying why; an impossible request is a DogbreedError."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> Scores:
        """Scores for a preprocessed batch."""

    def set_threads(self, threads: int) -> None:  # noqa: B027 - engines without a thread setting ignore it
        """Limit the compute threads this process uses (workers share the cores)."""

    @classmethod
    def execution(
        cls, device: str, n_jobs: int, batch_size: int, workers: int | None, threads: int | None
    ) -> Execution:
        """Default: everything in the calling process, all cores for the engine's own threads."""
        return Execution(workers or 0, threads or (os.cpu_count() or 1))


def engine_class(name: str) -> type[Engine]:
    if name not in _MODULES:
        raise DogbreedError(f"unknown engine {name!r}; use auto or one of {', '.join(ENGINES)}")
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise DogbreedError(f"the {name} engine is not installed here ({exc.name} is missing)") from None
    return module.ENGINE


def choose(source: ModelSource, device: str = "auto", engine: str = "auto", precision: str = "auto") -> Choice:
    """The engine and precision to use. ``auto`` means torch at fp32 (the reference every other choice is checked
    against); an explicit request is honoured where the device allows it."""
    if precision not in ("auto", *PRECISIONS):
        raise DogbreedError(f"unknown precision {precision!r}; use auto or one of {', '.join(PRECISIONS)}")
    name = "torch" if engine == "auto" else engine
    if source.kind == "export" and engine == "auto":
        name = "openvino"
    return engine_class(name).choose(source, device, precision)


def load_engine(source: ModelSource, choice: Choice) -> Engine:
    return engine_class(choice.engine)(source, choice.device, choice.precision)  # type: ignore[call-arg]
