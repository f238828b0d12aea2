"""Ready models: torchvision's ImageNet classifiers, usable as breed classifiers with no training at all.

Every Stanford Dogs breed is an ImageNet-1k class, so the ImageNet softmax restricted to the 120 breeds is a breed
classifier, and its mass on all dog classes says whether the photo shows a dog (see ``imagenet.py``). Weights come
through torchvision's weights API: downloaded once with progress, verified against the hash in their file name,
cached under torch's hub folder. Offline, ``--weights FILE`` takes the very file torchvision would download.

Caveat, said wherever a ready model is scored: Stanford Dogs images come from ImageNet, so these models have
seen many of its test images while they were trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.imaging import Preprocessing

DEFAULT_READY = "resnet50"
IMAGENET_CAVEAT = (
    "Stanford Dogs images come from ImageNet, so an ImageNet-pretrained model has seen many of these test images "
    "during its own training: its accuracy here is optimistic."
)


@dataclass(frozen=True)
class ReadyModel:
    name: str  # torchvision architecture name
    weights: str  # the weights enum member, e.g. IMAGENET1K_V2
    top1: float | None  # published ImageNet-1k top-1 accuracy (%)
    top5: float | None
    gflops: float | None
    file_mb: float | None
    params_m: float | None
    url: str
    cached: bool
    preprocessing: Preprocessing

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights,
            "imagenet_top1": self.top1,
            "imagenet_top5": self.top5,
            "gflops": self.gflops,
            "file_mb": self.file_mb,
            "params_m": self.params_m,
            "cached": self.cached,
            "file": self.file_name,
            "url": self.url,
            "preprocessing": self.preprocessing.to_dict(),
        }


def weights_dir() -> Path:
    """Where torchvision caches downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _weights_enum(arch: str, weights: str | None = None) -> Any:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise DogbreedError(f"{arch} has no published ImageNet weights in torchvision") from None
    if weights is None:
        return enum.DEFAULT
    try:
        return enum[weights.split(".")[-1]]
    except KeyError:
        options = ", ".join(m.name for m in enum)
        raise DogbreedError(f"{arch} has no weights {weights!r}; choose one of {options}") from None


def _is_imagenet1k(weights: Any) -> bool:
    return len(weights.meta.get("categories") or []) == 1000 and "ImageNet-1K" in weights.meta.get("_metrics", {})


def preprocessing_of(weights: Any) -> Preprocessing:
    """The published inference transform of these weights (resize, crop, interpolation, mean, std)."""
    t = weights.transforms()
    interpolation = str(getattr(t, "interpolation", "bilinear")).rsplit(".", 1)[-1].lower()
    crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
    return Preprocessing(int(crop), int(resize), interpolation, tuple(t.mean), tuple(t.std))


def describe(arch: str, weights: str | None = None) -> ReadyModel:
    w = _weights_enum(arch, weights)
    metrics = w.meta.get("_metrics", {}).get("ImageNet-1K", {})
    params = w.meta.get("num_params")
    return ReadyModel(
        name=arch,
        weights=w.name,
        top1=metrics.get("acc@1"),
        top5=metrics.get("acc@5"),
        gflops=w.meta.get("_ops"),
        file_mb=w.meta.get("_file_size"),
        params_m=round(params / 1e6, 1) if params else None,
        url=w.url,
        cached=(weights_dir() / w.url.rsplit("/", 1)[-1]).is_file(),
        preprocessing=preprocessing_of(w),
    )


def ready_models() -> list[ReadyModel]:
    """Every torchvision classifier with ImageNet-1k weights (their DEFAULT weights), by published top-1."""
    import torchvision

    found = []
    for arch in torchvision.models.list_models(module=torchvision.models):
        try:
            w = _weights_enum(arch)
        except DogbreedError:
            continue
        if _is_imagenet1k(w):
            found.append(describe(arch))
    return sorted(found, key=lambda m: -(m.top1 or 0))


def load_imagenet_model(
    arch: str, weights: str | None = None, weights_file: Path | None = None, progress: bool = True
) -> tuple[Any, ReadyModel]:
    """The torchvision ImageNet classifier ``arch`` with its published weights (downloaded once and cached), or
    with ``weights_file`` (the same state dict, from disk). Returns (model in eval mode, its description)."""
    import torchvision

    from dogbreed.models.weights import load_state_into, read_weights_file, skeleton

    info = describe(arch, weights)
    model = skeleton(lambda: torchvision.models.get_model(arch, weights=None))
    if weights_file is not None:
        state = read_weights_file(Path(weights_file))
        load_state_into(
            model, state, f"weights file {weights_file}", f"{arch} (a torchvision ImageNet state dict, 1000 classes)"
        )
        return model.eval(), info
    state = _download_state(arch, info, progress)
    load_state_into(model, state, f"downloaded weights {info.file_name}", arch)
    return model.eval(), info


def _download_state(arch: str, info: ReadyModel, progress: bool) -> dict:
    """torchvision's weights through its weights API: from the cache, or downloaded with a progress bar and checked
    against the hash in the file's name; read with weights_only=True."""
    import urllib.error

    target = weights_dir() / info.file_name
    try:
        return _weights_enum(arch, info.weights).get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DogbreedError(
            f"cannot download {arch} weights ({info.weights}) from {info.url}: {reason}. Offline? Fetch that file "
            f"elsewhere and put it at {target}, or pass --model {arch} --weights FILE"
        ) from None
    except Exception as exc:  # a hash mismatch or an unreadable cached file
        text = " ".join(str(exc).split())[:160]
        raise DogbreedError(
            f"the weights {target} cannot be used ({text}); delete the file and run again to download it anew"
        ) from None
