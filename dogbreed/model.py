"""The one torch model module: build classifiers, pick the device, save and load self-describing checkpoints, and
the inference graph (``Predictor``) every engine and export runs.

Used by the torch engine, training, evaluation and export. Ready ImageNet models live in ``zoo.py``.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from dogbreed.errors import DogbreedError
from dogbreed.files import file_sha256, write_problem
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preprocessing

ARCH_ALIASES = {"resnet": "resnet18", "efficientnet": "efficientnet_b0"}
MODES = ("extractor", "finetune")
CHECKPOINT_FORMAT = "dogbreed-checkpoint"
CHECKPOINT_VERSION = 2  # 2: preprocessing (resize, interpolation) and the kept ImageNet classifier are recorded
MAX_INPUT_SIZE = 1024  # larger inputs are a crafted checkpoint, not a real classifier
CHECKPOINTS_HINT = " (DOGBREED_CHECKPOINTS for training)"  # where a write error says the folder can be moved
E = TypeVar("E", bound=BaseException)
M = TypeVar("M", bound=nn.Module)


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
        if not cuda_ok:
            return torch.device("cpu"), f"device {requested!r} requested but CUDA is not available; using cpu"
        try:
            device = torch.device(name)
        except RuntimeError:
            raise DogbreedError(f"unknown device {requested!r}; use cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DogbreedError(f"no {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device, None
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


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision state dict read safely from ``path``, or a one-line error saying what the file
    is instead."""
    state = _load_tensors(path, "weights file")
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise DogbreedError(
            f"weights file {path} is a dogbreed checkpoint, not a torchvision state dict; "
            "use it with --checkpoint (or train --from it)"
        )
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        raise DogbreedError(f"weights file {path} holds a {kind}, not a state dict (parameter name -> tensor)")
    return state


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], what: str, expected: str) -> None:
    """``model.load_state_dict(state)`` with a one-line explanation when it does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    mistyped = [k for k in own if k in state and not _same_kind(own[k], state[k])]
    if missing or unexpected or wrong or mistyped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) such as {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) such as {unexpected[0]!r}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatch(es) such as {k!r} {tuple(state[k].shape)} instead of "
                f"{tuple(own[k].shape)}"
            )
        if mistyped:
            k = mistyped[0]
            parts.append(
                f"{len(mistyped)} tensor(s) of the wrong kind such as {k!r} ({state[k].dtype}, {state[k].layout})"
            )
        raise DogbreedError(f"{what} does not fit {expected}: {'; '.join(parts)}")
    # fp16 or fp64 weights (or int32 counters) take the model's own dtype: one dtype per graph
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, assign=True)


def _same_kind(own: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Both dense, both real floating point or both integer: what a cast can reconcile without losing meaning."""
    if theirs.layout != torch.strided or theirs.is_complex() or theirs.is_quantized:
        return False
    return own.is_floating_point() == theirs.is_floating_point()


def _pretrained_backbone(arch: str) -> nn.Module:
    from dogbreed import zoo

    return zoo.load_imagenet_model(arch)[0]


def skeleton(build: Callable[[], M]) -> M:
    """``build()`` on the meta device, so no time goes into initialising weights that are about to be replaced;
    built normally for the architectures whose constructors compute with tensors (RegNet's block widths)."""
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:
        return build()


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


# ---------------------------------------------------------------- the inference graph


