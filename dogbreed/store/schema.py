"""Append-only migrations. Never edit a released step: add a new one at the end.

Step N brings a store from schema version N-1 to N; a store records the steps it has run in ``schema_version``.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: images (metadata and bytes apart, so listings never page blobs in), predictions, jobs, runs, epochs.
    (
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            filename TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            format TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            ground_truth TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_images_ground_truth ON images (ground_truth, id)",
        """CREATE TABLE image_blobs (
            image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
            data BLOB NOT NULL
        )""",
        """CREATE TABLE predictions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            checkpoint_sha256 TEXT NOT NULL,
            checkpoint_path TEXT NOT NULL,
            top1 TEXT NOT NULL,
            top1_prob REAL NOT NULL,
            probs TEXT NOT NULL,
            device TEXT NOT NULL,
            job_id INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (image_id, checkpoint_sha256)
        )""",
        "CREATE INDEX ix_predictions_image_created ON predictions (image_id, created_at)",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            checkpoint_sha256 TEXT NOT NULL,
            checkpoint_path TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
            error TEXT,
            owner_pid INTEGER,
            device TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            seconds REAL
        )""",
        "CREATE INDEX ix_jobs_status_checkpoint ON jobs (status, checkpoint_sha256)",
        "CREATE INDEX ix_jobs_image ON jobs (image_id, checkpoint_sha256)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
            model TEXT NOT NULL,
            mode TEXT NOT NULL,
            device TEXT NOT NULL,
            dataset TEXT NOT NULL,
            params TEXT NOT NULL,
            num_classes INTEGER NOT NULL,
            checkpoint_path TEXT,
            checkpoint_sha256 TEXT,
            best_epoch INTEGER,
            best_val_acc REAL,
            test_acc REAL,
            test_top5 REAL,
            test_macro_f1 REAL,
            test_report TEXT,
            skipped TEXT,
            error TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            duration_s REAL
        )""",
        """CREATE TABLE epochs (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,
            train_loss REAL NOT NULL,
            train_acc REAL NOT NULL,
            val_loss REAL NOT NULL,
            val_acc REAL NOT NULL,
            val_top5 REAL NOT NULL,
            val_f1 REAL NOT NULL,
            seconds REAL NOT NULL,
            PRIMARY KEY (run_id, epoch)
        )""",
    ),
    # 2: the process that runs a training run, so a run whose process was killed can be told from a live one.
    ("ALTER TABLE runs ADD COLUMN owner_pid INTEGER",),
)

LATEST_VERSION = len(MIGRATIONS)
