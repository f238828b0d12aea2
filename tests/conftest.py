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
        result = self.runner.invoke(app, ["--db", str(self.db), *map(str, args)], catch_exceptions=False)
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


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DOGBREED_HOME", str(home))
    monkeypatch.delenv("DOGBREED_DB", raising=False)
    monkeypatch.delenv("DOGBREED_CHECKPOINTS", raising=False)
    monkeypatch.delenv("DOGBREED_DATASET", raising=False)
    return home


@pytest.fixture
def cli(home) -> Cli:
    return Cli(home / "dogbreed.db")


def make_checkpoint(path: Path, *, arch="resnet18", mode="extractor", image_size=32, classes=None, seed=0) -> Path:
    """A real checkpoint with random weights: enough for plumbing, nothing learnt."""
    import torch

    from dogbreed.breeds import BREEDS
    from dogbreed.model import CheckpointMeta, build_model, save_checkpoint

    torch.manual_seed(seed)
    classes = classes or [[b.wnid, b.name] for b in BREEDS]
    model = build_model(arch, mode, len(classes))
    save_checkpoint(path, model, CheckpointMeta(arch, mode, classes, image_size=image_size))
    return path


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
