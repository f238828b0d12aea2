"""The conversion step the OpenVINO engine owns: a checkpoint or ready model's torch inference graph
(``models.predictor.Predictor``) converted by OpenVINO's ``convert_model`` with the dogbreed description attached,
and the cache of converted models under ``$DOGBREED_HOME/cache/openvino``, keyed by the model's key and the
dogbreed/OpenVINO versions, so the next run loads it like an export. ``dogbreed export`` writes the same graph.

OpenVINO's converter and NNCF send usage telemetry by default; dogbreed turns it off for the calls it makes.
Light at import: torch and OpenVINO are imported by the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError, one_line
from dogbreed.formats.export import META_KEY, ExportMeta
from dogbreed.models.sources import ModelSource


def inference_graph(source: ModelSource) -> tuple[Any, ExportMeta]:
    """The fp32 torch inference graph of ``source`` (eval mode, CPU) and the description an export of it carries."""
    from dogbreed.breeds import BY_WNID
    from dogbreed.engines.torch import load_predictor
    from dogbreed.version import __version__

    if source.kind == "export":
        raise DogbreedError(f"{source.ref} is already an exported model; export its checkpoint or run instead")
    net, spec = load_predictor(source)
    meta = ExportMeta(
        classes=[[w, BY_WNID[w].name] for w in spec.classes],
        preprocessing=spec.preprocessing,
        has_dog=spec.has_dog,
        precision="fp32",
        source_key=source.key,
        source_name=source.name,
        run_id=source.run_id,
        versions=_versions(__version__),
    )
    return net, meta


def _versions(dogbreed_version: str) -> dict[str, str]:
    import openvino
    import torch

    return {"dogbreed": dogbreed_version, "torch": str(torch.__version__), "openvino": openvino.get_version()}


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """OpenVINO's converter and NNCF: no usage telemetry (both honour their CI switches), no progress bars or
    banners on our stdout (which may be carrying --json), no torch CUDA-probe warning."""
    saved = {k: os.environ.get(k) for k in ("CI", "NNCF_CI")}
    os.environ.update(CI="true", NNCF_CI="1")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracing warnings about a graph we know is static
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def to_openvino(net: Any, meta: ExportMeta) -> Any:
    """``ov.convert_model`` of the torch graph, with a dynamic batch, named outputs and the description attached."""
    import openvino as ov
    import torch

    size = meta.preprocessing.crop_size
    try:
        with quiet_libraries(), torch.inference_mode():
            model = ov.convert_model(
                net,
                example_input=torch.zeros(1, 3, size, size),
                input=[(ov.PartialShape([-1, 3, size, size]), ov.Type.f32)],
            )
    except Exception as exc:  # the converter raises many types; all mean "this graph cannot be converted"
        raise DogbreedError(f"OpenVINO cannot convert {meta.source_name}: {one_line(exc)}") from None
    names = ["probs", "dog"] if meta.has_dog else ["probs"]
    for output, name in zip(model.outputs, names):
        output.get_tensor().set_names({name})
    model.inputs[0].get_tensor().set_names({"input"})
    model.set_rt_info(meta.to_json(), [META_KEY])
    return model


def cache_dir() -> Path:
    from dogbreed.config import resolve_paths

    return resolve_paths().cache / "openvino"


def cached_ir_path(source: ModelSource) -> Path:
    """Where the IR of a checkpoint or ready model is kept: keyed by the model's key (its file's sha256, or the
    torchvision weights' name) and the versions that made it, so an upgrade converts again."""
    import openvino as ov

    from dogbreed.version import __version__

    tag = hashlib.sha256(f"{source.key}|{source.ref}|{__version__}|{ov.get_version()}".encode()).hexdigest()[:32]
    return cache_dir() / tag / "model.xml"


KEEP_CONVERSIONS = 8


def convert_cached(source: ModelSource) -> Path:
    """The cached IR of ``source``, converting it (torch import, ``ov.convert_model``: seconds) the first time. Two
    processes converting at once each write their own folder; the first rename wins, the other is dropped. The
    ``KEEP_CONVERSIONS`` most recently used are kept (a ResNet50 IR is ~100 MB)."""
    import openvino as ov

    target = cached_ir_path(source)
    if target.is_file() and target.with_suffix(".bin").is_file():
        _touch(target.parent)
        return target
    net, meta = inference_graph(source)
    model = to_openvino(net, meta)
    del net
    try:
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent.parent, prefix=".converting-"))
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        try:
            os.rename(tmp, target.parent)
        except OSError:  # another process got there first (or an old partial folder): keep whichever is complete
            if not target.is_file():
                shutil.rmtree(target.parent, ignore_errors=True)
                os.rename(tmp, target.parent)
    except OSError as exc:
        raise DogbreedError(f"cannot cache the converted model under {cache_dir()}: {exc.strerror or exc}") from None
    finally:
        if "tmp" in locals() and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(cache_dir(), keep=KEEP_CONVERSIONS)
    return target


def _touch(folder: Path) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass


def _prune(folder: Path, keep: int) -> None:
    """Drop all but the ``keep`` most recently used conversions (and leftovers of interrupted ones over an hour
    old); a folder another process is using is only deleted once it is no longer the newest."""
    import time

    try:
        entries = [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return
    done = sorted((p for p in entries if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in entries if p.name.startswith(".") and time.time() - p.stat().st_mtime > 3600]
    for old in done[keep:] + stale:
        shutil.rmtree(old, ignore_errors=True)


