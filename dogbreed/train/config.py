"""Training's vocabulary: the configuration a run is started with, the result it ends with, the listener that
hears its progress, and the exception SIGTERM becomes.

Light module: no torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError


@dataclass
class TrainConfig:
    dataset: Path | None  # a Stanford-layout or class-folder dataset (None: the store's labelled images alone)
    checkpoints_dir: Path
    model: str | None = "ResNet"  # None: the warm-start source's architecture (else ResNet)
    mode: str | None = None  # None: extractor on ImageNet weights, finetune without them (warm start: its source's)
    epochs: int = 10
    batch: int = 64
    lr: float = 1e-3
    image_size: int | None = None  # None: the architecture's own crop size (or the warm-start source's)
    pretrained: bool = True
    weights: Path | None = None
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    limit_per_class: int | None = None
    name: str | None = None
    save: bool = True
    cache_features: bool = True
    val_fraction: float = 0.1
    precision: str = "auto"
    init_from: str | None = None  # warm start: a run id or a dogbreed checkpoint path
    tensorboard: Path | None = None
    store: bool = False  # train on the store's labelled images too (alone, with dataset=None)
    add_breeds: bool = False  # class folders naming no known breed become breeds of your own
    skip_small: bool = False  # leave out breeds with too few images instead of refusing
    random_backbone: bool = False  # extractor mode on a frozen RANDOM backbone, on purpose (tests, experiments)
    check_engines: bool = True  # at the end, measure the faster engines against fp32 (what predict's auto needs)

    @property
    def data_name(self) -> str:
        """What the run's record calls its data: the dataset folder, "store", or both."""
        if self.dataset is None:
            return "store"
        return f"{self.dataset} + store" if self.store else str(self.dataset)

    def params(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: dict[str, Any], checkpoints_dir: Path) -> TrainConfig:
        """The configuration a run was started with (keys of older or newer versions ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.items() if k in known}
        values["checkpoints_dir"] = Path(values.get("checkpoints_dir") or checkpoints_dir)
        for key in ("dataset", "weights", "tensorboard"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)

    def check(self, fresh: bool = True) -> None:
        """A one-line error for a setting no run can start with (``fresh``: a new run, not a resumed one)."""
        if self.dataset is None and not self.store:
            raise DogbreedError("say which data: --dataset DIR, --store (the store's labelled images), or both")
        if self.epochs < 1:
            raise DogbreedError("--epochs must be at least 1")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise DogbreedError(f"--lr must be a positive number, not {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise DogbreedError("--seed must be from 0 to 2^32 - 1")
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise DogbreedError("--image-size must be from 16 to 1024 pixels")
        if self.init_from is not None and self.weights is not None:
            raise DogbreedError("--from already gives the starting weights; drop --weights")
        if fresh:
            self._check_backbone()

    def _check_backbone(self) -> None:
        """A head on a frozen backbone that never saw ImageNet learns next to nothing from photos: refused unless
        asked for by name (``random_backbone``)."""
        random = not self.pretrained and self.weights is None and self.init_from is None
        if self.random_backbone:
            if self.mode == "finetune" or self.init_from is not None or self.weights is not None or self.pretrained:
                raise DogbreedError(
                    "--random-backbone means extractor mode on a frozen random backbone: drop --finetune, "
                    "--pretrained, --weights and --from with it"
                )
        elif random and self.mode == "extractor":
            raise DogbreedError(
                "--extractor with --no-pretrained would train a head on a frozen RANDOM backbone (near chance on "
                "photos): use --finetune, drop --no-pretrained, or pass --random-backbone if that is what you want"
            )


class Listener:
    """Receives training events; the CLI renders them (progress bars, an epoch table). Does nothing here."""

    def stage(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def start(self, description: str, total: int) -> None: ...

    def advance(self, n: int = 1, loss: float | None = None) -> None: ...

    def stop(self) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass
class TrainResult:
    run_id: int
    status: str
    checkpoint: Path | None
    best_epoch: int | None
    best_val_acc: float | None
    test: dict[str, Any] | None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    precision: str = "fp32"
    resumed_after: int | None = None  # the epoch a resumed run continued from
    checks: list[dict[str, Any]] = field(default_factory=list)  # the engine checks measured at the end
    checked_on: str | None = None  # which held-out images they were measured on
    auto_engine: str | None = None  # what predict's auto runs this model on here, now ("openvino bf16")


class Terminated(BaseException):
    """SIGTERM arrived (torchrun stops the other ranks this way when one dies). A BaseException, like Ctrl-C, so
    that no ``except Exception`` on the way swallows it."""
