"""The store's write-ahead log: never lost under a live connection, and a store not closed cleanly is reported.

SQLite keeps committed transactions in ``dogbreed.db-wal`` until a checkpoint; the last connection to close
deletes it. Whether a connection is the last is told by POSIX locks, which any close() of the database file in the
same process drops (SQLite's "how to corrupt" list, 2.2). So dogbreed never opens the database file itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

from dogbreed.store import open_store

OTHER_PROCESS_WRITES_AND_CLOSES = """
import sys
from dogbreed.store import connect
conn = connect(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO settings (key, value, updated_at) VALUES ('other', '1', 'now')")
conn.execute("COMMIT")
conn.close()
"""

OTHER_PROCESS_READS = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(",".join(sorted(r[0] for r in conn.execute("SELECT key FROM settings"))))
"""


def _python(code: str, *args) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_opening_the_store_twice_in_one_process_keeps_its_log_alive_under_another_processs_close(tmp_path):
    """Two open_store calls in one process (the Python API does this), then another process writes and closes:
    the log must survive, and what this process commits afterwards must be visible to others at once (before,
    the other process deleted the log, and this process's later commits went into an unlinked file: lost if it
    was killed before closing)."""
    db = tmp_path / "dogbreed.db"
    first = open_store(db)
    second = open_store(db)
    _python(OTHER_PROCESS_WRITES_AND_CLOSES, db)
    assert (tmp_path / "dogbreed.db-wal").exists()
    first.execute("BEGIN IMMEDIATE")
    first.execute("INSERT INTO settings (key, value, updated_at) VALUES ('mine', '1', 'now')")
    first.execute("COMMIT")
    assert _python(OTHER_PROCESS_READS, db) == "mine,other"
    first.close()
    second.close()


# ---------------------------------------------------------------- a damaged log after an unclean close

KILLED_WRITER = """
import os, sys
from pathlib import Path
from dogbreed.ingest import upload
from dogbreed.models.sources import ModelSource
from dogbreed.store import open_store
from dogbreed.store import jobs
conn = open_store(sys.argv[1])
ids = []
for picture in sys.argv[2:]:  # one transaction each
    ids += [r.image_id for r in upload(conn, [Path(picture)])]
jobs.plan(conn, ids, ModelSource("checkpoint", "/m.pt", "k", "m.pt").identity, only_missing=False)
os._exit(0)  # killed: no close, no checkpoint; the log keeps every transaction
"""


def _killed_writer(db, tmp_path, n: int = 5) -> None:
    from tests.images import jpeg_bytes, write

    pictures = [write(tmp_path / f"p{i}.jpg", jpeg_bytes(seed=i)) for i in range(n)]
    _python(KILLED_WRITER, db, *pictures)
    assert (tmp_path / "dogbreed.db-wal").stat().st_size > 0


def _damage_frame_after_first_commit(db) -> int:
    """Flip a byte in the page of the frame that follows the log's first commit frame; returns that frame."""
    from dogbreed.store.recovery import scan_log

    wal = db.with_name(db.name + "-wal")
    scan = scan_log(wal)
    frame = scan.commits[0] + 1
    page_size = int.from_bytes(wal.read_bytes()[8:12], "big")
    offset = 32 + (frame - 1) * (24 + page_size) + 24 + 100
    data = bytearray(wal.read_bytes())
    data[offset] ^= 0xFF
    wal.write_bytes(bytes(data))
    return frame


def _dogbreed(db, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dogbreed", "--db", str(db), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_committed_transactions_sqlite_drops_from_a_damaged_log_are_reported_once_with_integrity_and_jobs(tmp_path):
    """What SQLite does (see store/recovery.py): recovery stops at the first damaged frame and keeps a consistent,
    older store, saying nothing. dogbreed says it, with integrity_check and the job counts."""
    db = tmp_path / "dogbreed.db"
    _killed_writer(db, tmp_path)
    first_commit_frame = _damage_frame_after_first_commit(db) - 1
    listed = _dogbreed(db, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (warning,) = [line for line in listed.stderr.splitlines() if line.startswith("Warning:")]
    assert f"the store {db} was not closed cleanly and its log was damaged" in warning
    assert f"SQLite kept its first {first_commit_frame} frame(s)" in warning and "integrity_check: ok" in warning
    assert "committed transaction(s) after them, which are lost" in warning and "jobs: " in warning
    assert len(json.loads(listed.stdout)) < 5  # the loss is real: fewer images than were stored
    assert "Traceback" not in listed.stderr


def test_a_log_left_whole_by_a_kill_or_in_use_by_another_process_is_no_news(tmp_path):
    """A killed writer's intact log is recovered whole (no warning, nothing lost); a log that another process is
    writing right now is no sign of anything either."""
    db = tmp_path / "dogbreed.db"
    _killed_writer(db, tmp_path)
    listed = _dogbreed(db, "list", "--json")
    assert listed.returncode == 0 and "Warning" not in listed.stderr, listed.stderr
    assert len(json.loads(listed.stdout)) == 5
    live = open_store(db)
    for i in range(20):
        live.execute("BEGIN IMMEDIATE")
        live.execute("INSERT INTO settings (key, value, updated_at) VALUES (?, '1', 'now')", (f"k{i}",))
        live.execute("COMMIT")
    again = _dogbreed(db, "list")
    live.close()
    assert again.returncode == 0 and "Warning" not in again.stderr, again.stderr
