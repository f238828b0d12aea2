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
    with store_db.write(conn):
        for i in range(n):
            images.insert_image(
                conn, images.NewImage(f"f{i}.jpg", f"sha{i}", "JPEG", 10, 10, b"x" * 10, ground_truth=label)
            )


def test_delete_cascades_to_bytes_predictions_and_jobs(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 2)
    now = store_db.utcnow()
    conn.execute(
        "INSERT INTO predictions (image_id, checkpoint_sha256, checkpoint_path, top1, top1_prob, probs, device,"
        " created_at) VALUES (1, 'c', 'p', 'n02085620', 1.0, '{}', 'cpu', ?)",
        (now,),
    )
    conn.execute(
        "INSERT INTO jobs (image_id, checkpoint_sha256, checkpoint_path, status, created_at)"
        " VALUES (1, 'c', 'p', 'done', ?)",
        (now,),
    )
    assert images.delete_images(conn, [1, 99]) == [1]
    for table in ("image_blobs", "predictions", "jobs"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == (1 if table == "image_blobs" else 0)


def test_paging_by_offset_and_by_key_agree(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 25)
    by_offset = [r["id"] for r in images.list_images(conn, limit=10, offset=10)]
    by_key = [r["id"] for r in images.list_images(conn, limit=10, after_id=10)]
    assert by_offset == by_key == list(range(11, 21))


def test_listing_never_reads_image_bytes(tmp_path):
    conn = store_db.open_store(tmp_path / "s.db")
    _add(conn, 3)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    images.list_images(conn, limit=10)
    images.get_image(conn, 1)
    assert statements and not any("image_blobs" in s or "data" in s.split("FROM")[0] for s in statements)


def test_sqlmodel_tables_describe_the_migrated_schema(tmp_path):
    from dogbreed.store.tables import table_columns

    conn = store_db.open_store(tmp_path / "s.db")
    for table, columns in table_columns().items():
        migrated = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        assert migrated == columns, table


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
    old.commit()
    old.close()

    conn = store_db.open_store(path)
    assert store_db.schema_version(conn) == LATEST_VERSION
    assert "owner_pid" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert images.get_image(conn, 1)["filename"] == "rex.jpg"
