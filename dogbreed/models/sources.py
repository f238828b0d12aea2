"""Which model: turn what the user asked for (a checkpoint, a run, a ready ImageNet model, an export, or nothing)
into a ``ModelSource`` that engines can load and the store can name.

With nothing asked for, the default is, in order: the model the user pinned (``dogbreed models --default``), else
the best finished training run on photos (highest validation accuracy among the finished runs on the newest such
run's dataset: never silently the newest when an older one is better), else the default ready model. A run trained
on a synthetic dataset (stripe patterns, not photos) is never chosen unless pinned. Every output names the model
used, why it was chosen and, for a default, how to change it.

Light module: no torch import (predict on OpenVINO needs none).
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError
from dogbreed.files import file_sha256
from dogbreed.store import runs as run_rows
from dogbreed.store import settings
from dogbreed.store.jobs import ModelId

KINDS = ("checkpoint", "ready", "export")
EXPORT_SUFFIXES = (".onnx", ".xml")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # checkpoint | ready | export
    ref: str  # checkpoint/export: absolute path; ready: torchvision:<arch>:<weights> or the weights file's path
    key: str  # identity: the file's sha256, or torchvision:<arch>:<weights>
    name: str  # what people read
    arch: str | None = None  # ready models
    weights: str | None = None  # ready models: the torchvision weights name
    weights_file: str | None = None  # ready models loaded from a local state dict
    run_id: int | None = None
    reason: str = ""  # why this model (when it was chosen by default), ending with how to change the default
    synthetic: bool = False  # trained on a synthetic dataset (stripe patterns): not a model for photos

    @property
    def identity(self) -> ModelId:
        return ModelId(self.key, self.ref, self.name)

    @property
    def path(self) -> Path:
        return Path(self.weights_file or self.ref)

    def as_options(self) -> str:
        """The command-line options that name this model again (for the hints that print a command to run)."""
        if self.run_id is not None:
            return f"--run {self.run_id}"
        if self.kind != "ready":
            return f"--checkpoint {shlex.quote(self.ref)}"
        weights = f" --weights {shlex.quote(self.weights_file)}" if self.weights_file else ""
        return f"--model {self.arch}{weights}"

    @property
    def file(self) -> str | None:
        """The model's own file (a checkpoint or an export); None for a ready ImageNet model."""
        return None if self.kind == "ready" else self.ref

    @property
    def stem(self) -> str:
        """A short file-name stem for things made from this model (exports)."""
        if self.weights_file:
            return f"{self.arch}-{Path(self.weights_file).stem}"
        return Path(self.ref).stem if self.kind != "ready" else (self.arch or "model")

    def is_ready(self, arch: str) -> bool:
        """Whether this is the published ready model ``arch`` (not a local weights file)."""
        return self.kind == "ready" and self.arch == arch and not self.weights_file

    def pin_value(self) -> str:
        """How the store's default-model setting names this model (``sources.pinned`` reads it back)."""
        if self.run_id is not None:
            return f"run:{self.run_id}"
        if self.kind == "ready" and self.weights_file:
            return f"weights:{self.arch}:{self.weights_file}"
        if self.kind == "ready":
            return f"ready:{self.arch}:{self.weights}"
        return f"file:{self.ref}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelSource:
        return cls(**json.loads(text))


def _regular_file(path: Path, what: str, make_one: str) -> Path:
    if not path.exists():
        raise DogbreedError(f"{what} {path} does not exist; check the path or {make_one}")
    if path.is_dir():
        raise DogbreedError(f"{what} {path} is a folder; pass the model file inside it")
    if not path.is_file():
        raise DogbreedError(f"{what} {path} is not a regular file")
    return path.resolve()


def from_checkpoint(path: Path | str, run_id: int | None = None, reason: str = "") -> ModelSource:
    """A dogbreed checkpoint, or an exported model (ONNX, OpenVINO IR) that carries its own description."""
    path = _regular_file(Path(path), "checkpoint", "train one with 'dogbreed train'")
    kind = "export" if path.suffix.lower() in EXPORT_SUFFIXES else "checkpoint"
    key = _export_key(path) if kind == "export" else file_sha256(path)
    return ModelSource(kind, str(path), key, path.name, run_id=run_id, reason=reason)


def _export_key(path: Path) -> str:
    weights = path.with_suffix(".bin")
    has_weights = path.suffix.lower() == ".xml" and weights.is_file()
    return export_key(file_sha256(path), file_sha256(weights) if has_weights else None)


def export_key(graph_sha256: str, weights_sha256: str | None) -> str:
    """An exported model's identity from its files' sha256: an OpenVINO IR is two files (.xml graph, .bin
    weights), so its key covers both; an ONNX file (or an IR without weights) is its own sha256."""
    return graph_sha256 if weights_sha256 is None else weights_sha256[:32] + graph_sha256[:32]


