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
