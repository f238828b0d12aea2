"""SQLModel classes for the store's tables: typed rows for the write paths that already pay for heavy imports
(training records its runs and epochs through them). The schema itself is created by the append-only
migrations in ``schema.py``; a test keeps the two in step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from dogbreed.store.db import connect


class ImageRow(SQLModel, table=True):
    __tablename__ = "images"
    id: int | None = Field(default=None, primary_key=True)
    filename: str
    sha256: str = Field(unique=True)
    format: str
    width: int
    height: int
    size_bytes: int
    ground_truth: str | None = None
    created_at: str


class ImageBlob(SQLModel, table=True):
    __tablename__ = "image_blobs"
    image_id: int = Field(primary_key=True, foreign_key="images.id")
    data: bytes


class PredictionRow(SQLModel, table=True):
    __tablename__ = "predictions"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    checkpoint_sha256: str
    checkpoint_path: str
    top1: str
    top1_prob: float
    probs: str
    device: str
    job_id: int | None = None
    created_at: str


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    checkpoint_sha256: str
    checkpoint_path: str
    status: str
    error: str | None = None
    owner_pid: int | None = None
    device: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    status: str
    model: str
    mode: str
    device: str
    dataset: str
    params: str
    num_classes: int
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None
    best_epoch: int | None = None
    best_val_acc: float | None = None
    test_acc: float | None = None
    test_top5: float | None = None
    test_macro_f1: float | None = None
    test_report: str | None = None
    skipped: str | None = None
    error: str | None = None
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    owner_pid: int | None = None


class EpochRow(SQLModel, table=True):
    __tablename__ = "epochs"
    run_id: int = Field(primary_key=True, foreign_key="runs.id")
    epoch: int = Field(primary_key=True)
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_top5: float
    val_f1: float
    seconds: float


def engine_for(path: Path | str) -> Engine:
    """An engine whose connections carry the store's settings (busy timeout, foreign keys, WAL)."""

    def make() -> sqlite3.Connection:
        conn = connect(path)
        conn.isolation_level = ""  # let SQLAlchemy manage transactions
        conn.row_factory = None
        return conn

    return create_engine("sqlite://", creator=make)


def table_columns() -> dict[str, set[str]]:
    return {name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()}