def from_ready(arch: str, weights: str | None = None, weights_file: Path | str | None = None) -> ModelSource:
    """A torchvision ImageNet classifier used as a breed classifier. Imports torchvision (to check the name)."""
    from dogbreed.models import zoo
    from dogbreed.models.build import resolve_arch

    arch = resolve_arch(arch)
    info = zoo.describe(arch, weights)
    if weights_file is not None:
        path = _regular_file(
            Path(weights_file), "weights file", "drop --weights to download the published ones (needs internet)"
        )
        return ModelSource(
            "ready", str(path), file_sha256(path), f"{arch} (ImageNet, {path.name})", arch, info.weights, str(path)
        )
    ref = f"torchvision:{arch}:{info.weights}"
    return ModelSource("ready", ref, ref, f"{arch} (ImageNet {info.weights})", arch, info.weights)


def from_run(conn: sqlite3.Connection, run_id: int, reason: str = "") -> ModelSource:
    run = run_rows.get_run(conn, run_id)
    if run is None:
        raise DogbreedError(f"no training run with id {run_id}; see 'dogbreed stats'")
    if not run.checkpoint_path:
        raise DogbreedError(f"run {run_id} kept no checkpoint ({run.status}); choose another run")
    if not Path(run.checkpoint_path).is_file():
        raise DogbreedError(f"run {run_id}'s checkpoint {run.checkpoint_path} no longer exists")
    source = from_checkpoint(run.checkpoint_path, run_id=run_id, reason=reason)
    return _replace(source, synthetic=is_synthetic_run(run))


def is_synthetic_run(run: run_rows.RunRecord) -> bool:
    """Whether ``run`` trained on a synthetic dataset: as recorded, or (runs recorded before that was) as its
    dataset folder's marker says today."""
    if run.synthetic is not None:
        return run.synthetic
    from dogbreed.datasets import is_synthetic

    return is_synthetic(Path(run.dataset))


def learnt_from_synthetic(conn: sqlite3.Connection, model_key: str) -> bool:
    """Whether the model with this key (a checkpoint's sha256) is a run of this store trained on synthetic data."""
    run = run_rows.find_by_checkpoint(conn, model_key)
    return run is not None and is_synthetic_run(run)


CHANGE_DEFAULT = "change: dogbreed models --default"
SYNTHETIC_NOTE = "trained on SYNTHETIC data (stripe patterns, not photos)"


