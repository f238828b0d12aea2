"""Export a model (a training run's checkpoint, any checkpoint, a ready ImageNet model) to OpenVINO IR or ONNX,
optionally quantized to int8, so it predicts without torch and without its checkpoint.

The graph is ``model.Predictor`` (breed probabilities and, where the model has one, the dog probability),
converted by the libraries made for it: OpenVINO's ``convert_model``, torch's ONNX exporter, NNCF's post-training
quantization. The file carries its own description (``formats.export.ExportMeta``): classes, preprocessing, dog
output, precision, the model it came from.

Every export is checked before the command ends: its top-1 agreement with the fp32 torch model on held-out images
(and, where those have labels, both accuracies) is recorded in the store, which is what lets ``predict``'s auto
choice use it (``engines.choose``). The same conversion, cached under ``$DOGBREED_HOME/cache``, is how the
OpenVINO engine runs checkpoints and ready models.

OpenVINO's conversion and NNCF send usage telemetry by default; dogbreed turns it off for the calls it makes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.engines.convert import inference_graph, quiet_libraries, to_openvino
from dogbreed.errors import DogbreedError, one_line
from dogbreed.formats.export import META_KEY, ExportMeta
from dogbreed.models.sources import ModelSource

if TYPE_CHECKING:
    from dogbreed.checks import CheckResult, ImageSet

FORMATS = ("openvino", "onnx")
SUFFIXES = {"openvino": ".xml", "onnx": ".onnx"}
CALIBRATION_IMAGES = 300
MIN_CALIBRATION_IMAGES = 16


@dataclass
class ExportRequest:
    source: ModelSource
    format: str = "openvino"
    int8: bool = False
    output: Path | None = None
    dataset: Path | None = None  # held-out and calibration images from here instead of the run's dataset
    calibration_images: int = CALIBRATION_IMAGES
    check_images: int = 500
    check: bool = True


@dataclass
class ExportOutcome:
    path: Path
    files: list[Path]
    meta: ExportMeta
    size_bytes: int
    seconds: float
    key: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    check_data: str | None = None  # which held-out images the checks used
    check_skipped: str | None = None  # why there is no check


# ---------------------------------------------------------------- the graph and its description


def quantize(model: Any, images: ImageSet, prep: Any) -> Any:
    """NNCF post-training int8 quantization of an OpenVINO model (or an ONNX ModelProto), calibrated on
    ``images`` decoded with the model's own preprocessing."""
    from dogbreed.imaging import preprocess

    with quiet_libraries():
        import nncf

        onnx_model = type(model).__name__ == "ModelProto"  # NNCF's ONNX backend feeds inputs by name

        def transform(data: bytes) -> Any:
            batch = preprocess(data, prep)[None]
            return {"input": batch} if onnx_model else batch

        dataset = nncf.Dataset(images, transform)
        quantized = nncf.quantize(model, dataset, subset_size=len(images))
    return quantized


# ---------------------------------------------------------------- writing files


def default_output(source: ModelSource, fmt: str, int8: bool) -> Path:
    from dogbreed.config import resolve_paths
    from dogbreed.files import safe_name

    stem = Path(source.ref).stem if source.kind == "checkpoint" else (source.arch or "model")
    if source.weights_file:
        stem = f"{source.arch}-{Path(source.weights_file).stem}"
    return resolve_paths().exports / f"{safe_name(stem)}{'-int8' if int8 else ''}{SUFFIXES[fmt]}"


def output_path(request: ExportRequest) -> Path:
    """Where the export goes: ``--output`` (a file with the format's suffix, or a folder: an existing one, or a
    name without a suffix, made when missing), else under ``$DOGBREED_HOME/exports``."""
    fmt = request.format
    if request.output is None:
        return default_output(request.source, fmt, request.int8)
    out = Path(request.output).expanduser()
    if out.is_dir() or not out.suffix:
        return out / default_output(request.source, fmt, request.int8).name
    suffix = out.suffix.lower()
    if suffix in SUFFIXES.values() and suffix != SUFFIXES[fmt]:
        raise DogbreedError(f"--output {out} has the {suffix} suffix, but --format {fmt} writes {SUFFIXES[fmt]} files")
    if suffix != SUFFIXES[fmt]:
        raise DogbreedError(f"--output {out}: an {fmt} export is a {SUFFIXES[fmt]} file; name it so")
    return out


def _replace_into(tmp_dir: Path, written: list[Path], target: Path) -> list[Path]:
    """Move the files written in ``tmp_dir`` next to ``target`` under its name; the graph file (.xml/.onnx) last,
    so a reader never finds a new graph with old weights."""
    finals = []
    for path in sorted(written, key=lambda p: p.suffix.lower() in (".xml", ".onnx")):
        final = target.with_suffix(path.suffix)
        os.replace(path, final)
        finals.append(final)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return finals


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (same file system, so the final rename is atomic); removed on failure."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as exc:
        raise DogbreedError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
    except OSError as exc:
        if exc.errno == 28:
            raise DogbreedError(f"cannot write {target}: the disk is full; free some space and try again") from None
        raise DogbreedError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_openvino(model: Any, target: Path) -> list[Path]:
    """The IR pair (target .xml and .bin), written atomically; weights stay fp32 (no fp16 compression)."""
    import openvino as ov

    with _staging(target) as tmp:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        return _replace_into(tmp, [tmp / "model.bin", tmp / "model.xml"], target)