class Predictor(nn.Module):
    """What every engine runs and every export contains: a normalised batch in, breed probabilities out (over the
    model's own classes, rows summing to 1) and, when the model can tell, the probability of a dog at all.

    - a dogbreed Classifier: softmax of its head; dog probability from the kept ImageNet layer, if any;
    - a ready ImageNet model (``imagenet=True``): the softmax restricted to the 120 breeds and renormalised
      (the same thing as a softmax over those 120 logits), and the softmax mass on every dog class.
    Log-sum-exp keeps both stable where a plain softmax would underflow.
    """

    def __init__(self, net: nn.Module, *, imagenet: bool = False):
        super().__init__()
        from dogbreed import imagenet as inet

        self.net, self.imagenet = net, imagenet
        self.has_dog = imagenet or getattr(net, "imagenet_fc", None) is not None
        self.register_buffer("breed_index", torch.tensor(inet.breed_indices(), dtype=torch.long), persistent=False)
        self.register_buffer("dog_index", torch.tensor(inet.dog_indices(), dtype=torch.long), persistent=False)

    def _dog(self, logits1000: torch.Tensor) -> torch.Tensor:
        dog = torch.logsumexp(torch.index_select(logits1000, 1, self.dog_index), dim=1)
        return torch.exp(dog - torch.logsumexp(logits1000, dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.imagenet:
            logits = self.net(x).float()
            breeds = torch.index_select(logits, 1, self.breed_index)
            return torch.softmax(breeds, dim=1), self._dog(logits)
        if self.has_dog:
            feats = self.net.backbone(x)
            probs = torch.softmax(self.net.head(feats).float(), dim=1)
            return probs, self._dog(self.net.imagenet_fc(feats).float())
        return (torch.softmax(self.net(x).float(), dim=1),)


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


# ---------------------------------------------------------------- checkpoints


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

    from dogbreed import __version__

    return {
        "dogbreed": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def clean_stale_temporaries(folder: Path, max_age_s: float = 3600) -> None:
    """Remove temporary checkpoint files left by a process killed mid-save (older than an hour, so a save in
    progress elsewhere is never touched)."""
    import time

    try:
        for tmp in folder.glob(".*.pt.*.tmp"):
            if time.time() - tmp.stat().st_mtime > max_age_s:
                tmp.unlink(missing_ok=True)
    except OSError:
        pass


def atomic_torch_save(payload: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves half a file under the
    real name. A full disk or a read-only folder is a one-line error."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as fh:  # a Python file: a failed write surfaces as its OSError
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:
        if _behind(exc, KeyboardInterrupt):  # Ctrl-C inside torch.save: its zip writer then fails on the way out
            raise KeyboardInterrupt from None
        cause = _behind(exc, OSError)
        if cause is None:
            raise
        raise DogbreedError(f"cannot write {path}: {write_problem(cause, CHECKPOINTS_HINT)}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _behind(exc: BaseException | None, kind: type[E]) -> E | None:
    """The ``kind`` exception behind ``exc``, if any (torch wraps a failed write of a file object, or one cut
    short by Ctrl-C, in a RuntimeError)."""
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def save_checkpoint(path: Path | str, model: Classifier, meta: CheckpointMeta, extra: dict | None = None) -> str:
    """Write atomically; returns the file's sha256. ``extra`` (e.g. optimizer state for resuming) is stored
    beside the weights."""
    path = Path(path)
    if not meta.versions:
        meta.versions = library_versions()
    meta.imagenet_head = model.imagenet_fc is not None
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "meta": asdict(meta),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    atomic_torch_save(payload, path)
    return file_sha256(path)


def _load_tensors(path: Path, what: str) -> Any:
    """torch.load without unpickling arbitrary objects; a file that is not a torch file is a one-line error
    naming what it looks like."""
    if not path.is_file():
        raise DogbreedError(f"{what} {path} does not exist or is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise DogbreedError(f"{what} {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        kind = _sniff(head)
        raise DogbreedError(f"{what} {path} is {kind}, not a torch file (.pt/.pth)")
    if head.startswith(b"PK"):
        _check_stored_only(path, size, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "Weights only load failed" in text or "weights_only" in text or "Unsupported global" in text:
            raise DogbreedError(
                f"{what} {path} contains pickled Python objects, which dogbreed never loads because "
                "unpickling can run arbitrary code; use a plain state dict or a dogbreed checkpoint"
            ) from None
        raise DogbreedError(f"{what} {path} cannot be read as a torch file: {text[:160]}") from None


def _check_stored_only(path: Path, size: int, what: str) -> None:
    """torch.save stores every zip entry uncompressed, so tensors can never be larger than the file; a compressed
    entry would let a 300 KB file allocate gigabytes inside torch.load (a decompression bomb)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DogbreedError(f"{what} {path} is a damaged torch file ({exc})") from None
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or sum(e.file_size for e in entries) > size:
        raise DogbreedError(
            f"{what} {path} holds compressed data, which torch.save never writes; it is not a file dogbreed loads"
        )


def _sniff(head: bytes) -> str:
    signatures = {
        b"\xff\xd8\xff": "a JPEG image",
        b"\x89PNG": "a PNG image",
        b"GIF8": "a GIF image",
        b"%PDF": "a PDF document",
        b"SQLite f": "an SQLite database",
        b"\x08": "possibly an ONNX model (use it with --checkpoint)",
        b"<?xml": "an XML file (an OpenVINO model? use it with --checkpoint)",
    }
    for sig, kind in signatures.items():
        if head.startswith(sig):
            return kind
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file"
    return "not a recognised file type"


def _validated_meta(raw: Any, path: Path) -> CheckpointMeta:
    """Checkpoint metadata with every field type- and range-checked: a crafted file gets a one-line error, not a
    traceback or a huge allocation."""
    if not isinstance(raw, dict):
        raise DogbreedError(f"checkpoint {path} has no metadata dictionary; it is damaged or not from dogbreed")
    known = {f.name for f in fields(CheckpointMeta)}
    values = {k: v for k, v in raw.items() if k in known}  # fields from a newer dogbreed are ignored

    def bad(what: str) -> DogbreedError:
        return DogbreedError(f"checkpoint {path} has invalid metadata: {what}")

    for key in ("arch", "mode", "classes"):
        if key not in values:
            raise bad(f"{key!r} is missing")
    if not isinstance(values["arch"], str) or not values["arch"].isidentifier():
        raise bad("'arch' is not an architecture name")
    if values["mode"] not in MODES:
        raise bad(f"'mode' must be one of {', '.join(MODES)}")
    classes = values["classes"]
    if (
        not isinstance(classes, list)
        or not 2 <= len(classes) <= 1000
        or not all(isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(s, str) for s in c) for c in classes)
    ):
        raise bad("'classes' must be a list of 2 to 1000 [WordNet id, name] pairs")
    from dogbreed.breeds import BY_WNID

    wnids = [c[0] for c in classes]
    if len(set(wnids)) != len(wnids):
        raise bad("'classes' names a breed twice")
    unknown = [w for w in wnids if w not in BY_WNID]
    if unknown:
        raise bad(f"{unknown[0]!r} in 'classes' is not one of the 120 Stanford breeds")
    values["classes"] = [[w, BY_WNID[w].name] for w in wnids]  # names come from our table, never the file
    for key in ("image_size", "resize_size"):
        v = values.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 8 <= v <= MAX_INPUT_SIZE):
            raise bad(f"{key!r} must be a whole number of pixels from 8 to {MAX_INPUT_SIZE}")
    for key in ("mean", "std"):
        v = values.get(key)
        if v is not None and (
            not isinstance(v, (list, tuple))
            or len(v) != 3
            or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            or (key == "std" and not all(x > 0 for x in v))
        ):
            raise bad(f"{key!r} must be three finite numbers" + (" above 0" if key == "std" else ""))
    if values.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise bad(f"'interpolation' must be one of {', '.join(INTERPOLATIONS)}")
    for key in ("metrics", "versions"):
        if not isinstance(values.get(key, {}), dict):
            raise bad(f"{key!r} must be a dictionary")
    run_id = values.get("run_id")
    if run_id is not None and (not isinstance(run_id, int) or isinstance(run_id, bool)):
        raise bad("'run_id' must be a whole number")
    values["imagenet_head"] = bool(values.get("imagenet_head", False))
    return CheckpointMeta(**values)


def read_checkpoint(path: Path | str) -> tuple[CheckpointMeta, dict[str, torch.Tensor], dict[str, Any]]:
    """(metadata, weights, everything else the file holds) without unpickling arbitrary objects."""
    path = Path(path)
    payload = _load_tensors(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            raise DogbreedError(
                f"{path} is a plain state dict ({len(payload)} tensors), not a dogbreed checkpoint; ImageNet "
                "weights go with their architecture: --model ARCH --weights FILE ('models': --default ARCH --weights)"
            )
        raise DogbreedError(f"{path} is a torch file but not a dogbreed checkpoint (no 'format' marker)")
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DogbreedError(f"checkpoint {path} was written by a newer dogbreed; upgrade dogbreed")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DogbreedError(f"checkpoint {path} has no usable weights (its state_dict is missing or not tensors)")
    meta = _validated_meta(payload.get("meta"), path)
    rest = {k: v for k, v in payload.items() if k not in ("format", "version", "meta", "state_dict")}
    return meta, state, rest


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> tuple[Classifier, CheckpointMeta]:
    """The model (in eval mode, on ``device``) and its description."""
    meta, state, _ = read_checkpoint(path)
    model = skeleton(
        lambda: build_model(meta.arch, meta.mode, len(meta.classes), keep_imagenet_head=meta.imagenet_head)
    )
    load_state_into(model, state, f"checkpoint {path}", f"its own description ({meta.arch} {meta.mode})")
    return model.to(device).eval(), meta