def best_run(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """(run id, why) of the best finished run on photos whose checkpoint still exists, or None. Runs trained on a
    synthetic dataset are left out: they learnt stripe patterns, and only a pin makes one the default."""
    finished = [r for r in _finished_runs(conn) if not is_synthetic_run(r)]
    if not finished:
        return None
    dataset = finished[0].dataset  # the newest finished run's dataset: scores on other data do not compare
    same = [r for r in finished if r.dataset == dataset]
    best = max(same, key=lambda r: (r.best_val_acc or 0.0, r.id))
    why = f"best validation accuracy ({best.best_val_acc:.1%}) of {len(same)} finished run(s) on {dataset}"
    return best.id, f"{why}; {CHANGE_DEFAULT}"


def _finished_runs(conn: sqlite3.Connection) -> list[run_rows.RunRecord]:
    """Finished runs whose checkpoint still exists, newest first."""
    return [r for r in run_rows.finished_with_checkpoint(conn) if Path(r.checkpoint_path).is_file()]


def parse_pin(text: str) -> tuple[str, str]:
    kind, _, value = text.partition(":")
    return kind, value


def pin(conn: sqlite3.Connection, source: ModelSource | None) -> None:
    """Make ``source`` the default model of this store (None: back to the automatic choice). The caller checks
    first that it loads (``engines.validate``), so a broken file is refused when pinned, not at every predict."""
    settings.set_setting(conn, settings.DEFAULT_MODEL, None if source is None else source.pin_value())


def pinned(conn: sqlite3.Connection) -> ModelSource | None:
    value = settings.get_setting(conn, settings.DEFAULT_MODEL)
    if not value:
        return None
    kind, rest = parse_pin(value)
    why = "pinned with 'dogbreed models --default'; unpin: dogbreed models --default auto"
    try:
        if kind == "run":
            return from_run(conn, int(rest), reason=why)
        if kind == "file":
            return known_checkpoint(conn, from_checkpoint(rest, reason=why))
        if kind == "ready":
            arch, _, weights = rest.partition(":")
            return _with_reason(from_ready(arch, weights or None), why)
        if kind == "weights":
            arch, _, path = rest.partition(":")
            return _with_reason(from_ready(arch, weights_file=path), why)
    except DogbreedError as exc:
        raise DogbreedError(
            f"the pinned default model cannot be used: {exc} (change it: 'dogbreed models --default')"
        ) from None
    raise DogbreedError(f"the pinned default model {value!r} is not understood; pin another with 'dogbreed models'")


def _with_reason(source: ModelSource, reason: str) -> ModelSource:
    return _replace(source, reason=reason)


def _replace(source: ModelSource, **changes: Any) -> ModelSource:
    return ModelSource(**{**asdict(source), **changes})


def known_checkpoint(conn: sqlite3.Connection | None, source: ModelSource) -> ModelSource:
    """A checkpoint named by its path, with what this store's record of its training run adds (its run, whether it
    learnt from a synthetic dataset)."""
    if conn is None or source.kind != "checkpoint":
        return source
    run = run_rows.find_by_checkpoint(conn, source.key)
    if run is None:
        return source
    return _replace(source, run_id=source.run_id or run.id, synthetic=is_synthetic_run(run))


def named(text: str) -> dict[str, Any]:
    """What one word names, as ``resolve`` options: a run (``3`` or ``run:3``), else a model file."""
    if text.isdigit():
        return {"run": int(text)}
    if text.startswith("run:") and text[4:].isdigit():
        return {"run": int(text[4:])}
    return {"checkpoint": Path(text)}


def pin_request(text: str, weights: Path | str | None) -> dict[str, Any] | None:
    """What ``models --default TEXT`` names, as ``resolve`` options (None for ``auto``): ``run:N``, a model file
    (a path), else a ready model with its optional local ``weights``."""
    is_file = bool(Path(text).suffix) or "/" in text
    if weights is not None and (text == "auto" or text.startswith("run:") or is_file):
        raise DogbreedError("--weights goes with --default ARCH (the ready model those ImageNet weights are for)")
    if text == "auto":
        return None
    if text.startswith("run:") and text[4:].isdigit():
        return {"run": int(text[4:])}
    return {"checkpoint": Path(text)} if is_file else {"model": text, "weights": weights}


def resolve(
    conn: sqlite3.Connection | None,
    *,
    checkpoint: Path | str | None = None,
    model: str | None = None,
    weights: Path | str | None = None,
    run: int | None = None,
) -> ModelSource:
    """The model a command should use (see the module doc for the default order)."""
    if sum(x is not None for x in (checkpoint, run)) + (model is not None and checkpoint is None) > 1:
        raise DogbreedError("choose one model: --checkpoint, --run or --model")
    if weights is not None and model is None:
        raise DogbreedError("--weights needs --model ARCH (the architecture those ImageNet weights are for)")
    if checkpoint is not None:
        if model is not None:
            raise DogbreedError("--checkpoint already names the model; drop --model")
        return known_checkpoint(conn, from_checkpoint(checkpoint))
    if run is not None:
        if conn is None:
            raise DogbreedError("--run needs a store")
        return from_run(conn, run)
    if model is not None:
        return from_ready(model, weights_file=weights)
    if conn is not None:
        chosen = pinned(conn)
        if chosen is not None:
            return chosen
        best = best_run(conn)
        if best is not None:
            return from_run(conn, best[0], reason=best[1])
    from dogbreed.models.zoo import DEFAULT_READY

    return _with_reason(from_ready(DEFAULT_READY), _why_ready(conn))


def _why_ready(conn: sqlite3.Connection | None) -> str:
    """Why the default ready model answers: no trained run yet, only runs on synthetic data (named, with how to use
    one anyway), or runs whose checkpoints were moved or deleted (said, so a user whose model vanished is not told
    they never trained one)."""
    runs = run_rows.finished_with_checkpoint(conn) if conn is not None else []
    synthetic = [r for r in runs if Path(r.checkpoint_path).is_file() and is_synthetic_run(r)]
    if synthetic:
        newest = synthetic[0].id
        which = f"run {newest} was" if len(synthetic) == 1 else f"runs {', '.join(str(r.id) for r in synthetic)} were"
        pin = "pin it" if len(synthetic) == 1 else "pin one"
        return f"{which} trained on synthetic data, not photos; {pin}: dogbreed models --default run:{newest}"
    gone = [r for r in runs if not Path(r.checkpoint_path).is_file()]
    if not gone:
        return f"no trained model yet; {CHANGE_DEFAULT}"
    more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
    return f"the checkpoint of finished run {gone[0].id} is missing ({gone[0].checkpoint_path}){more}; {CHANGE_DEFAULT}"


def training_run(conn: sqlite3.Connection, source: ModelSource) -> run_rows.RunRecord | None:
    """The training run a model came from, when this store has it (by run id, or by the checkpoint's sha256)."""
    if source.run_id is not None:
        return run_rows.get_run(conn, source.run_id)
    if source.kind == "checkpoint":
        return run_rows.find_by_checkpoint(conn, source.key)
    return None


def imagenet_overlap(source: ModelSource, run: run_rows.RunRecord | None, meta: object = None) -> bool:
    """Whether the model's weights come from ImageNet training (a ready model, or trained from ImageNet weights):
    Stanford Dogs images come from ImageNet, so its scores there are optimistic. Asks the run's parameters when the
    store has the run, else the checkpoint's own record (``meta``, read when not given)."""
    if source.kind == "ready":
        return True
    if run is not None:
        params = run.params or {}
        return bool(params.get("imagenet_overlap", params.get("pretrained") or params.get("weights")))
    if source.kind != "checkpoint":
        return False
    if meta is None:
        from dogbreed.formats.checkpoint import read_checkpoint

        meta, _, _ = read_checkpoint(source.ref)
    return bool(meta.metrics.get("imagenet_overlap") or meta.imagenet_head)
