"""Evaluations (``dogbreed eval``) and engine checks (how often a reduced precision or an exported model agrees
with the fp32 model on held-out images). Both are measurements: written once, listed by ``stats``."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from dogbreed.store.db import utcnow, write
from dogbreed.store.jobs import ModelId

_EVAL_COLUMNS = (
    "id, model_key, model_ref, model_name, run_id, engine, precision, device, data, split, n, top1, top5, "
    "macro_f1, seconds, created_at"
)
_CHECK_COLUMNS = (
    "id, model_key, engine, precision, target_key, data, n, agreement, reference_accuracy, accuracy, created_at, "
    "device, labelled"
)


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    model_key: str
    model_ref: str
    model_name: str
    run_id: int | None
    engine: str
    precision: str
    device: str
    data: str
    split: str
    n: int
    top1: float
    top5: float
    macro_f1: float
    seconds: float
    created_at: str
    report: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EngineCheck:
    id: int
    model_key: str
    engine: str
    precision: str
    target_key: str | None
    data: str
    n: int
    agreement: float
    reference_accuracy: float | None
    accuracy: float | None
    created_at: str
    device: str | None = None  # the device kind it was measured on: cpu, cuda, mps
    labelled: int | None = None  # how many of the n images had a label (the accuracies' sample size)

    def to_dict(self) -> dict:
        return asdict(self)


def add_evaluation(
    conn: sqlite3.Connection,
    model: ModelId,
    *,
    run_id: int | None,
    engine: str,
    precision: str,
    device: str,
    data: str,
    split: str,
    report: dict[str, Any],
    seconds: float,
) -> int:
    with write(conn):
        cur = conn.execute(
            "INSERT INTO evaluations (model_key, model_ref, model_name, run_id, engine, precision, device, data, "
            "split, n, top1, top5, macro_f1, report, seconds, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model.key,
                model.ref,
                model.name,
                run_id,
                engine,
                precision,
                device,
                data,
                split,
                report["n"],
                report["accuracy"],
                report["top5"],
                report["macro_f1"],
                json.dumps(report),
                seconds,
                utcnow(),
            ),
        )
    return int(cur.lastrowid)


def list_evaluations(
    conn: sqlite3.Connection, *, run_id: int | None = None, model_key: str | None = None, limit: int = 50
) -> list[EvaluationRecord]:
    where, params = [], []
    if run_id is not None:
        where.append("run_id = ?")
        params.append(run_id)
    if model_key is not None:
        where.append("model_key = ?")
        params.append(model_key)
    sql = f"SELECT {_EVAL_COLUMNS} FROM evaluations {'WHERE ' + ' AND '.join(where) if where else ''} "
    rows = conn.execute(sql + "ORDER BY id DESC LIMIT ?", (*params, limit))
    return [EvaluationRecord(**dict(r)) for r in rows]


def get_evaluation(conn: sqlite3.Connection, evaluation_id: int) -> EvaluationRecord | None:
    row = conn.execute(f"SELECT {_EVAL_COLUMNS}, report FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()
    if row is None:
        return None
    values = dict(row)
    values["report"] = json.loads(values["report"])
    return EvaluationRecord(**values)


def add_check(
    conn: sqlite3.Connection,
    *,
    model_key: str,
    engine: str,
    precision: str,
    data: str,
    n: int,
    agreement: float,
    target_key: str | None = None,
    reference_accuracy: float | None = None,
    accuracy: float | None = None,
    device: str = "cpu",
    labelled: int | None = None,
) -> int:
    with write(conn):
        cur = conn.execute(
            "INSERT INTO engine_checks (model_key, engine, precision, target_key, data, n, agreement, "
            "reference_accuracy, accuracy, created_at, device, labelled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model_key,
                engine,
                precision,
                target_key,
                data,
                n,
                agreement,
                reference_accuracy,
                accuracy,
                utcnow(),
                device,
                labelled,
            ),
        )
    return int(cur.lastrowid)


def checks_for(conn: sqlite3.Connection, model_key: str) -> list[EngineCheck]:
    """Every check measured for this model (as the reference, or as the exported target), newest first."""
    rows = conn.execute(
        f"SELECT {_CHECK_COLUMNS} FROM engine_checks WHERE model_key = ? OR target_key = ? ORDER BY id DESC",
        (model_key, model_key),
    )
    return [EngineCheck(**dict(r)) for r in rows]
