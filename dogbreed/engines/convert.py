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

from dogbreed.engines import irfiles
from dogbreed.errors import DogbreedError, DogbreedWarning, one_line
from dogbreed.files import write_problem
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
        classes=[[w, spec.names.get(w) or BY_WNID[w].name] for w in spec.classes],
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

    made_by = f"{__version__}|{ov.get_version()}|{irfiles.MANIFEST}"  # entries without a record are not reused
    tag = hashlib.sha256(f"{source.key}|{source.ref}|{made_by}".encode()).hexdigest()[:32]
    return cache_dir() / tag / "model.xml"


KEEP_CONVERSIONS = 8
CACHE_HINT = "free some space, set DOGBREED_HOME to a folder on a roomier disk, or run it with --engine torch"


def convert_cached(source: ModelSource) -> irfiles.IRBytes:
    """The cached IR of ``source`` (its bytes, checked against the sizes and sha256 recorded when it was written),
    converting it (torch import, ``ov.convert_model``: seconds) the first time, or again, with one warning, when
    the entry is damaged. Two processes converting at once each write their own folder; the first rename wins.
    The ``KEEP_CONVERSIONS`` most recently used are kept (a ResNet50 IR is ~100 MB)."""
    folder = cached_ir_path(source).parent
    if folder.is_dir():
        found = irfiles.verified(folder, source.key)
        if isinstance(found, irfiles.IRBytes):
            _touch(folder)
            return found
        warnings.warn(
            f"the cached OpenVINO conversion {folder} is damaged ({found}); converting {source.name} again",
            DogbreedWarning,
            stacklevel=2,
        )
        _discard(folder)
    net, meta = inference_graph(source)
    model = to_openvino(net, meta)
    del net
    entry = _write_entry(model, folder, source.key)
    _prune(cache_dir(), keep=KEEP_CONVERSIONS)
    return entry


def _write_entry(model: Any, folder: Path, source_key: str) -> irfiles.IRBytes:
    """The IR written into a private folder, recorded, then renamed into place; nothing partial is left."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".converting-"))
        irfiles.save_ir(model, tmp / "model.xml", folder, CACHE_HINT)
        entry = irfiles.record(tmp, source_key)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process got there first (or a damaged folder is in the way): keep a good one
            if not isinstance(irfiles.verified(folder, source_key), irfiles.IRBytes):
                _discard(folder)
                os.rename(tmp, folder)
        return irfiles.IRBytes(folder / "model.xml", entry.graph, entry.weights)
    except OSError as exc:
        problem = write_problem(exc, " (DOGBREED_HOME moves the cache)")
        raise DogbreedError(f"cannot cache the converted model in {folder}: {problem}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Remove a cache entry: renamed aside first (one rename), so no reader meets it half-deleted."""
    aside = folder.with_name(f".damaged-{folder.name}-{os.getpid()}")
    try:
        os.rename(folder, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


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
        done = sorted((p for p in entries if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)[::-1]
        stale = [p for p in entries if p.name.startswith(".") and time.time() - p.stat().st_mtime > 3600]
    except OSError:  # an entry removed meanwhile by another process: prune next time
        return
    for old in done[keep:] + stale:
        shutil.rmtree(old, ignore_errors=True)


