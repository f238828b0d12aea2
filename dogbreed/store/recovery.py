"""A store whose write-ahead log was damaged while it was not closed cleanly: what SQLite silently dropped, said.

How SQLite behaves (measured, SQLite 3 as bundled with Python 3.11): the first connection to a store whose last
connection did not close cleanly (a crash, a kill, a power cut) rebuilds the log's index from ``dogbreed.db-wal``,
frame by frame, and stops at the first frame whose checksum fails. Every later frame is ignored, committed or not,
without a word; ``PRAGMA integrity_check`` still says ``ok``, because what remains is a consistent, older store.
Committed transactions are lost that way (a flipped bit in frame 4 of 7 keeps only the first transaction of five).

Detected cheaply, only when a log exists as the store is opened (a clean close deletes it, so ``list`` on a store
nobody else has open pays one ``stat``): the log's frame headers (24 bytes each) are read, and commit frames of the
log's current generation (its salt) beyond what SQLite kept (``wal_checkpoint(PASSIVE)``'s frame count) are
transactions SQLite dropped. Then, and only then, ``integrity_check`` and the job counts are reported with them.
"""

from __future__ import annotations

import sqlite3
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from dogbreed.errors import DogbreedWarning
from dogbreed.procs import pid_alive

_HEADER = struct.Struct(">IIIIIIII")  # magic, version, page size, checkpoint seq, salt-1, salt-2, 2 checksums
_FRAME = struct.Struct(">IIII")  # page number, database size after a commit (0: not a commit), salt-1, salt-2
_MAGIC = (0x377F0682, 0x377F0683)


@dataclass(frozen=True)
class LogScan:
    salts: tuple[int, int]
    frames: int  # whole frames of the log's current generation
    commits: tuple[int, ...]  # their commit frames (1-based)


def scan_log(wal: Path) -> LogScan | None:
    """The frame headers of ``wal`` up to the first frame of an older generation (a log reused after a
    checkpoint keeps stale frames past its end); None when there is no readable log. Reads 24 bytes a frame.
    (A plain open/close of the log is safe: SQLite keeps no locks on it.)"""
    try:
        with open(wal, "rb") as fh:
            head = fh.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return None
            magic, _, page_size, _, salt1, salt2, _, _ = _HEADER.unpack(head)
            if magic not in _MAGIC or not 512 <= page_size <= 65536:
                return None
            size, step, frames, commits = wal.stat().st_size, 24 + page_size, 0, []
            while _HEADER.size + (frames + 1) * step <= size:
                fh.seek(_HEADER.size + frames * step)
                _, commit, frame_salt1, frame_salt2 = _FRAME.unpack(fh.read(_FRAME.size))
                if (frame_salt1, frame_salt2) != (salt1, salt2):
                    break
                frames += 1
                if commit:
                    commits.append(frames)
    except OSError:
        return None
    return LogScan((salt1, salt2), frames, tuple(commits))


def check_log(conn: sqlite3.Connection, path: Path) -> str | None:
    """Before anything is written (a write would reuse the dropped frames' place): committed transactions that
    SQLite dropped from the log of the store at ``path``, reported as one warning with ``integrity_check`` and
    the job counts. Returns the warning's text, or None when nothing was lost."""
    wal = Path(f"{path}-wal")
    before = scan_log(wal)
    if before is None or not before.commits:
        return None
    kept = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]  # the frames SQLite took as valid
    after = scan_log(wal)
    if kept < 0 or after is None or after.salts != before.salts:  # another process restarted the log meanwhile
        return None
    lost = [frame for frame in before.commits if frame > kept]
    if not lost:
        return None
    integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchmany(3))
    text = (
        f"the store {path} was not closed cleanly and its log was damaged: SQLite kept its first {kept} frame(s) and "
        f"dropped {len(lost)} committed transaction(s) after them, which are lost (what was recorded last may be "
        f"missing: 'dogbreed predict --pending' redoes lost predictions); integrity_check: {integrity}; jobs: "
        f"{job_counts(conn)}"
    )
    warnings.warn(text, DogbreedWarning, stacklevel=3)
    return text


def job_counts(conn: sqlite3.Connection) -> str:
    """'3 queued, 1 running, 2 abandoned, 40 done, 0 failed' (abandoned: running, its process gone)."""
    counts = dict.fromkeys(("queued", "running", "abandoned", "done", "failed"), 0)
    try:
        rows = conn.execute("SELECT status, owner_pid, COUNT(*) FROM jobs GROUP BY status, owner_pid").fetchall()
    except sqlite3.OperationalError:  # a store from before jobs existed
        return "none"
    for status, owner, n in rows:
        key = "abandoned" if status == "running" and not pid_alive(owner) else status
        counts[key] = counts.get(key, 0) + n
    return ", ".join(f"{n} {status}" for status, n in counts.items())
