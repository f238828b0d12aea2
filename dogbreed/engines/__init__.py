"""Inference engines behind one small interface, and the choice of which one runs.

An engine is loaded for a model (a ``ModelSource``) on a device at a precision, and turns a preprocessed numpy
batch (N x 3 x H x W, float32, see ``imaging.preprocess``) into breed probabilities over the model's classes and,
where the model can tell, the probability of a dog at all. It also says how the job loop should run it
(processes, threads, fork or not), so nothing engine-specific lives in the generic loop.

``choose`` turns ``--engine``/``--precision`` (auto or explicit) into a ``Choice`` with a note saying why. Auto
takes the fastest option this machine really has (``cpu`` detects native bf16) that passes the accuracy guard
(``guard``: a recorded check); the fp32 torch model, the reference every check compares against, needs none.
Fastest first, as measured on a 2-core AVX512_BF16 EPYC (ResNet18, 224 px, batch 16, forward alone): OpenVINO
bf16 (~2.4x torch fp32), torch bf16 autocast (~1.8x), OpenVINO f32 (~1.2x), torch fp32.

Adding an engine is one new module in this package with an ``Engine`` subclass (``ENGINE = MyEngine``) and its
line in ``REGISTRY``.

Light module: importing it imports neither torch nor any engine's library, and neither does an auto choice that
lands on OpenVINO for a model it has already converted.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sqlite3
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dogbreed.breeds import is_own
from dogbreed.engines import cpu, guard
from dogbreed.errors import DogbreedError
from dogbreed.imaging import Preprocessing

if TYPE_CHECKING:
    import numpy as np

    from dogbreed.models.sources import ModelSource
    from dogbreed.store.evaluations import EngineCheck

PRECISIONS = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class Registration:
    """An engine as the light choice sees it, without importing it: its module, the library it needs, and where
    auto may pick it: {device kind: {precision: speed rank}} (lower is faster; ranks of all engines compared)."""

    module: str
    library: str
    ranks: dict[str, dict[str, int]]


_TORCH_GPU = {"cuda": {"bf16": 1, "fp16": 2, "fp32": 9}, "mps": {"fp32": 9}}
# One line per engine (measured on a 2-core AVX512_BF16 EPYC, ResNet18 224 px, batch 16, forward alone).
REGISTRY = {
    "torch": Registration("dogbreed.engines.torch", "torch", {"cpu": {"bf16": 2, "fp32": 9}, **_TORCH_GPU}),
    "openvino": Registration("dogbreed.engines.openvino", "openvino", {"cpu": {"bf16": 1, "fp32": 3}}),
}
ENGINES = tuple(REGISTRY)
REFERENCE = ("torch", "fp32")


def _order(kind: str) -> tuple[tuple[str, str], ...]:
    """What auto tries on a device kind, fastest first; the fp32 reference last."""
    ranked = [(rank, e, p) for e, reg in REGISTRY.items() for p, rank in reg.ranks.get(kind, {}).items()]
    return tuple((e, p) for _, e, p in sorted(ranked, key=lambda r: (r[0], (r[1], r[2]) == REFERENCE)))


@dataclass(frozen=True)
class ModelSpec:
    """What every engine knows about a loaded model, whatever runs it."""

    classes: tuple[str, ...]  # breed keys of the outputs, in order (WordNet ids, or own:... for your own breeds)
    preprocessing: Preprocessing
    has_dog: bool  # whether the model gives a dog probability
    names: dict[str, str] = field(default_factory=dict)  # names of its own breeds, from the model file

    @classmethod
    def of(cls, classes: list[list[str]], preprocessing: Preprocessing, has_dog: bool) -> ModelSpec:
        """The spec of a model file's [[key, name], ...] classes."""
        names = {key: name for key, name in classes if is_own(key)}
        return cls(tuple(key for key, _ in classes), preprocessing, has_dog, names)


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
    hint: str = ""  # what the user can do to run faster, under 92 characters; "" when there is nothing to do


class Engine(ABC):
    """Loaded once per process; ``predict`` is called once per batch."""

    name: ClassVar[str]
    spec: ModelSpec
    device: str
    precision: str
    choice: Choice | None = None  # set by load_engine

    @classmethod
    @abstractmethod
    def validate(cls, source: ModelSource) -> None:
        """Check that ``source`` loads (read and verify its files) without building the engine."""

    @classmethod
    @abstractmethod
    def choose(cls, source: ModelSource, device: str, precision: str) -> Choice:
        """An explicit request (this engine, ``precision`` one of PRECISIONS) on a resolved ``device``, with a
        warning where the hardware makes it a poor idea; an impossible request is a DogbreedError."""

    @classmethod
    def supports(cls, source: ModelSource, device: str, precision: str) -> tuple[bool, str]:
        """Whether this engine runs ``precision`` natively on ``device`` (resolved), and if not, why."""
        return precision == "fp32", ""

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


def installed(name: str) -> bool:
    return importlib.util.find_spec(REGISTRY[name].library) is not None


