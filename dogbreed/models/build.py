"""Classifiers: a torchvision backbone with our head, built fresh, on ImageNet weights (``models.zoo``), on a local
weights file, or from a dogbreed checkpoint (``formats.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dogbreed.errors import DogbreedError
from dogbreed.formats.checkpoint import MODES, CheckpointMeta, read_checkpoint
from dogbreed.models.weights import load_state_into, read_weights_file, skeleton

ARCH_ALIASES = {"resnet": "resnet18", "efficientnet": "efficientnet_b0"}


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
    raise DogbreedError(f"unknown model {name!r}.{hint} ('dogbreed models' lists the ready ones)")


def _take_last_linear(model: nn.Module) -> nn.Linear:
    """Swap the network's final Linear layer for Identity and return it."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        raise DogbreedError("this architecture has no final Linear layer to replace; choose another model")
    path, linear = last
    parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
    setattr(parent, path.rsplit(".", 1)[-1], nn.Identity())
    return linear


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
    BatchNorm running statistics never drift from what the backbone was trained with. A frozen ImageNet backbone
    also keeps its own 1000-class layer (``imagenet_fc``, frozen): it gives the probability that a photo shows a
    dog at all, from the same features, at no extra forward pass.
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, mode: str, feature_dim: int, imagenet_fc: nn.Linear | None = None
    ):
        super().__init__()
        self.backbone, self.head, self.mode, self.feature_dim = backbone, head, mode, feature_dim
        self.imagenet_fc = imagenet_fc
        if mode == "extractor":
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        if imagenet_fc is not None:
            for p in imagenet_fc.parameters():
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
    from dogbreed.models import zoo

    return zoo.load_imagenet_model(arch)[0]


def _weights_file_backbone(arch: str, path: Path) -> nn.Module:
    import torchvision

    model = skeleton(lambda: torchvision.models.get_model(arch, weights=None))
    load_state_into(model, read_weights_file(path), f"weights file {path}", f"{arch}'s torchvision layout")
    return model


def build_model(
    arch: str,
    mode: str = "extractor",
    num_classes: int = 120,
    *,
    pretrained: bool = False,
    weights_file: Path | None = None,
    keep_imagenet_head: bool | None = None,
) -> Classifier:
    """A classifier over ``num_classes`` breeds on a torchvision backbone. ``keep_imagenet_head`` (default: an
    extractor on ImageNet weights) keeps the backbone's 1000-class layer for the dog probability."""
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
    last = _take_last_linear(backbone)
    if keep_imagenet_head is None:
        keep_imagenet_head = mode == "extractor" and (pretrained or weights_file is not None)
    imagenet_fc = last if keep_imagenet_head and last.out_features == 1000 else None
    features = last.in_features
    head = extractor_head(features, num_classes) if mode == "extractor" else nn.Linear(features, num_classes)
    return Classifier(backbone, head, mode, features, imagenet_fc)


def check_input_size(model: nn.Module, arch: str, size: int, device: torch.device | str = "cpu") -> None:
    """Refuse an input size the architecture cannot take (ViT's fixed size, MaxViT's 7x7 windows, ConvNeXt's
    strides) before a run is recorded: one picture through the real model, in eval mode (no statistics change, no
    random numbers drawn)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DogbreedError(
            f"{resolve_arch(arch)} cannot take {size} px input ({reason}); drop --image-size (the architecture's "
            "own size) or choose another architecture"
        ) from None
    finally:
        model.train(was_training)


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> tuple[Classifier, CheckpointMeta]:
    """The model (in eval mode, on ``device``) and its description."""
    meta, state, _ = read_checkpoint(path)
    model = skeleton(
        lambda: build_model(meta.arch, meta.mode, len(meta.classes), keep_imagenet_head=meta.imagenet_head)
    )
    load_state_into(model, state, f"checkpoint {path}", f"its own description ({meta.arch} {meta.mode})")
    return model.to(device).eval(), meta
