"""The store's schema declared as SQLModel classes: SQLModel's one role in dogbreed.

- The append-only migrations (``schema.py``) build the tables; a test checks that what they build is exactly
  what is declared here (columns, types, nullability, primary keys), so the two cannot drift.
- Python users get typed, READ-ONLY queries over a store (``dogbreed.Store(path).session()``), e.g.
  ``session.exec(select(PredictionRow).where(PredictionRow.dog_probability < 0.5))``.

dogbreed itself writes through ``store/*`` with stdlib sqlite3 (one write discipline), and never imports this
module on the CLI's start-up path: importing SQLModel alone costs ~0.4 s.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel


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


class ImageBlobRow(SQLModel, table=True):
    __tablename__ = "image_blobs"
    image_id: int = Field(primary_key=True, foreign_key="images.id")
    data: bytes


class PredictionRow(SQLModel, table=True):
    __tablename__ = "predictions"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    model_key: str
    model_ref: str
    model_name: str | None = None
    top1: str
    top1_prob: float
    probs: str
    dog_probability: float | None = None
    device: str
    engine: str | None = None
    precision: str | None = None
    job_id: int | None = None
    created_at: str
    class_names: str | None = None


class JobRow(SQLModel, table=True):
    __tablename__ = "jobs"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    model_key: str
    model_ref: str
    model_name: str | None = None
    status: str
    error: str | None = None
    owner_pid: int | None = None
    device: str | None = None
    engine: str | None = None
    precision: str | None = None
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
    last_checkpoint_path: str | None = None
    init_from: str | None = None
    precision: str | None = None
    classes: str | None = None
    synthetic: int | None = None


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
    train_f1: float | None = None
    lr: float | None = None


class EvaluationRow(SQLModel, table=True):
    __tablename__ = "evaluations"
    id: int | None = Field(default=None, primary_key=True)
    model_key: str
    model_ref: str
    model_name: str
    run_id: int | None = Field(default=None, foreign_key="runs.id")
    engine: str
    precision: str
    device: str
    data: str
    split: str
    n: int
    top1: float
    top5: float
    macro_f1: float
    report: str
    seconds: float
    created_at: str


class EngineCheckRow(SQLModel, table=True):
    __tablename__ = "engine_checks"
    id: int | None = Field(default=None, primary_key=True)
    model_key: str
    engine: str
    precision: str
    target_key: str | None = None
    data: str
    n: int
    agreement: float
    reference_accuracy: float | None = None
    accuracy: float | None = None
    created_at: str
    device: str | None = None
    labelled: int | None = None


class SettingRow(SQLModel, table=True):
    __tablename__ = "settings"
    key: str = Field(primary_key=True)
    value: str
    updated_at: str


class BreedRow(SQLModel, table=True):
    __tablename__ = "breeds"
    key: str = Field(primary_key=True)
    name: str
    match_key: str = Field(unique=True)
    note: str | None = None
    created_at: str


class LabelChangeRow(SQLModel, table=True):
    __tablename__ = "label_changes"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="images.id")
    old: str | None = None
    new: str | None = None
    how: str
    changed_at: str


class RunImageRow(SQLModel, table=True):
    __tablename__ = "run_images"
    run_id: int = Field(primary_key=True, foreign_key="runs.id")
    image_id: int = Field(primary_key=True)
    split: str
    label: str


def read_only_engine(path: Path | str) -> Engine:
    """An engine over the store at ``path`` that cannot write: SQLite opens it read-only."""
    engine = create_engine(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true")

    @event.listens_for(engine, "connect")
    def _settings(dbapi_conn, _record) -> None:  # readers wait on a writer instead of failing
        dbapi_conn.execute("PRAGMA busy_timeout = 60000")

    return engine


def read_session(path: Path | str) -> Session:
    return Session(read_only_engine(path))


def declared_columns() -> dict[str, dict[str, tuple[str, bool, bool]]]:
    """{table: {column: (SQL type, nullable, primary key)}} as declared above."""
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    return {
        name: {
            c.name: (c.type.compile(dialect=dialect), bool(c.nullable) and not c.primary_key, bool(c.primary_key))
            for c in table.columns
        }
        for name, table in SQLModel.metadata.tables.items()
    }
