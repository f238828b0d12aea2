"""One tiny trained model and its synthetic dataset, made once per test session and shared by the engine and
export tests: a real training run (resnet18 extractor at 32 px on 4 synthetic breeds), so its predictions are
confident and engines can be compared on them. The dataset's test split has 104 images: enough for the accuracy
guard (``engines.guard.MIN_IMAGES``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinyModel:
    dataset: Path
    checkpoint: Path
    db: Path  # the store holding the training run
    run_id: int
    test_accuracy: float


def tiny_model(base: Path) -> TinyModel:
    """Train once under ``base`` (a session temp folder); later calls reuse the files."""
    done = base / "tiny-model.json"
    if done.is_file():
        data = json.loads(done.read_text())
        return TinyModel(Path(data["dataset"]), Path(data["checkpoint"]), Path(data["db"]), data["run_id"], data["acc"])
    from dogbreed.datasets.synthetic import make_synthetic
    from dogbreed.store import open_store
    from dogbreed.train import TrainConfig, train

    dataset = base / "synthetic"
    make_synthetic(dataset, breeds=4, per_class=104, size=(48, 36), lists=True, seed=3)
    config = TrainConfig(
        dataset=dataset,
        checkpoints_dir=base / "checkpoints",
        model="resnet18",
        epochs=4,
        batch=32,
        image_size=32,
        pretrained=False,
        random_backbone=True,  # extractor on a frozen random backbone, on purpose: features computed once, fast
        workers=0,
        name="tiny",
    )
    open_store(base / "train.db").close()  # created and migrated, as the CLI does before training
    result = train(config, base / "train.db")
    model = TinyModel(dataset, Path(result.checkpoint), base / "train.db", result.run_id, result.test["accuracy"])
    done.write_text(
        json.dumps(
            {
                "dataset": str(dataset),
                "checkpoint": str(model.checkpoint),
                "db": str(model.db),
                "run_id": model.run_id,
                "acc": model.test_accuracy,
            }
        )
    )
    return model
