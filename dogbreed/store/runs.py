"""Training runs and their epochs, and the store's summary."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dogbreed.procs import pid_alive
from dogbreed.store.db import placeholders, utcnow, write

RUN_STATUSES = ("running", "finished", "interrupted", "failed")
_RUN_COLUMNS = (
    "id, name, status, model, mode, device, dataset, num_classes, checkpoint_path, checkpoint_sha256, best_epoch, "
    "best_val_acc, test_acc, test_top5, test_macro_f1, started_at, finished_at, duration_s, error, precision, "
    "init_from, last_checkpoint_path, owner_pid, classes, synthetic"
)
# The columns a run's owner may update as it goes (anything else is fixed at start).
_UPDATABLE = frozenset(
    "status checkpoint_path checkpoint_sha256 best_epoch best_val_acc test_acc test_top5 test_macro_f1 test_report "
    "skipped error finished_at duration_s owner_pid last_checkpoint_path device precision".split()
)


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One trained epoch, as training measures it and the ``epochs`` table keeps it (its columns, in this order;
    ``store.tables.Epoch`` declares the same, which a test checks)."""

    epoch: int
    train_loss: float
    train_acc: float
    train_f1: float | None = None  # None in epochs recorded before it was measured
    val_loss: float
    val_acc: float
    val_top5: float
    val_f1: float
    lr: float | None = None  # None in epochs recorded before it was measured
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The epoch as plain values, in column order (what a saved training state and JSON output hold)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> EpochRecord:
        """An epoch from its plain values (a saved training state's); a field it lacks is None, extra keys are
        ignored."""
        return cls(**{name: row.get(name) for name in EPOCH_FIELDS})


EPOCH_FIELDS = tuple(f.name for f in fields(EpochRecord))
_EPOCH_COLUMNS = EPOCH_FIELDS  # the epochs table's columns besides run_id


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str
    status: str
    model: str
    mode: str
    device: str
    dataset: str
    num_classes: int
    checkpoint_path: str | None
    checkpoint_sha256: str | None
    best_epoch: int | None
    best_val_acc: float | None
    test_acc: float | None
    test_top5: float | None
    test_macro_f1: float | None
    started_at: str
    finished_at: str | None
    duration_s: float | None
    error: str | None
    precision: str | None
    init_from: str | None
    last_checkpoint_path: str | None
    owner_pid: int | None = None
    classes: list[str] | None = None  # the breed keys its model knows, in output order
    synthetic: bool | None = None  # trained on a synthetic dataset (None: recorded before this was known)
    epochs_done: int = 0
    params: dict[str, Any] | None = None
    test_report: dict[str, Any] | None = None
    skipped: dict[str, str] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)  # EpochRecord.as_dict() of each epoch, in order

    def to_dict(self) -> dict:
        return asdict(self)


def start_run(
    conn: sqlite3.Connection,
    *,
    name: str,
    model: str,
    mode: str,
    device: str,
    dataset: str,
    params: dict[str, Any],
    num_classes: int,
    precision: str | None = None,
    init_from: str | None = None,
    owner_pid: int | None = None,
    classes: list[str] | None = None,
    synthetic: bool | None = None,
) -> int:
    with write(conn):
        cur = conn.execute(
            "INSERT INTO runs (name, status, model, mode, device, dataset, params, num_classes, started_at, "
            "owner_pid, precision, init_from, classes, synthetic) VALUES "
            "(?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                model,
                mode,
                device,
                dataset,
                json.dumps(params),
                num_classes,
                utcnow(),
                owner_pid,
                precision,
                init_from,
                json.dumps(classes) if classes is not None else None,
                None if synthetic is None else int(synthetic),
            ),
        )
    return int(cur.lastrowid)


def update_run(conn: sqlite3.Connection, run_id: int, **values: Any) -> None:
    """Set some of a run's columns; dicts are stored as JSON."""
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable run columns: {sorted(unknown)}")
    if not values:
        return
    assignments = ", ".join(f"{column} = ?" for column in values)  # column names from the whitelist above
    params = [json.dumps(v) if isinstance(v, dict) else v for v in values.values()]
    with write(conn):
        conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*params, run_id))


