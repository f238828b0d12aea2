"""The dogbreed checkpoint: a torch file that describes itself (architecture, mode, classes, preprocessing, metrics,
versions) beside its weights, so predict, eval, export and training's warm starts need nothing else.

Read with ``weights_only`` (``formats.torchfile``), never unpickled; every metadata field validated
(``formats.classes``), so a crafted file is a one-line error, not a traceback or a huge allocation.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from dogbreed.errors import DogbreedError
from dogbreed.files import file_sha256
from dogbreed.formats.classes import check_classes, check_interpolation, check_size, check_stats
from dogbreed.formats.torchfile import atomic_torch_save, load_tensors
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

MODES = ("extractor", "finetune")
CHECKPOINT_FORMAT = "dogbreed-checkpoint"
CHECKPOINT_VERSION = 2  # 2: preprocessing (resize, interpolation) and the kept ImageNet classifier are recorded


@dataclass
class CheckpointMeta:
    arch: str
    mode: str
    classes: list[list[str]]  # [[wnid, display name], ...] in output order
    image_size: int = 224  # the crop size
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    run_id: int | None = None
    resize_size: int | None = None  # None (checkpoints before version 2): image_size * 256/224
    interpolation: str = "bilinear"
    imagenet_head: bool = False

    @property
    def wnids(self) -> list[str]:
        return [c[0] for c in self.classes]

    @property
    def preprocessing(self) -> Preprocessing:
        resize = self.resize_size or int(round(self.image_size * 256 / 224))
        return Preprocessing(self.image_size, resize, self.interpolation, tuple(self.mean), tuple(self.std))


def library_versions() -> dict[str, str]:
    import torchvision

    from dogbreed.version import __version__

    return {
        "dogbreed": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(path: Path | str, model: torch.nn.Module, meta: CheckpointMeta, extra: dict | None = None) -> str:
    """Write atomically; returns the file's sha256. ``extra`` (e.g. optimizer state for resuming) is stored
    beside the weights."""
    path = Path(path)
    if not meta.versions:
        meta.versions = library_versions()
    meta.imagenet_head = getattr(model, "imagenet_fc", None) is not None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": asdict(meta),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    atomic_torch_save(payload, path)
    return file_sha256(path)


def _check_identity(values: dict[str, Any], bad) -> None:
    for key in ("arch", "mode", "classes"):
        if key not in values:
            raise bad(f"{key!r} is missing")
    if not isinstance(values["arch"], str) or not values["arch"].isidentifier():
        raise bad("'arch' is not an architecture name")
    if values["mode"] not in MODES:
        raise bad(f"'mode' must be one of {', '.join(MODES)}")


def _check_records(values: dict[str, Any], bad) -> None:
    for key in ("metrics", "versions"):
        if not isinstance(values.get(key, {}), dict):
            raise bad(f"{key!r} must be a dictionary")
    run_id = values.get("run_id")
    if run_id is not None and (not isinstance(run_id, int) or isinstance(run_id, bool)):
        raise bad("'run_id' must be a whole number")


def _validated_meta(raw: Any, path: Path) -> CheckpointMeta:
    """Checkpoint metadata with every field type- and range-checked."""
    if not isinstance(raw, dict):
        raise DogbreedError(f"checkpoint {path} has no metadata dictionary; it is damaged or not from dogbreed")
    known = {f.name for f in fields(CheckpointMeta)}
    values = {k: v for k, v in raw.items() if k in known}  # fields from a newer dogbreed are ignored

    def bad(what: str) -> DogbreedError:
        return DogbreedError(f"checkpoint {path} has invalid metadata: {what}")

    _check_identity(values, bad)
    values["classes"] = check_classes(values["classes"], bad)
    for key in ("image_size", "resize_size"):
        check_size(values.get(key), key, bad, optional=True)
    for key in ("mean", "std"):
        if values.get(key) is not None:
            values[key] = list(check_stats(values[key], key, bad))
    check_interpolation(values.get("interpolation", "bilinear"), bad)
    _check_records(values, bad)
    values["imagenet_head"] = bool(values.get("imagenet_head", False))
    return CheckpointMeta(**values)


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def read_checkpoint(path: Path | str) -> tuple[CheckpointMeta, dict[str, torch.Tensor], dict[str, Any]]:
    """(metadata, weights, everything else the file holds) without unpickling arbitrary objects."""
    path = Path(path)
    payload = load_tensors(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if _is_state_dict(payload):
            raise DogbreedError(
                f"{path} is a plain state dict ({len(payload)} tensors), not a dogbreed checkpoint; ImageNet "
                "weights go with their architecture: --model ARCH --weights FILE ('models': --default ARCH --weights)"
            )
        raise DogbreedError(f"{path} is a torch file but not a dogbreed checkpoint (no 'format' marker)")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DogbreedError(f"checkpoint {path} was written by a newer dogbreed; upgrade dogbreed")
    state = payload.get("state_dict")
    if not _is_state_dict(state):
        raise DogbreedError(f"checkpoint {path} has no usable weights (its state_dict is missing or not tensors)")
    meta = _validated_meta(payload.get("meta"), path)
    rest = {k: v for k, v in payload.items() if k not in ("format", "version", "meta", "state_dict")}
    return meta, state, rest
