"""The store's write-ahead log: never lost under a live connection, and a store not closed cleanly is reported.

SQLite keeps committed transactions in ``dogbreed.db-wal`` until a checkpoint; the last connection to close
deletes it. Whether a connection is the last is told by POSIX locks, which any close() of the database file in the
same process drops (SQLite's "how to corrupt" list, 2.2). So dogbreed never opens the database file itself.
"""

from __future__ import annotations

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
