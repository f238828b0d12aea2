"""SQLModel classes for the store's tables: typed rows for the write paths that already pay for heavy imports
(training records its runs and epochs through them). The schema itself is created by the append-only
migrations in ``schema.py``; a test keeps the two in step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from dogbreed.store.db import connect


class ImageRow(SQLModel, table=True):
    __tablename__ = "images"
    id: Optional[int] = Field(default=None, primary_key=True)
    filename: str
    sha256: str = Field(unique=True)
    format: str
    width: int
    height: int
    size_bytes: int
    ground_truth: Optional[str] = None
    created_at: str


class ImageBlob(SQLModel, table=True):
    __tablename__ = "image_blobs"
    image_id: int = Field(primary_key=True, foreign_key="images.id")
    data: bytes


class PredictionRow(SQLModel, table=True):
    __tablename__ = "predictions"
    id: Optional[int] = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    checkpoint_sha256: str
    checkpoint_path: str
    top1: str
    top1_prob: float
    probs: str
    device: str
    job_id: Optional[int] = None
    created_at: str


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    id: Optional[int] = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    checkpoint_sha256: str
    checkpoint_path: str
    status: str
    error: Optional[str] = None
    owner_pid: Optional[int] = None
    device: Optional[str] = None
    created_at: str
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    seconds: Optional[float] = None


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str
    status: str
    model: str
    mode: str
    device: str
    dataset: str
    params: str
    num_classes: int
    checkpoint_path: Optional[str] = None
    checkpoint_sha256: Optional[str] = None
    best_epoch: Optional[int] = None
    best_val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    test_top5: Optional[float] = None
    test_macro_f1: Optional[float] = None
    test_report: Optional[str] = None
    skipped: Optional[str] = None
    error: Optional[str] = None
    started_at: str
    finished_at: Optional[str] = None
    duration_s: Optional[float] = None


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