def cpu_execution(n_jobs: int, batch_size: int, workers: int | None, threads: int | None, fork_ok: bool) -> Execution:
    """The CPU plan both engines measured fastest here: one single-threaded worker per core (a single batch runs
    in the calling process: starting a pool would cost more than the work), forked where ``fork_ok``."""
    cores = os.cpu_count() or 1
    if workers is None:
        workers = 0 if n_jobs <= batch_size else min(cores, -(-n_jobs // batch_size))
    per = threads if threads and threads > 0 else (max(1, cores // workers) if workers else cores)
    return Execution(workers, per, workers > 0 and fork_ok and sys.platform.startswith("linux"))


def engine_class(name: str) -> type[Engine]:
    if name not in REGISTRY:
        raise DogbreedError(f"unknown engine {name!r}; use auto or one of {', '.join(ENGINES)}")
    try:
        module = importlib.import_module(REGISTRY[name].module)
    except ImportError as exc:
        raise DogbreedError(f"the {name} engine is not installed here ({exc.name} is missing)") from None
    return module.ENGINE


def check_hint(source: ModelSource) -> str:
    """The command that measures the checks auto needs for ``source``."""
    return f"dogbreed check {source.as_options()}"


def resolve_device(device: str, engine: str) -> tuple[str, str | None]:
    """The device to run on and a warning when the request cannot be met. Decided without importing torch where
    no accelerator can be present (torch's import alone costs 1-3 s)."""
    name = device.strip().lower()
    if engine == "openvino":
        if name not in ("auto", "cpu"):
            return "cpu", f"the openvino engine runs on the CPU; device {device!r} ignored"
        return "cpu", None
    if name == "cpu" or (name == "auto" and not cpu.accelerator_possible()):
        return "cpu", None
    from dogbreed.models.devices import select_device

    dev, warning = select_device(device)
    return str(dev), warning


def choose(
    source: ModelSource,
    device: str = "auto",
    engine: str = "auto",
    precision: str = "auto",
    checks: Sequence[EngineCheck] = (),
) -> Choice:
    """The engine, precision and device to use. ``checks``: the recorded checks of this model
    (``store.evaluations.checks_for``), newest first; without them auto stays at the fp32 reference."""
    if precision not in ("auto", *PRECISIONS):
        raise DogbreedError(f"unknown precision {precision!r}; use auto or one of {', '.join(PRECISIONS)}")
    if engine not in ("auto", *ENGINES):
        raise DogbreedError(f"unknown engine {engine!r}; use auto or one of {', '.join(ENGINES)}")
    if source.kind == "export":
        return _choose_export(source, device, engine, precision, checks)
    if precision == "int8":
        raise DogbreedError(
            "int8 runs on quantized exports: 'dogbreed export --int8', then predict with --checkpoint EXPORTED.xml"
        )
    dev, warning = resolve_device(device, engine)
    if engine != "auto" and precision != "auto":
        choice = engine_class(engine).choose(source, dev, precision)
        return Choice(choice.engine, choice.precision, choice.device, choice.note, warning or choice.warning)
    kind = dev.split(":")[0]
    order = [(e, p) for e, p in _order(kind) or _order("mps") if engine in ("auto", e) and precision in ("auto", p)]
    if not order and engine != "auto":
        order = [(engine, "fp32")]
    if not order and precision == "fp16":
        raise DogbreedError(f"fp16 needs a CUDA GPU; this run is on {dev}: use --precision bf16 or fp32")
    if not order:
        raise DogbreedError(f"no engine runs {precision} on {dev}; use --precision auto or fp32")
    passed_over: list[str] = []
    unchecked: list[str] = []
    for eng, prec in order:
        label = f"{eng} {prec}"
        if not installed(eng):
            passed_over.append(f"{label}: {eng} is not installed")
            continue
        guarded = precision == "auto" and (eng, prec) != REFERENCE and not (engine == eng and prec == "fp32")
        why = ""
        if guarded:
            ok, why = guard.verdict(guard.latest(checks, eng, prec, dev), prec)
            if not ok:
                (unchecked if why == "no accuracy check recorded" else passed_over).append(f"{label}: {why}")
                continue
        ok, hardware = engine_class(eng).supports(source, dev, prec)
        if not ok:
            passed_over.append(f"{label}: {hardware}")
            continue
        note = _note(source, label, why, guarded, precision, passed_over, unchecked)
        return Choice(eng, prec, dev, note, warning, _hint(source, passed_over, unchecked))
    if engine == "auto" and precision != "auto" and installed("torch"):  # an explicit precision is honoured
        forced = engine_class("torch").choose(source, dev, precision)
        return Choice(forced.engine, forced.precision, forced.device, forced.note, warning or forced.warning)
    raise DogbreedError(f"no engine can run this model on {dev}: {'; '.join(passed_over)}")


def _note(
    source: ModelSource,
    label: str,
    why: str,
    guarded: bool,
    precision: str,
    passed_over: list[str],
    unchecked: list[str],
) -> str:
    if guarded:
        text = f"{label}: {why}"
    elif precision != "auto":
        text = f"{label} (requested)"
    else:
        text = f"{label} (the reference)" if label == " ".join(REFERENCE) else label
    if passed_over:
        text += "; not " + "; not ".join(passed_over)
    if unchecked:
        names = ", ".join(u.split(":")[0] for u in unchecked)
        text += (
            f"; {names} not checked yet: measure with '{check_hint(source)}' (it needs at least "
            f"{guard.MIN_IMAGES} held-out images; --dataset DIR supplies them)"
        )
    return text


def _hint(source: ModelSource, passed_over: list[str], unchecked: list[str]) -> str:
    """What gets a faster engine here, short; "" when nothing does (the guard refused on a real measurement, the
    hardware lacks it, or the fastest option already runs)."""
    few = [p for p in passed_over if "checked on only" in p]
    if not unchecked and not few:
        return ""
    if source.kind == "ready":
        return f"faster engines: measured automatically once the store holds {guard.MIN_IMAGES} photos"
    what = "faster engines unchecked" if unchecked else "faster engines checked on too few images"
    text = f"{what}; measure: {check_hint(source)}{'' if unchecked else ' --dataset DIR'}"
    return text if len(text) < 92 else f"{what}; measure with 'dogbreed check' and this model's options"


def _choose_export(
    source: ModelSource, device: str, engine: str, precision: str, checks: Sequence[EngineCheck]
) -> Choice:
    """Exports run on OpenVINO at the precision they were made for (int8), or fp32/bf16 (fp32 exports)."""
    if engine == "torch":
        raise DogbreedError(f"{source.ref} is an exported model: it runs on the openvino engine (--engine auto)")
    if not installed("openvino"):
        raise DogbreedError(f"{source.ref} is an exported model and needs OpenVINO: pip install openvino")
    from dogbreed.engines.openvino import read_export

    meta = read_export(source.ref)[1]
    warning = None if device.strip().lower() in ("auto", "cpu") else f"exported models run on the CPU; {device} ignored"
    check = guard.latest  # checks of an export are keyed by its own key (target_key)
    if meta.precision == "int8":
        if precision not in ("auto", "int8"):
            raise DogbreedError(f"{source.ref} is an int8 model; run it with --precision auto or int8")
        ok, why = guard.verdict(check(checks, "openvino", "int8", "cpu", source.key), "int8")
        vnni = "" if cpu.detect().vnni else "; no native int8 (VNNI) here, so about half its speed there"
        if not ok and precision == "auto":
            raise DogbreedError(
                f"auto does not run the int8 model {source.name}: {why} (the guard allows at most a 1-point drop). "
                "Re-export it with 'dogbreed export --int8 --dataset DIR' (labelled held-out images), predict with "
                "the fp32 model, or pass --precision int8 to run it anyway"
            )
        note = f"openvino int8: {why}{vnni}" if ok else f"openvino int8 (requested; unguarded: {why}){vnni}"
        return Choice("openvino", "int8", "cpu", note, warning)
    if precision == "int8":
        raise DogbreedError(f"{source.ref} is an fp32 model; make an int8 one with 'dogbreed export --int8'")
    if precision in ("fp32", "bf16"):
        choice = engine_class("openvino").choose(source, "cpu", precision)
        return Choice("openvino", precision, "cpu", choice.note, warning or choice.warning)
    if precision == "fp16":
        raise DogbreedError("fp16 is for CUDA GPUs; exported models run on the CPU at fp32, bf16 or int8")
    native, hardware = cpu.native_bf16()
    ok, why = guard.verdict(check(checks, "openvino", "bf16", "cpu", source.key), "bf16")
    if native and ok:
        return Choice("openvino", "bf16", "cpu", f"openvino bf16: {why}", warning)
    reason = hardware if not native else why
    return Choice("openvino", "fp32", "cpu", f"openvino fp32 (exported model; not bf16: {reason})", warning)


def load_engine(source: ModelSource, choice: Choice) -> Engine:
    """The engine ``choice`` names, loaded for ``source``; it keeps the choice (``engine.choice``) for notes."""
    engine = engine_class(choice.engine)(source, choice.device, choice.precision)  # type: ignore[call-arg]
    engine.choice = choice
    return engine


def choose_for(
    conn: sqlite3.Connection | None,
    source: ModelSource,
    device: str = "auto",
    engine: str = "auto",
    precision: str = "auto",
) -> Choice:
    """``choose`` with the accuracy checks this store recorded for ``source`` (none without a store): what predict,
    eval and the Python API all run."""
    from dogbreed.store.evaluations import checks_for

    checks = checks_for(conn, source.key) if conn is not None else []
    return choose(source, device, engine, precision, checks)


def open_engine(
    conn: sqlite3.Connection | None,
    source: ModelSource,
    device: str = "auto",
    engine: str = "auto",
    precision: str = "auto",
) -> Engine:
    """The one way to open an engine for a model: the auto choice (``choose_for``), loaded."""
    return load_engine(source, choose_for(conn, source, device, engine, precision))


def validate(source: ModelSource) -> None:
    """Whether ``source`` loads, cheaply (its file read and checked, no engine compiled): the engine that would run
    it answers. A model that cannot be loaded is a DogbreedError naming the file and the problem."""
    engine_class("openvino" if source.kind == "export" else "torch").validate(source)