def _onnx_export(net: Any, meta: ExportMeta, path: Path) -> Any:
    """torch's ONNX exporter (torch.export based), dynamic batch, one self-contained file; returns the ModelProto."""
    import onnx
    import torch

    size = meta.preprocessing.crop_size
    names = ["probs", "dog"] if meta.has_dog else ["probs"]
    try:
        with quiet_libraries(), torch.inference_mode():
            torch.onnx.export(
                net,
                (torch.zeros(2, 3, size, size),),
                str(path),
                dynamo=True,
                input_names=["input"],
                output_names=names,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                external_data=False,
            )
    except Exception as exc:  # torch.export and the ONNX translation raise many types
        raise DogbreedError(f"torch's ONNX exporter cannot export {meta.source_name}: {one_line(exc)}") from None
    return onnx.load(str(path))


def save_onnx(proto: Any, meta: ExportMeta, target: Path) -> list[Path]:
    import onnx

    onnx.helper.set_model_props(proto, {META_KEY: meta.to_json()})
    with _staging(target) as tmp:
        onnx.save(proto, str(tmp / "model.onnx"))
        return _replace_into(tmp, [tmp / "model.onnx"], target)


def _require(modules: list[str], how: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DogbreedError(f"this export needs {', '.join(missing)}, which is not installed: {how}")


# ---------------------------------------------------------------- the use case


def _check_request(request: ExportRequest) -> None:
    if request.format not in FORMATS:
        raise DogbreedError(f"unknown format {request.format!r}; use {' or '.join(FORMATS)}")
    _require(["openvino"] + (["nncf"] if request.int8 else []), "pip install openvino nncf")
    if request.format == "onnx":
        needed = ["onnx", "onnxscript"] + (["onnxruntime"] if request.int8 else [])
        _require(needed, "pip install 'dogbreed[onnx]'; --format openvino needs nothing more")


def _pick_images(conn: Any, request: ExportRequest) -> tuple[ImageSet | None, ImageSet | None]:
    """(held-out images for the check, calibration images for int8), found before any conversion starts."""
    from dogbreed import checks

    if not (request.check or request.int8):
        return None, None
    n_calibration = request.calibration_images if request.int8 else 0
    held_out, calibration = checks.export_images(
        conn, request.source, request.dataset, request.check_images, n_calibration
    )
    if request.int8 and (calibration is None or len(calibration) < MIN_CALIBRATION_IMAGES):
        found = len(calibration) if calibration is not None else 0
        raise DogbreedError(
            f"int8 calibration needs at least {MIN_CALIBRATION_IMAGES} images and found {found}: pass --dataset DIR "
            "(a Stanford-layout dataset) or upload photos with 'dogbreed upload'"
        )
    return held_out, calibration


def _write(
    request: ExportRequest, target: Path, calibration: ImageSet | None, stage: Callable[[str], None]
) -> tuple[list[Path], ExportMeta]:
    """Convert (and quantize) the model and write its files: (files, the description they carry)."""
    stage(f"loading {request.source.name}")
    net, meta = inference_graph(request.source)
    if request.int8:
        meta = ExportMeta(**{**meta.__dict__, "precision": "int8", "calibration": calibration.description})
    if request.format == "openvino":
        stage("converting with OpenVINO")
        model = to_openvino(net, meta)
        if request.int8:
            stage(f"calibrating int8 with NNCF on {calibration.description}")
            model = quantize(model, calibration, meta.preprocessing)
            model.set_rt_info(meta.to_json(), [META_KEY])
        return save_openvino(model, target), meta
    stage("exporting with torch's ONNX exporter")
    with _staging(target) as tmp:
        proto = _onnx_export(net, meta, tmp / "raw.onnx")
    if request.int8:
        stage(f"calibrating int8 with NNCF on {calibration.description}")
        proto = quantize(proto, calibration, meta.preprocessing)
    return save_onnx(proto, meta, target), meta


def export(
    conn: Any,
    request: ExportRequest,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportOutcome:
    """Convert (and quantize), write, check and record one export. ``on_stage(text)`` names each step,
    ``on_progress(done, total)`` follows the check's images."""
    from dogbreed import checks
    from dogbreed.models import sources

    stage = on_stage or (lambda text: None)
    _check_request(request)
    target = output_path(request)
    started = time.perf_counter()
    held_out, calibration = _pick_images(conn, request)
    files, meta = _write(request, target, calibration, stage)
    exported = sources.from_checkpoint(target)
    outcome = ExportOutcome(target, files, meta, sum(f.stat().st_size for f in files), 0.0, key=exported.key)
    if not request.check:
        outcome.check_skipped = "--no-check"
    elif held_out is None or not len(held_out):
        outcome.check_skipped = checks.NO_IMAGES_HINT
    else:
        stage(f"checking the export against the fp32 torch model on {held_out.description}")
        outcome.check_data = held_out.description
        outcome.checks = checks.check_export(conn, request.source, exported, meta.precision, held_out, on_progress)
    outcome.seconds = time.perf_counter() - started
    return outcome