def add_epoch(conn: sqlite3.Connection, run_id: int, row: EpochRecord | Mapping[str, Any]) -> None:
    """Record one epoch of a run (an ``EpochRecord``, or its plain values)."""
    record = row if isinstance(row, EpochRecord) else EpochRecord.from_dict(row)
    with write(conn):
        _insert_epoch(conn, run_id, record)


def _insert_epoch(conn: sqlite3.Connection, run_id: int, record: EpochRecord) -> None:
    conn.execute(
        f"INSERT INTO epochs (run_id, {', '.join(_EPOCH_COLUMNS)}) VALUES (?, {placeholders(len(_EPOCH_COLUMNS))})",
        (run_id, *(getattr(record, c) for c in _EPOCH_COLUMNS)),
    )


def reopen_run(
    conn: sqlite3.Connection,
    run_id: int,
    after_epoch: int,
    owner_pid: int,
    epochs: Sequence[EpochRecord] | None = None,
) -> None:
    """A resumed run: running again under a new owner, with any epoch recorded after ``after_epoch`` (one that
    finished after the state the run resumes from was saved) dropped so that it is trained and recorded once.
    ``epochs``, the rows the saved state holds, replace those up to ``after_epoch`` (a kill between saving the
    state and recording its epoch leaves that row missing)."""
    with write(conn):
        if epochs is None:
            conn.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, after_epoch))
        else:
            conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            for record in epochs:
                if record.epoch <= after_epoch:
                    _insert_epoch(conn, run_id, record)
        conn.execute(
            "UPDATE runs SET status = 'running', owner_pid = ?, error = NULL, finished_at = NULL WHERE id = ?",
            (owner_pid, run_id),
        )


@dataclass(frozen=True)
class ResumeClaim:
    """What ``claim_for_resume`` found: whether this process took the run, and the run as it was (so a resume that
    cannot start hands it back unchanged)."""

    taken: bool
    status: str | None  # None: no such run
    owner_pid: int | None
    error: str | None = None
    finished_at: str | None = None


def claim_for_resume(conn: sqlite3.Connection, run_id: int, owner_pid: int) -> ResumeClaim:
    """Atomically take run ``run_id`` for resuming: only a run that is not finished and whose owner process is gone
    can be taken; it becomes 'running' under ``owner_pid``. One write transaction, so of two resumers started
    together exactly one takes it, and the other changes nothing (it is told the status and owner it found)."""
    with write(conn):
        row = conn.execute(
            "SELECT status, owner_pid, error, finished_at FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return ResumeClaim(False, None, None)
        status, owner, error, finished_at = row
        if status == "finished" or (status == "running" and pid_alive(owner)):
            return ResumeClaim(False, status, owner)
        conn.execute("UPDATE runs SET status = 'running', owner_pid = ? WHERE id = ?", (owner_pid, run_id))
    return ResumeClaim(True, status, owner, error, finished_at)


def hand_back(conn: sqlite3.Connection, run_id: int, claim: ResumeClaim, owner_pid: int) -> None:
    """Give back a run taken by ``claim_for_resume`` whose resume never started training (its files or settings
    could not be used): as it was found, unless it has moved on since (its owner recorded how it ended)."""
    with write(conn):
        conn.execute(
            "UPDATE runs SET status = ?, owner_pid = ?, error = ?, finished_at = ? "
            "WHERE id = ? AND status = 'running' AND owner_pid = ?",
            (claim.status, claim.owner_pid, claim.error, claim.finished_at, run_id, owner_pid),
        )


def mark_abandoned(conn: sqlite3.Connection) -> int:
    """Runs still 'running' whose process is gone (killed, crashed, machine rebooted) become 'interrupted'."""
    rows = conn.execute("SELECT id, owner_pid FROM runs WHERE status = 'running'").fetchall()
    dead = [r[0] for r in rows if not pid_alive(r[1])]
    if dead:
        with write(conn):
            for run_id in dead:
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', error = ?, finished_at = ? WHERE id = ? AND "
                    "status = 'running'",
                    (ENDED_UNFINISHED, utcnow(), run_id),
                )
    return len(dead)


ENDED_UNFINISHED = "the training process ended without finishing (killed?)"


