"""The OpenVINO engine: CPU inference at f32, bf16 (where the CPU has it natively) or int8 (quantized exports).

Exported models (OpenVINO IR .xml/.bin, ONNX) load with no torch import at all: decoding is Pillow, the
preprocessing numpy (``imaging.preprocess``), the description comes from the file. Checkpoints and ready models are
converted once (``engines.convert``, which needs torch) and the IR is kept under ``$DOGBREED_HOME/cache/openvino``
keyed by the model's key and the dogbreed/OpenVINO versions, so the next run loads it like an export. Compiling an
IR takes ~0.1 s (ResNet50, measured with and without OpenVINO's CACHE_DIR: no gain), so compiled blobs are not
kept.

Execution, measured on 2 cores (ResNet18 224 px, 512 stored 500x375 JPEGs, `predict --all`, quiet machine): one
single-threaded worker per core, each decoding its own batches and running its own compiled model, gave 305-319
img/s at int8 and 193-199 at bf16; the same run in one process (OpenVINO's 2 threads) gave 252-254 and 163-167, and
a prototype overlapping decoding in Python threads with async infer requests (1 or 2 streams) 150-290 and 165-190,
swinging with the machine's load. So the job loop runs it
like the torch engine: forked workers, one thread each. The model is compiled lazily, in the process that runs
it: a parent that compiled nothing forks cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from dogbreed.engines import Choice, Engine, Execution, ModelSpec, Scores, cpu_execution
from dogbreed.engines import cpu as cpu_features
from dogbreed.engines.convert import cache_dir, convert_cached
from dogbreed.errors import DogbreedError
from dogbreed.formats.export import META_KEY, ExportMeta
from dogbreed.models.sources import ModelSource

_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the quantized layers are int8 whatever the hint


def _core() -> ov.Core:
    return ov.Core()


def library_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports native bf16 (it only does on AVX512_BF16/AMX hardware)."""
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def read_meta(model: ov.Model, where: str) -> ExportMeta:
    """The dogbreed description attached to an IR (rt_info) or an ONNX file (metadata_props, which OpenVINO
    exposes under rt_info/framework)."""
    for path in ([META_KEY], ["framework", META_KEY]):
        if model.has_rt_info(path):
            return ExportMeta.from_json(model.get_rt_info(path).astype(str), where)
    raise DogbreedError(
        f"{where} is not a dogbreed export (it carries no dogbreed description); make one with 'dogbreed export'"
    )


def _reason(exc: BaseException) -> str:
    """The informative end of an OpenVINO error (its messages start with source-file locations)."""
    import re

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    last = re.sub(r"^.*(?:failed at|Exception from) \S+:\d+:\s*", "", last)
    return last[:200]


def _check_io(model: ov.Model, meta: ExportMeta, where: str) -> None:
    """The graph must take N x 3 x crop x crop and give N x classes (and N dog probabilities)."""
    size = meta.preprocessing.crop_size
    if len(model.inputs) != 1:
        raise DogbreedError(f"{where} has {len(model.inputs)} inputs; a dogbreed export has one (the image batch)")
    shape = model.inputs[0].get_partial_shape()
    want = ov.PartialShape([-1, 3, size, size])
    if shape.rank.is_dynamic or len(shape) != 4 or not shape.compatible(want):
        raise DogbreedError(f"{where} takes input {shape}, not the N x 3 x {size} x {size} its description says")
    outputs = 2 if meta.has_dog else 1
    if len(model.outputs) != outputs:
        raise DogbreedError(f"{where} has {len(model.outputs)} outputs; its description says {outputs}")
    probs = model.outputs[0].get_partial_shape()
    if len(probs) != 2 or not probs.compatible(ov.PartialShape([-1, len(meta.classes)])):
        raise DogbreedError(f"{where} gives {probs} scores, not one per each of its {len(meta.classes)} classes")


_READ: dict[tuple, tuple[ov.Model, ExportMeta]] = {}


