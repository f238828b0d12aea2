from __future__ import annotations

from pathlib import Path

import pytest

from dogbreed.synthetic import make_synthetic

TINY = ["--no-pretrained", "--image-size", "32", "--batch", "16", "--workers", "0"]


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic(root, breeds=4, per_class=24, size=(48, 36), lists=True, seed=1)
    return root


@pytest.fixture
def trained(cli, learnable, home):
    """One finished extractor run on the learnable dataset, through the real CLI."""
    out = cli.json("train", "--dataset", learnable, "--epochs", "4", *TINY)
    return out


def test_training_beats_chance_and_records_the_run(cli, trained):
    assert trained["status"] == "finished"
    test = trained["test"]
    assert test["accuracy"] >= 0.6, test  # chance is 0.25 with 4 breeds
    assert test["n"] == 24  # the official test list: 6 of each breed
    run = cli.json("stats", trained["run_id"])
    assert run["status"] == "finished" and len(run["epochs"]) == 4
    assert run["best_val_acc"] == max(e["val_acc"] for e in run["epochs"])
    assert run["params"]["mode"] == "extractor" and run["params"]["epochs"] == 4
    from dogbreed.model import file_sha256

    assert Path(run["checkpoint_path"]).is_file()
    assert run["checkpoint_sha256"] == file_sha256(run["checkpoint_path"])


def test_stored_metrics_equal_scikit_learn_on_the_stored_predictions(cli, trained):
    from sklearn.metrics import accuracy_score, f1_score

    report = cli.json("stats", trained["run_id"])["test_report"]
    y_true, y_pred = report["y_true"], report["y_pred"]
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    per_breed = f1_score(y_true, y_pred, average=None, labels=list(range(4)), zero_division=0)
    assert list(report["per_breed_f1"].values()) == pytest.approx(list(per_breed))


def test_predict_uses_the_new_checkpoint_by_default_and_agrees_with_training(cli, trained, learnable):
    """Upload the test split, predict with the default checkpoint: same preprocessing, so same accuracy."""
    report = cli.json("stats", trained["run_id"])["test_report"]
    files = [learnable / "Images" / p for p in report["paths"]]
    cli("upload", *files, "--label-from-folder")
    out = cli.json("predict", "--all")
    assert out["checkpoint"] == cli.json("stats", trained["run_id"])["checkpoint_path"]
    summary = cli.json("stats")["store"]
    assert summary["scored"] == len(files)
    assert summary["accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)


def test_checkpoint_round_trips_with_classes_and_metrics(cli, trained):
    from dogbreed.model import load_checkpoint

    run = cli.json("stats", trained["run_id"])
    model, meta = load_checkpoint(run["checkpoint_path"])
    assert meta.wnids == ["n02085620", "n02088364", "n02099601", "n02106662"]
    assert meta.classes[1] == ["n02088364", "Beagle"]
    assert meta.image_size == 32 and meta.mode == "extractor" and meta.run_id == run["id"]
    assert meta.metrics["test_acc"] == pytest.approx(run["test_acc"])


def test_finetune_without_lists_and_with_a_corrupt_image(cli, tmp_path):
    root = tmp_path / "nolists"
    make_synthetic(root, breeds=3, per_class=12, size=(48, 36), lists=False, seed=2)
    broken = root / "Images" / "n02088364-beagle" / "n02088364_99999.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    result = cli("train", "--dataset", root, "--finetune", "--epochs", "2", "--lr", "3e-3", *TINY)
    assert "no official lists" in result.output
    assert "n02088364_99999.jpg" in result.output
    run = cli.json("stats")["runs"][0]
    assert run["status"] == "finished" and run["model"] == "resnet18" and "finetune" in run["mode"]
    detail = cli.json("stats", run["id"])
    assert "n02088364-beagle/n02088364_99999.jpg" in detail["skipped"]


def test_interrupt_keeps_the_best_checkpoint_and_marks_the_run(home, learnable, tmp_path):
    from dogbreed.store import open_store
    from dogbreed.train import Listener, TrainConfig, train

    class CtrlCAfterFirstEpoch(Listener):
        def epoch(self, row):
            if row["epoch"] == 1:
                raise KeyboardInterrupt

    db = tmp_path / "s.db"
    open_store(db).close()
    config = TrainConfig(
        dataset=learnable,
        checkpoints_dir=tmp_path / "ckpt",
        epochs=5,
        batch=16,
        image_size=32,
        pretrained=False,
        workers=0,
    )
    result = train(config, db, CtrlCAfterFirstEpoch())
    assert result.status == "interrupted" and result.checkpoint.is_file()
    conn = open_store(db)
    status, path = conn.execute("SELECT status, checkpoint_path FROM runs").fetchone()
    assert status == "interrupted" and Path(path) == result.checkpoint.resolve()
    from dogbreed.sources import best_run

    assert best_run(conn) is None  # only finished runs become the default model


def test_stats_plot_writes_curves(cli, trained, tmp_path):
    from PIL import Image

    target = tmp_path / "curves.png"
    cli("stats", trained["run_id"], "--plot", target)
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size[0] > 600


def test_unknown_model_and_missing_dataset_are_one_line_errors(cli, tmp_path, learnable):
    assert "unknown model" in cli("train", "--dataset", learnable, "--model", "resnot", *TINY, expect=1).output
    assert "no Images/ folder" in cli("train", "--dataset", tmp_path, *TINY, expect=1).output


def test_a_run_whose_process_died_is_reported_interrupted(cli, home):
    import subprocess

    from dogbreed.store import open_store

    gone = subprocess.Popen(["true"])
    gone.wait()
    conn = open_store(cli.db)
    conn.execute(
        "INSERT INTO runs (name, status, model, mode, device, dataset, params, num_classes, started_at, owner_pid) "
        "VALUES ('killed', 'running', 'resnet18', 'extractor', 'cpu', 'd', '{}', 2, 'then', ?)",
        (gone.pid,),
    )
    conn.close()
    run = cli.json("stats")["runs"][0]
    assert run["status"] == "interrupted" and "killed" in run["error"]
