"""Where things live. Precedence everywhere: command-line flag > environment variable > default.

One rule per location, applied by every command: the dataset is ``--dataset``, else ``$DOGBREED_DATASET``, else
``$DOGBREED_HOME/dataset`` (``dataset download``, ``dataset synthetic``, ``train`` and ``eval`` all agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "DOGBREED_HOME"
ENV_DB = "DOGBREED_DB"
ENV_CHECKPOINTS = "DOGBREED_CHECKPOINTS"
ENV_DATASET = "DOGBREED_DATASET"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def home_dir() -> Path:
    """DOGBREED_HOME, or the platform's user data dir for "dogbreed"."""
    env = _env_path(ENV_HOME)
    if env is not None:
        return env
    from platformdirs import user_data_dir

    return Path(user_data_dir("dogbreed", appauthor=False))


@dataclass(frozen=True)
class Paths:
    home: Path
    db: Path
    checkpoints: Path
    dataset: Path

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def cache(self) -> Path:
        """Compiled engine models and other things that can be rebuilt."""
        return self.home / "cache"

    @property
    def exports(self) -> Path:
        """Where ``dogbreed export`` writes when no --output is given."""
        return self.home / "exports"

    @property
    def weights(self) -> Path:
        """Where torchvision keeps downloaded ImageNet weights (torch.hub's folder, worked out without importing
        torch): the folder an offline user copies weights files into."""
        torch_home = _env_path("TORCH_HOME")
        if torch_home is None:
            torch_home = (_env_path("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "torch"
        return torch_home / "hub" / "checkpoints"

    def as_dict(self) -> dict[str, str]:
        return {
            "home": str(self.home),
            "db": str(self.db),
            "checkpoints": str(self.checkpoints),
            "dataset": str(self.dataset),
            "exports": str(self.exports),
            "weights": str(self.weights),
            "logs": str(self.logs),
            "cache": str(self.cache),
        }


def resolve_paths(db: Path | None = None, dataset: Path | None = None, checkpoints: Path | None = None) -> Paths:
    home = home_dir()
    return Paths(
        home=home,
        db=db or _env_path(ENV_DB) or home / "dogbreed.db",
        checkpoints=checkpoints or _env_path(ENV_CHECKPOINTS) or home / "checkpoints",
        dataset=dataset or _env_path(ENV_DATASET) or home / "dataset",
    )