def read_export(path: Path | str) -> tuple[ov.Model, ExportMeta]:
    """An exported model and its validated description; a damaged or foreign file is a one-line error. Kept for
    the process (keyed by the file's identity), since choosing and loading both read it and reading an ONNX file
    converts it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DogbreedError(f"{path}: {exc.strerror or exc}") from None
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _READ:
        _READ.clear()
        _READ[key] = _read_export(path)
    return _READ[key]


def _read_export(path: Path | str) -> tuple[ov.Model, ExportMeta]:
    where = str(path)
    try:
        model = _core().read_model(where)
    except RuntimeError as exc:
        raise DogbreedError(f"{where} cannot be read as an OpenVINO or ONNX model: {_reason(exc)}") from None
    meta = read_meta(model, where)
    _check_io(model, meta, where)
    return model, meta


# ---------------------------------------------------------------- the engine


class OpenVinoEngine(Engine):
    name = "openvino"

    def __init__(self, source: ModelSource, device: str = "cpu", precision: str = "fp32"):
        if precision not in _HINTS:
            raise DogbreedError(f"the openvino engine runs fp32, bf16 or int8, not {precision}")
        self.device, self.precision = "cpu", precision
        path = source.ref if source.kind == "export" else convert_cached(source)
        self.model, self.meta = read_export(path)
        if source.kind != "export" and self.meta.source_key != source.key:
            raise DogbreedError(f"the cached conversion {path} belongs to another model; delete {cache_dir()}")
        if (self.meta.precision == "int8") != (precision == "int8"):
            raise DogbreedError(
                f"{source.name} is an {self.meta.precision} model; run it at "
                f"{'int8' if self.meta.precision == 'int8' else 'fp32 or bf16'}"
            )
        self.spec = ModelSpec(self.meta.wnids, self.meta.preprocessing, self.meta.has_dog)
        self._threads = os.cpu_count() or 1
        self._compiled: Any = None
        self._request: Any = None

    def _compile(self) -> None:
        cores = os.cpu_count() or 1
        config = {
            "INFERENCE_PRECISION_HINT": _HINTS[self.precision],  # always explicit: OpenVINO's own default is bf16
            "INFERENCE_NUM_THREADS": self._threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": self._threads >= cores,  # workers sharing the cores must not pin to the same one
        }
        self._compiled = _core().compile_model(self.model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    def predict(self, batch: np.ndarray) -> Scores:
        if self._request is None:
            self._compile()
        self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        probs = np.array(self._request.get_output_tensor(0).data, dtype=np.float32)  # a copy: buffers are reused
        dog = np.array(self._request.get_output_tensor(1).data, dtype=np.float32) if self.spec.has_dog else None
        return Scores(probs, dog)

    @classmethod
    def validate(cls, source: ModelSource) -> None:
        """An export is read and its description and inputs/outputs checked; other models are converted from torch
        when first run (``engines.validate`` asks the torch engine about them)."""
        if source.kind == "export":
            read_export(source.ref)

    def set_threads(self, threads: int) -> None:
        threads = max(1, threads)
        if threads != self._threads:
            self._threads = threads
            self._compiled = self._request = None

    @classmethod
    def supports(cls, source: ModelSource, device: str, precision: str) -> tuple[bool, str]:
        if device != "cpu":
            return False, "OpenVINO runs on the CPU here"
        if precision == "bf16":
            return cpu_features.native_bf16(library_bf16() if cpu_features.detect().bf16 is None else None)
        if precision == "fp16":
            return False, "fp16 is for CUDA GPUs"
        return True, ""

    @classmethod
    def choose(cls, source: ModelSource, device: str, precision: str) -> Choice:
        """Explicit requests only (auto is decided in ``engines.choose`` with the recorded checks)."""
        ok, why = cls.supports(source, device, precision)
        if not ok and precision != "bf16":
            raise DogbreedError(f"the openvino engine cannot run {precision}: {why}")
        warning = None if ok else f"{why}: bf16 is emulated here and slower than fp32 (try --precision fp32)"
        return Choice("openvino", precision, "cpu", f"openvino {precision} (requested)", warning)

    @classmethod
    def execution(
        cls, device: str, n_jobs: int, batch_size: int, workers: int | None, threads: int | None
    ) -> Execution:
        return cpu_execution(n_jobs, batch_size, workers, threads, fork_ok=True)


ENGINE = OpenVinoEngine
