from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dogbreed.cli import app


class Cli:
    """Runs the real CLI against the test's own store."""

    def __init__(self, db: Path):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0):
        result = self.runner.invoke(
            app, ["--db", str(self.db), *map(str, args)], catch_exceptions=False, prog_name="dogbreed"
        )
        if expect is not None:
            assert result.exit_code == expect, f"exit {result.exit_code}\n{result.output}"
        return result

    def json(self, *args: str, expect: int | None = 0):
        return json.loads(self(*args, "--json", expect=expect).stdout)

    def sql(self, query: str, params=()):
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: any connection beyond this machine fails loudly (the code under test must
    take its files from disk or from a server the test runs on 127.0.0.1)."""
    import socket

    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or "/" in host):
            raise OSError(f"test tried to reach the network ({host}); tests must stay offline")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DOGBREED_HOME", str(home))
    monkeypatch.delenv("DOGBREED_DB", raising=False)
    monkeypatch.delenv("DOGBREED_CHECKPOINTS", raising=False)
    monkeypatch.delenv("DOGBREED_DATASET", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached ImageNet weights leak in
    return home


@pytest.fixture
def gate(tmp_path):
    """A Gate (tests/pausing.py) that holds a process at a known point; at the end of the test it opens, and a
    process it held that still runs is killed (a failed test leaves nothing behind)."""
    from tests.pausing import Gate

    held = Gate(tmp_path)
    yield held
    held.close()


@pytest.fixture
def cli(home) -> Cli:
    return Cli(home / "dogbreed.db")


def make_checkpoint(path: Path, *, arch="resnet18", mode="extractor", image_size=32, classes=None, seed=0) -> Path:
    """A real checkpoint with random weights: enough for plumbing, nothing learnt."""
    import torch

    from dogbreed.breeds import BREEDS
    from dogbreed.formats.checkpoint import CheckpointMeta, save_checkpoint
    from dogbreed.models.build import build_model

    torch.manual_seed(seed)
    classes = classes or [[b.wnid, b.name] for b in BREEDS]
    model = build_model(arch, mode, len(classes))
    save_checkpoint(path, model, CheckpointMeta(arch, mode, classes, image_size=image_size))
    return path


def photo_like_dataset(root: Path, **kw) -> Path:
    """A synthetic dataset without its synthetic marker: what a folder of real photos looks like to dogbreed (a
    run trained on it can become the default model)."""
    from dogbreed.datasets.synthetic import make_synthetic

    make_synthetic(root, **kw)
    (root / "dogbreed-synthetic.json").unlink()
    (root / "README.txt").unlink()
    return root


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "random-resnet18.pt")


@pytest.fixture
def uploaded(cli, tmp_path):
    """Upload n distinct JPEGs; returns their ids."""
    from tests.images import jpeg_bytes, write

    def _upload(n: int, size=(64, 48), breed: str | None = None) -> list[int]:
        folder = tmp_path / f"batch{len(list(tmp_path.glob('batch*')))}"
        for i in range(n):
            write(folder / f"img{i:04d}.jpg", jpeg_bytes(size=size, seed=1000 + i + 7 * len(str(folder))))
        args = ["upload", folder] + (["--ground-truth", breed] if breed else [])
        return [r["image_id"] for r in cli.json(*args)["results"]]

    return _upload


def imagenet_state_dict(path: Path, bias_index: int, *, arch: str = "resnet18", strength: float = 30.0) -> Path:
    """A torchvision ImageNet state dict (1000 classes) with random backbone weights and a classifier that says
    class ``bias_index`` whatever the picture: what a ready model's weights file looks like, with a known answer."""
    import torch
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.get_model(arch, weights=None).state_dict()
    weight_key = [k for k in state if k.endswith(".weight") and state[k].shape[0] == 1000][-1]
    bias_key = weight_key.replace(".weight", ".bias")
    state[weight_key].zero_()
    state[bias_key].zero_()
    state[bias_key][bias_index] = strength
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def golden_weights(tmp_path_factory) -> Path:
    """resnet18 ImageNet weights that answer class 207, golden retriever."""
    return imagenet_state_dict(tmp_path_factory.mktemp("weights") / "golden.pth", 207)


@pytest.fixture(scope="session")
def teapot_weights(tmp_path_factory) -> Path:
    """resnet18 ImageNet weights that answer class 849, teapot: not a dog."""
    return imagenet_state_dict(tmp_path_factory.mktemp("weights") / "teapot.pth", 849)
