"""The one model module: build classifiers, pick the device, save and load self-describing checkpoints.

Used by predict, train and anything that later exports a model.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dogbreed.errors import DogbreedError
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD

ARCH_ALIASES = {"resnet": "resnet18", "efficientnet": "efficientnet_b0"}
MODES = ("extractor", "finetune")
CHECKPOINT_FORMAT = "dogbreed-checkpoint"
CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------- devices


def select_device(requested: str = "auto") -> tuple[torch.device, str | None]:
    """The device to use and, when the request cannot be met, a one-line warning naming the fallback.

    ``auto`` picks cuda, then mps, then cpu. ``gpu`` is an alias of ``cuda``.
    """
    name = requested.strip().lower()
    name = "cuda" if name == "gpu" else name
    cuda_ok = torch.cuda.is_available()
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda_ok else "mps" if mps_ok else "cpu"), None
    if name.startswith("cuda"):
        if cuda_ok:
            return torch.device(name), None
        return torch.device("cpu"), f"device {requested!r} requested but CUDA is not available; using cpu"
    if name == "mps":
        if mps_ok:
            return torch.device("mps"), None
        return torch.device("cpu"), f"device {requested!r} requested but MPS is not available; using cpu"
    if name == "cpu":
        return torch.device("cpu"), None
    raise DogbreedError(f"unknown device {requested!r}; use auto, cpu, cuda (or gpu), or mps")


# ---------------------------------------------------------------- architectures


def resolve_arch(name: str) -> str:
    """``ResNet`` -> resnet18, ``EfficientNet`` -> efficientnet_b0, else any torchvision classification model."""
    import torchvision

    key = name.strip().lower()
    if key in ARCH_ALIASES:
        return ARCH_ALIASES[key]
    known = torchvision.models.list_models(module=torchvision.models)
    if key in known:
        return key
    import difflib

    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Use ResNet, EfficientNet or a torchvision name."
    raise DogbreedError(f"unknown model {name!r}.{hint}")


def _replace_last_linear(model: nn.Module) -> int:
    """Swap the network's final Linear layer for Identity; returns its input width (the feature size)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise DogbreedError("this architecture has no final Linear layer to replace; choose another model")
    path, linear = last
    parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
    setattr(parent, path.rsplit(".", 1)[-1], nn.Identity())
    return linear.in_features


def extractor_head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm1d(features),
        nn.Linear(features, 512),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(512),
        nn.Linear(512, 128),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(128),
        nn.Dropout(0.4),
        nn.Linear(128, num_classes),
    )


class Classifier(nn.Module):
    """A torchvision backbone (its classifier removed) followed by our head.

    In ``extractor`` mode the backbone is frozen and stays in eval mode even while the head trains, so its
    BatchNorm running statistics never drift from what the backbone was trained with.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, mode: str, feature_dim: int):
        super().__init__()
        self.backbone, self.head, self.mode, self.feature_dim = backbone, head, mode, feature_dim
        if mode == "extractor":
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.mode == "extractor":
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _pretrained_backbone(arch: str) -> nn.Module:
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights)
    except Exception as exc:  # offline, proxy, disk full...: the user needs one line and a way out
        raise DogbreedError(
            f"cannot load ImageNet weights for {arch} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "connect to the internet once, or pass --no-pretrained or --weights FILE"
        ) from None


def _weights_file_backbone(arch: str, path: Path) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(arch, weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DogbreedError(f"weights file {path} does not exist") from None
    except Exception as exc:
        raise DogbreedError(f"cannot read weights file {path}: {str(exc).splitlines()[0][:160]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DogbreedError(f"weights file {path} does not fit {arch}: {str(exc).splitlines()[0][:160]}") from None
    return model


def build_model(
    arch: str,
    mode: str = "extractor",
    num_classes: int = 120,
    *,
    pretrained: bool = False,
    weights_file: Path | None = None,
) -> Classifier:
    """A classifier over ``num_classes`` breeds on a torchvision backbone."""
    import torchvision

    if mode not in MODES:
        raise DogbreedError(f"unknown mode {mode!r}; use extractor or finetune")
    arch = resolve_arch(arch)
    if weights_file is not None:
        backbone = _weights_file_backbone(arch, Path(weights_file))
    elif pretrained:
        backbone = _pretrained_backbone(arch)
    else:
        backbone = torchvision.models.get_model(arch, weights=None)
    features = _replace_last_linear(backbone)
    head = extractor_head(features, num_classes) if mode == "extractor" else nn.Linear(features, num_classes)
    return Classifier(backbone, head, mode, features)


# ---------------------------------------------------------------- checkpoints


@dataclass
class CheckpointMeta:
    arch: str
    mode: str
    classes: list[list[str]]  # [[wnid, display name], ...] in output order
    image_size: int = 224
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    run_id: int | None = None

    @property
    def wnids(self) -> list[str]:
        return [c[0] for c in self.classes]


def library_versions() -> dict[str, str]:
    import torchvision

    from dogbreed import __version__

    return {
        "dogbreed": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: Path | str, model: Classifier, meta: CheckpointMeta) -> str:
    """Write atomically (a crash never leaves half a file under the real name); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not meta.versions:
        meta.versions = library_versions()
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": asdict(meta),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return file_sha256(path)


def read_checkpoint(path: Path | str) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DogbreedError(f"checkpoint {path} does not exist; train one with 'dogbreed train' or pass --checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DogbreedError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DogbreedError(f"{path} is not a dogbreed checkpoint")
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise DogbreedError(f"checkpoint {path} was written by a newer dogbreed; upgrade dogbreed")
    return CheckpointMeta(**payload["meta"]), payload["state_dict"]


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> tuple[Classifier, CheckpointMeta]:
    """The model (in eval mode, on ``device``) and its description."""
    meta, state = read_checkpoint(path)
    with torch.device("meta"):  # no time spent initialising weights the checkpoint replaces
        model = build_model(meta.arch, meta.mode, len(meta.classes))
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise DogbreedError(f"checkpoint {path} does not match its own description: {str(exc)[:160]}") from None
    return model.to(device).eval(), meta


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """An inference copy of the model: BatchNorm folded into the convolutions (torch.fx), channels_last memory
    format. Both measured faster on CPU; a model that fx cannot trace runs as it is."""
    model = model.to(device).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        model = fuse(model)
    except Exception:  # fx cannot trace every architecture; eager is correct, just a little slower
        pass
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    return model


def predict_probs(model: nn.Module, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax probabilities for a batch of preprocessed images (rows sum to 1), on the CPU as float32."""
    with torch.inference_mode():
        x = batch.to(device, non_blocking=True)
        if device.type in ("cpu", "cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.softmax(model(x).float(), dim=1).cpu()