def _run(row: sqlite3.Row, detail: bool = False) -> RunRecord:
    values = dict(row)
    for key in ("params", "test_report", "skipped", "classes"):
        if key in values:
            values[key] = json.loads(values[key]) if values[key] else None
    if values.get("synthetic") is not None:
        values["synthetic"] = bool(values["synthetic"])
    owner = values.get("owner_pid")
    if values.get("status") == "running" and owner != os.getpid() and not pid_alive(owner):  # read as it is
        values.update(status="interrupted", error=values.get("error") or ENDED_UNFINISHED)
    return RunRecord(**values)


def list_runs(conn: sqlite3.Connection, limit: int = 50) -> list[RunRecord]:
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS}, (SELECT COUNT(*) FROM epochs e WHERE e.run_id = runs.id) AS epochs_done "
        "FROM runs ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [_run(r) for r in rows]


def get_run(conn: sqlite3.Connection, run_id: int) -> RunRecord | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS}, params, test_report, skipped, "
        "(SELECT COUNT(*) FROM epochs e WHERE e.run_id = runs.id) AS epochs_done FROM runs WHERE id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    run = _run(row)
    run.epochs.extend(e.as_dict() for e in epoch_records(conn, run_id))
    return run


def epoch_records(conn: sqlite3.Connection, run_id: int) -> list[EpochRecord]:
    """A run's epochs, in order."""
    rows = conn.execute(f"SELECT {', '.join(_EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
    return [EpochRecord(**dict(r)) for r in rows]


def find_by_checkpoint(conn: sqlite3.Connection, sha256: str) -> RunRecord | None:
    """The run whose kept checkpoint has this sha256 (the newest, should two runs have written the same file)."""
    row = conn.execute("SELECT id FROM runs WHERE checkpoint_sha256 = ? ORDER BY id DESC LIMIT 1", (sha256,)).fetchone()
    return get_run(conn, row[0]) if row else None


def finished_with_checkpoint(conn: sqlite3.Connection) -> list[RunRecord]:
    """Finished runs that kept a checkpoint, newest first."""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'finished' AND checkpoint_path IS NOT NULL "
        "ORDER BY finished_at DESC, id DESC"
    )
    return [_run(r) for r in rows]


def store_summary(conn: sqlite3.Connection, dog_threshold: float) -> dict[str, Any]:
    """Counts; how the newest prediction of each labelled image compares with its ground truth; how many
    images' newest prediction says "probably not a dog" (dog probability under ``dog_threshold``)."""
    images, labelled = conn.execute("SELECT COUNT(*), COUNT(ground_truth) FROM images").fetchone()
    predicted = conn.execute("SELECT COUNT(DISTINCT image_id) FROM predictions").fetchone()[0]
    scored, correct, not_dogs, dog_known = conn.execute(
        """SELECT COUNT(i.ground_truth), COALESCE(SUM(p.top1 = i.ground_truth), 0),
                  COALESCE(SUM(p.dog_probability < ?), 0), COUNT(p.dog_probability)
           FROM images i
           JOIN predictions p ON p.id = (
               SELECT id FROM predictions WHERE image_id = i.id ORDER BY created_at DESC, id DESC LIMIT 1)""",
        (dog_threshold,),
    ).fetchone()
    return {
        "images": images,
        "labelled": labelled,
        "predicted": predicted,
        "scored": scored,
        "correct": correct,
        "accuracy": (correct / scored) if scored else None,
        "not_a_dog": not_dogs,
        "dog_probability_known": dog_known,
        "runs": conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
    }


def record_images(conn: sqlite3.Connection, run_id: int, rows: list[tuple[int, str, str]]) -> None:
    """(image id, split, label) of every stored image a run trains, validates or tests on."""
    with write(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO run_images (run_id, image_id, split, label) VALUES (?, ?, ?, ?)",
            [(run_id, image_id, split, label) for image_id, split, label in rows],
        )


def recorded_images(conn: sqlite3.Connection, run_id: int) -> dict[str, list[tuple[int, str]]]:
    """{split: [(image id, label)]} of the stored images a run recorded, in image order."""
    found: dict[str, list[tuple[int, str]]] = {"train": [], "val": [], "test": []}
    rows = conn.execute("SELECT image_id, split, label FROM run_images WHERE run_id = ? ORDER BY image_id", (run_id,))
    for image_id, split, label in rows:
        found[split].append((image_id, label))
    return found
