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
    # 3: a prediction comes from a model, not only a checkpoint (a ready ImageNet model, an export): jobs and
    #    predictions name it by key (sha256 of its file, or the torchvision weights' name), reference and label,
    #    and record the engine, precision and the probability that the photo shows a dog at all. Evaluations,
    #    engine checks (agreement of a reduced precision or an export with the fp32 model), settings (the pinned
    #    default model) get tables; runs keep what resuming and warm starts need.
    (
        "ALTER TABLE predictions RENAME COLUMN checkpoint_sha256 TO model_key",
        "ALTER TABLE predictions RENAME COLUMN checkpoint_path TO model_ref",
        "ALTER TABLE predictions ADD COLUMN model_name TEXT",
        "ALTER TABLE predictions ADD COLUMN dog_probability REAL",
        "ALTER TABLE predictions ADD COLUMN engine TEXT",
        "ALTER TABLE predictions ADD COLUMN precision TEXT",
        "ALTER TABLE jobs RENAME COLUMN checkpoint_sha256 TO model_key",
        "ALTER TABLE jobs RENAME COLUMN checkpoint_path TO model_ref",
        "ALTER TABLE jobs ADD COLUMN model_name TEXT",
        "ALTER TABLE jobs ADD COLUMN engine TEXT",
        "ALTER TABLE jobs ADD COLUMN precision TEXT",
        "ALTER TABLE runs ADD COLUMN last_checkpoint_path TEXT",
        "ALTER TABLE runs ADD COLUMN init_from TEXT",
        "ALTER TABLE runs ADD COLUMN precision TEXT",
        "ALTER TABLE epochs ADD COLUMN train_f1 REAL",
        "ALTER TABLE epochs ADD COLUMN lr REAL",
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model_key TEXT NOT NULL,
            model_ref TEXT NOT NULL,
            model_name TEXT NOT NULL,
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            engine TEXT NOT NULL,
            precision TEXT NOT NULL,
            device TEXT NOT NULL,
            data TEXT NOT NULL,
            split TEXT NOT NULL,
            n INTEGER NOT NULL,
            top1 REAL NOT NULL,
            top5 REAL NOT NULL,
            macro_f1 REAL NOT NULL,
            report TEXT NOT NULL,
            seconds REAL NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_evaluations_model ON evaluations (model_key, id)",
        """CREATE TABLE engine_checks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model_key TEXT NOT NULL,
            engine TEXT NOT NULL,
            precision TEXT NOT NULL,
            target_key TEXT,
            data TEXT NOT NULL,
            n INTEGER NOT NULL,
            agreement REAL NOT NULL,
            reference_accuracy REAL,
            accuracy REAL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_engine_checks_model ON engine_checks (model_key, engine, precision, id)",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ),
    # 4: an engine check says on which device kind it was measured (bf16 on a GPU is not bf16 on a CPU) and how
    #    many of its images had a label (the accuracies' sample size, which the int8 guard needs).
    (
        "ALTER TABLE engine_checks ADD COLUMN device TEXT",
        "ALTER TABLE engine_checks ADD COLUMN labelled INTEGER",
    ),
    # 5: breeds of the user's own (a stable key that can never be a WordNet id, a name stored once), the history of
    #    every label change, the exact images each split of a run trained on (runs on the store's labelled images,
    #    so eval --run reproduces their test figures and later images never leak into an old test set), the
    #    breed keys each run's model knows (so a breed in use cannot be removed), and the names of the own breeds
    #    a prediction ranks (a model can know a breed the store no longer has).
    (
        """CREATE TABLE breeds (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            match_key TEXT NOT NULL UNIQUE,
            note TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE label_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            old TEXT,
            new TEXT,
            how TEXT NOT NULL,
            changed_at TEXT NOT NULL
        )""",
        "CREATE INDEX ix_label_changes_image ON label_changes (image_id, id)",
        """CREATE TABLE run_images (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
            label TEXT NOT NULL,
            PRIMARY KEY (run_id, image_id)
        )""",
        "CREATE INDEX ix_run_images_split ON run_images (run_id, split, image_id)",
        "ALTER TABLE runs ADD COLUMN classes TEXT",
        "ALTER TABLE predictions ADD COLUMN class_names TEXT",
    ),
    # 6: whether a run trained on a synthetic dataset (the dataset's own marker; NULL for runs recorded before this
    #    step, whose dataset folder is asked instead): such a run never becomes the default model for photos.
    ("ALTER TABLE runs ADD COLUMN synthetic INTEGER",),
)

LATEST_VERSION = len(MIGRATIONS)
