from __future__ import annotations

import sqlite3

import pytest

from dogbreed.errors import DogbreedError
from dogbreed.store import db as store_db
from dogbreed.store import images
from dogbreed.store.schema import LATEST_VERSION


def test_new_store_is_migrated_with_wal_and_foreign_keys(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    assert store_db.schema_version(conn) == LATEST_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "image_blobs", "predictions", "jobs", "runs", "epochs", "schema_version"} <= tables


def test_reopening_runs_no_migration_twice(tmp_path):
    store_db.open_store(tmp_path / "s.db").close()
    conn = store_db.open_store(tmp_path / "s.db")
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == LATEST_VERSION


def test_store_from_a_newer_dogbreed_is_refused(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    conn.execute("INSERT INTO schema_version VALUES (?, 'future')", (LATEST_VERSION + 1,))
    conn.close()
    with pytest.raises(DogbreedError, match="newer"):
        store_db.open_store(tmp_path / "s.db")


def test_not_a_database_is_one_clear_error(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("hello, I am not SQLite " * 100)
    with pytest.raises(DogbreedError, match="notes.db"):
        store_db.open_store(bogus)


def _add(conn, n: int, label=None):
    new = [images.NewImage(f"f{i}.jpg", f"sha{i}", "JPEG", 10, 10, b"x" * 10, ground_truth=label) for i in range(n)]
    return images.insert_images(conn, new)


def test_a_snapshot_reads_one_moment_while_a_writer_goes_on(tmp_path):
    path = tmp_path / "s.db"
    store_db.open_store(path).close()
    reader, writer = store_db.connect(path), store_db.connect(path)
    count = "SELECT COUNT(*) FROM schema_version"
    with store_db.snapshot(reader):
        before = reader.execute(count).fetchone()[0]
        with store_db.write(writer):  # a job finishing between two queries of one answer
            writer.execute("INSERT INTO schema_version VALUES (99, 'x')")
        assert reader.execute(count).fetchone()[0] == before
    assert reader.execute(count).fetchone()[0] == before + 1


def test_delete_cascades_to_bytes_predictions_and_jobs(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 2)
    now = store_db.utcnow()
    conn.execute(
        "INSERT INTO predictions (image_id, model_key, model_ref, top1, top1_prob, probs, device,"
        " created_at) VALUES (1, 'c', 'p', 'n02085620', 1.0, '{}', 'cpu', ?)",
        (now,),
    )
    conn.execute(
        "INSERT INTO jobs (image_id, model_key, model_ref, status, created_at) VALUES (1, 'c', 'p', 'done', ?)",
        (now,),
    )
    assert images.delete_images(conn, [1, 99]) == [1]
    for table in ("image_blobs", "predictions", "jobs"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == (1 if table == "image_blobs" else 0)


def test_paging_by_offset_and_by_key_agree(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 25)
    by_offset = [r.id for r in images.list_images(conn, limit=10, offset=10)]
    by_key = [r.id for r in images.list_images(conn, limit=10, after_id=10)]
    assert by_offset == by_key == list(range(11, 21))


def test_listing_never_reads_image_bytes(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 3)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    images.list_images(conn, limit=10)
    images.get_image(conn, 1)
    assert statements and not any("image_blobs" in s or "data" in s.split("FROM")[0] for s in statements)


def test_migrations_build_exactly_the_declared_sqlmodel_schema(tmp_path):
    """SQLModel declares the schema once; the append-only migrations must build exactly that."""
    from dogbreed.store.tables import declared_columns

    conn = store_db.open_store(tmp_path / "s.db")
    sql_type = {"VARCHAR": "TEXT", "FLOAT": "REAL", "INTEGER": "INTEGER", "BLOB": "BLOB"}
    migrated_tables = {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    }
    declared = declared_columns()
    assert migrated_tables - {"schema_version"} == set(declared)
    for table, columns in declared.items():
        migrated = {
            r["name"]: (r["type"], not r["notnull"] and not r["pk"], bool(r["pk"]))
            for r in conn.execute(f"PRAGMA table_info({table})")
        }
        expected = {name: (sql_type[t], nullable, pk) for name, (t, nullable, pk) in columns.items()}
        assert migrated == expected, table


def test_the_epoch_record_is_the_epochs_table(tmp_path):
    """One epoch type: EpochRecord's fields are the epochs table's columns (besides run_id) with the same types and
    nullability, and an epoch read back is the epoch written."""
    import typing

    from dogbreed.store import runs
    from dogbreed.store.tables import declared_columns

    hints = typing.get_type_hints(runs.EpochRecord)
    sql = {int: "INTEGER", float: "FLOAT"}
    ours = {}
    for name in runs.EPOCH_FIELDS:
        kinds = [k for k in typing.get_args(hints[name]) or (hints[name],) if k is not type(None)]
        ours[name] = (sql[kinds[0]], type(None) in typing.get_args(hints[name]))
    declared = declared_columns()["epochs"]
    assert ours == {name: (kind, nullable) for name, (kind, nullable, _pk) in declared.items() if name != "run_id"}

    conn = store_db.open_store(tmp_path / "s.db")
    run_id = runs.start_run(
        conn, name="r", model="resnet18", mode="extractor", device="cpu", dataset="/d", params={}, num_classes=2
    )
    first = runs.EpochRecord(
        epoch=1,
        train_loss=0.5,
        train_acc=0.25,
        train_f1=0.2,
        val_loss=0.75,
        val_acc=0.5,
        val_top5=1.0,
        val_f1=0.4,
        lr=1e-3,
        seconds=2.5,
    )
    runs.add_epoch(conn, run_id, first)
    runs.add_epoch(conn, run_id, first.as_dict() | {"epoch": 2, "train_f1": None, "lr": None})  # an older row
    again = runs.epoch_records(conn, run_id)
    assert again[0] == first and (again[1].epoch, again[1].train_f1, again[1].lr) == (2, None, None)
    assert runs.get_run(conn, run_id).epochs == [e.as_dict() for e in again]
    assert runs.EpochRecord.from_dict(first.as_dict() | {"best": True}) == first  # extra keys are not columns


def test_python_users_get_a_read_only_typed_session(tmp_path):
    from sqlmodel import select

    from dogbreed.store.tables import ImageRow as Image
    from dogbreed.store.tables import read_session

    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 3)
    with read_session(tmp_path / "s.db") as session:
        names = [i.filename for i in session.exec(select(Image).order_by(Image.id))]
        assert names == ["f0.jpg", "f1.jpg", "f2.jpg"]
        session.add(Image(filename="x", sha256="y", format="JPEG", width=1, height=1, size_bytes=1, created_at="t"))
        with pytest.raises(Exception, match="readonly"):
            session.commit()


def test_parallel_writers_wait_instead_of_failing(tmp_path):
    path = tmp_path / "s.db"
    store_db.open_store(path).close()
    a, b = store_db.connect(path), store_db.connect(path)
    a.execute("BEGIN IMMEDIATE")
    b.execute("PRAGMA busy_timeout = 200")
    with pytest.raises(sqlite3.OperationalError):
        b.execute("BEGIN IMMEDIATE")  # held by a: with a short timeout b gives up ...
    a.execute("COMMIT")
    with store_db.write(b):  # ... and gets the lock once a is done
        b.execute("INSERT INTO schema_version VALUES (99, 'x')")


def test_a_store_from_an_older_version_is_migrated_with_its_data(tmp_path):
    from dogbreed.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0]:
        old.execute(statement)
    old.execute("INSERT INTO schema_version VALUES (1, 'then')")
    old.execute(
        "INSERT INTO images (filename, sha256, format, width, height, size_bytes, created_at) "
        "VALUES ('rex.jpg', 'abc', 'JPEG', 4, 3, 10, 'then')"
    )
    old.execute(
        "INSERT INTO predictions (image_id, checkpoint_sha256, checkpoint_path, top1, top1_prob, probs, device, "
        "created_at) VALUES (1, 'sha', '/old.pt', 'n02085620', 0.9, '{}', 'cpu', 'then')"
    )
    old.commit()

    old.close()
    conn = store_db.open_store(path)
    assert store_db.schema_version(conn) == LATEST_VERSION
    assert "owner_pid" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert images.get_image(conn, 1).filename == "rex.jpg"
    from dogbreed.store import predictions

    kept = predictions.for_image(conn, 1)[0]  # the old prediction, under the renamed columns
    assert (kept.model_key, kept.model_ref, kept.model, kept.dog_probability) == ("sha", "/old.pt", "/old.pt", None)


def test_someone_elses_sqlite_file_is_refused_without_a_byte_written(tmp_path):
    other = tmp_path / "accounts.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(DogbreedError, match="not a dogbreed store"):
        store_db.open_store(other)
    assert other.read_bytes() == before
    assert not (tmp_path / "accounts.db-wal").exists()


@pytest.mark.parametrize("target", ["/dev/null", "fifo"])
def test_a_store_path_that_is_not_a_regular_file_is_refused(tmp_path, target):
    import os

    if target == "fifo":
        target = str(tmp_path / "fifo.db")
        os.mkfifo(target)
    with pytest.raises(DogbreedError, match="not a regular file"):
        store_db.open_store(target)
    assert not os.path.exists(target + "-journal") and not os.path.exists(target + "-wal")


def test_an_empty_file_becomes_a_store(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    conn = store_db.open_store(tmp_path / "empty.db")
    assert store_db.schema_version(conn) == LATEST_VERSION


def test_insert_images_reports_new_duplicate_and_late_labels(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    first = _add(conn, 2)
    again = images.insert_images(
        conn,
        [
            images.NewImage("renamed.jpg", "sha0", "JPEG", 10, 10, b"x", ground_truth="n02088364"),
            images.NewImage("other.jpg", "sha9", "JPEG", 10, 10, b"y"),
        ],
    )
    assert [(i.created, i.labelled) for i in first] == [(True, False), (True, False)]
    assert (again[0].image_id, again[0].created, again[0].labelled) == (first[0].image_id, False, True)
    assert again[1].created
    stored = images.get_image(conn, first[0].image_id)
    assert stored.filename == "f0.jpg" and stored.ground_truth == "n02088364"  # the first name stays


def test_a_result_for_an_image_deleted_meanwhile_is_dropped_not_a_foreign_key_error(tmp_path):
    from dogbreed.store import jobs

    conn = store_db.open_store(tmp_path / "s.db")
    ids = [i.image_id for i in _add(conn, 2)]
    model = jobs.ModelId("k", "ref", "name")
    job_ids = jobs.plan(conn, ids, model, only_missing=False)
    jobs.claim(conn, job_ids, "cpu", "torch", "fp32")
    images.delete_images(conn, [ids[0]])
    probs = {"n02085620": 1.0}
    outcomes = [jobs.JobOutcome(j, i, probs=probs) for j, i in zip(job_ids, ids)]
    assert jobs.finish(conn, outcomes, model, "cpu", "torch", "fp32") == (1, 0, 1)
    assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1


def test_nan_scores_fail_the_job_instead_of_breaking_the_store(tmp_path):
    from dogbreed.store import jobs

    conn = store_db.open_store(tmp_path / "s.db")
    ids = [i.image_id for i in _add(conn, 1)]
    model = jobs.ModelId("k", "ref", "name")
    job_ids = jobs.plan(conn, ids, model, only_missing=False)
    jobs.claim(conn, job_ids, "cpu", "torch", "fp32")
    bad = jobs.JobOutcome(job_ids[0], ids[0], probs={"n02085620": float("nan")})
    assert jobs.finish(conn, [bad], model, "cpu", "torch", "fp32") == (0, 1, 0)
    status, error = conn.execute("SELECT status, error FROM jobs").fetchone()
    assert status == "failed" and "NaN" in error


def test_running_jobs_of_a_dead_process_read_as_abandoned(tmp_path):
    import subprocess

    from dogbreed.store import jobs

    conn = store_db.open_store(tmp_path / "s.db")
    ids = [i.image_id for i in _add(conn, 2)]
    job_ids = jobs.plan(conn, ids, jobs.ModelId("k", "ref", "name"), only_missing=False)
    jobs.claim(conn, job_ids, "cpu", "torch", "fp32")
    gone = subprocess.Popen(["true"])
    gone.wait()
    conn.execute("UPDATE jobs SET owner_pid = ?", (gone.pid,))
    assert {j.status for j in jobs.list_jobs(conn)} == {"abandoned"}
    assert jobs.status_counts(conn)["abandoned"] == 2
    assert len(jobs.list_jobs(conn, status="abandoned")) == 2
    assert jobs.queued_ids(conn, "k") == job_ids  # the next run takes them over


def test_processes_creating_one_new_store_at_once_all_succeed(tmp_path):
    """Several commands started together on a fresh store: the loser of the switch to WAL waits, never fails
    with "database is locked"."""
    import subprocess
    import sys

    code = "import sys\nfrom dogbreed.store import open_store\nopen_store(sys.argv[1]).close()"
    for round_ in range(40):
        db = tmp_path / f"s{round_}.db"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE, text=True) for _ in range(4)
        ]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        conn = store_db.connect(db)
        assert store_db.schema_version(conn) == LATEST_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


def test_opening_a_store_again_in_one_process_never_drops_the_locks_of_its_other_connections(tmp_path):
    """Reading the file ourselves (open/close) would drop every POSIX lock this process holds on it: another
    process writing meanwhile then believes it is alone, checkpoints and deletes the WAL on exit, and this
    process's connections read a stale WAL index ("database disk image is malformed"). A server, the Python API
    and the test runner all hold connections while opening the store again."""
    import subprocess
    import sys

    from dogbreed.store import open_store

    db = tmp_path / "dogbreed.db"
    held = open_store(db)  # a live connection, as a server or a Store object keeps one
    writer = (
        "import sys\nfrom dogbreed.store import open_store\nfrom dogbreed.store.images import NewImage, insert_images\n"
        "conn = open_store(sys.argv[1])\n"
        "insert_images(conn, [NewImage(f'{sys.argv[2]}.jpg', sys.argv[2], 'JPEG', 1, 1, b'x' * 9000)])\n"
        "conn.close()\n"
    )
    for i in range(6):
        open_store(db).close()  # open the store again in this process, as every command does
        subprocess.run([sys.executable, "-c", writer, str(db), f"{i:064d}"], check=True)
        assert held.execute("SELECT COUNT(*) FROM images").fetchone()[0] == i + 1
        again = open_store(db)
        assert again.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        again.close()
    held.close()
