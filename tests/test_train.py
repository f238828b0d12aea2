from __future__ import annotations

from pathlib import Path

import pytest

from dogbreed.datasets.synthetic import make_synthetic
from tests.conftest import photo_like_dataset

SMALL = ["--no-pretrained", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0"]  # finetune
TINY = ["--random-backbone", "--image-size", "32", "--batch", "16", "--workers", "0"]  # extractor, fast


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Path:
    """Stands in for photos (no synthetic marker), so its runs become the default model."""
    root = tmp_path_factory.mktemp("data") / "photos"
    return photo_like_dataset(root, breeds=4, per_class=24, size=(48, 36), lists=True, seed=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Three breeds, 16 pictures each: enough for a few finetune epochs in seconds."""
    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    make_synthetic(root, breeds=3, per_class=16, size=(40, 32), lists=True, seed=3)
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
    from dogbreed.files import file_sha256

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
    Path(out["checkpoint"]).unlink()  # moved away: the default says so instead of "no trained model yet"
    reason = cli.json("models")["default"]["reason"]
    assert f"the checkpoint of finished run {trained['run_id']} is missing ({out['checkpoint']})" in reason


def test_checkpoint_round_trips_with_classes_and_metrics(cli, trained):
    from dogbreed.models.build import load_checkpoint

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
    result = cli("train", "--dataset", root, "--finetune", "--epochs", "2", "--lr", "3e-3", *SMALL)
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
    from dogbreed.models.sources import best_run

    assert best_run(conn) is None  # only finished runs become the default model
    from dogbreed.train import resume

    again = resume(result.run_id, db)  # Ctrl-C keeps the state to continue from
    assert again.status == "finished" and [e["epoch"] for e in again.epochs] == [1, 2, 3, 4, 5]
    assert tuple(conn.execute("SELECT COUNT(*), COUNT(DISTINCT epoch) FROM epochs").fetchone()) == (5, 5)
    assert [tuple(r) for r in conn.execute("SELECT status FROM runs")] == [("finished",)]


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


# ---------------------------------------------------------------- resume, warm start, precision, preprocessing

HANG_AFTER_EPOCH_2 = """
import sys, time
from pathlib import Path
from dogbreed.train import Listener, TrainConfig, train

class HangAfterEpoch2(Listener):
    def epoch(self, row):
        if row["epoch"] == 2:
            Path(sys.argv[1]).write_text("epoch 2 recorded")
            time.sleep(600)  # the test kills this process here, with SIGKILL

dataset, checkpoints, db = map(Path, sys.argv[2:5])
config = TrainConfig(dataset=dataset, checkpoints_dir=checkpoints, mode="finetune", epochs=4, batch=16, lr=3e-3,
                     image_size=32, pretrained=False, workers=0, precision="fp32")
train(config, db, HangAfterEpoch2())
"""


def test_a_run_killed_after_epoch_2_of_4_resumes_to_exactly_the_uninterrupted_run(cli, tiny, home, tmp_path):
    """SIGKILL (no chance to clean up) after epoch 2; --resume trains epochs 3 and 4 in the same record, with the
    optimizer, scheduler and RNG state of the killed run: the same numbers as a run that was never interrupted."""
    import signal
    import subprocess
    import sys
    import time

    cli("stats")  # create the store
    marker = tmp_path / "epoch2"
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG_AFTER_EPOCH_2, marker, tiny, home / "checkpoints", cli.db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "training never reached epoch 2"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = cli.json("stats")["runs"][0]
    assert killed["status"] == "interrupted" and killed["epochs_done"] == 2  # its process is gone
    assert Path(killed["last_checkpoint_path"]).is_file()
    assert "continue it with: dogbreed train --resume" in cli("stats", killed["id"]).stdout

    resumed = cli.json("train", "--resume", killed["id"])
    assert resumed["run_id"] == killed["id"] and resumed["status"] == "finished" and resumed["resumed_after"] == 2
    run = cli.json("stats", killed["id"])
    assert run["status"] == "finished" and [e["epoch"] for e in run["epochs"]] == [1, 2, 3, 4]
    rows = cli("stats", killed["id"], "--csv").stdout.strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert run["last_checkpoint_path"] is None and not Path(killed["last_checkpoint_path"]).exists()
    assert len(cli.json("stats")["runs"]) == 1  # the same record, no new run
    assert not list((home / "checkpoints").glob(".*.tmp"))

    straight = cli.json(
        "train", "--dataset", tiny, "--finetune", "--epochs", 4, "--lr", "3e-3", "--precision", "fp32", *SMALL
    )
    reference = cli.json("stats", straight["run_id"])["epochs"]
    for got, want in zip(run["epochs"], reference):
        for key in ("train_loss", "val_loss", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), (got["epoch"], key)
        for key in ("train_acc", "train_f1", "val_acc", "val_f1"):
            assert got[key] == want[key], (got["epoch"], key)
    assert run["test_acc"] == straight["test"]["accuracy"]


def test_a_finished_run_is_not_resumed_but_warm_started_from(cli, trained, learnable, monkeypatch):
    """--resume refuses a finished run (and options that would change a resumed one); --from starts a new run
    from its weights, architecture, mode and input size."""
    import torch

    from dogbreed.formats.checkpoint import read_checkpoint

    run_id = trained["run_id"]
    assert "already finished" in cli("train", "--resume", run_id, expect=1).stderr
    assert f"--from {run_id}" in cli("train", "--resume", run_id, expect=1).stderr
    assert "drop --epochs, --lr (" in cli("train", "--resume", run_id, "--lr", "0.1", "-e", 3, expect=1).stderr
    assert "no training run with id 99" in cli("train", "--resume", 99, "--epochs", 3, expect=1).stderr
    assert "no training run with id 99" in cli("train", "--resume", 99, expect=1).stderr
    assert "choose --resume RUN" in cli("train", "--resume", run_id, "--from", run_id, expect=1).stderr

    monkeypatch.setenv("DOGBREED_CPU_FEATURES", "none")  # as on a CPU without native bf16: auto is fp32
    source = cli.json("stats", trained["run_id"])
    # no --model, --image-size or --no-pretrained: all of it comes from run 1 (and nothing is downloaded)
    warm = cli.json(
        "train",
        "--from",
        trained["run_id"],
        "--dataset",
        learnable,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--loader-workers",
        0,
    )
    run = cli.json("stats", warm["run_id"])
    assert run["init_from"] == f"run {trained['run_id']}" and run["precision"] == "fp32" and warm["precision"] == "fp32"
    assert run["params"]["init_from"] == str(trained["run_id"])
    meta, state, _ = read_checkpoint(run["checkpoint_path"])
    _, source_state, _ = read_checkpoint(source["checkpoint_path"])
    assert meta.image_size == 32 and meta.mode == "extractor" and meta.arch == "resnet18"
    backbone = [k for k in state if k.startswith("backbone.")]
    assert backbone and all(torch.equal(state[k], source_state[k]) for k in backbone)  # frozen, carried over
    # the head carried over too: its first epoch starts where the source run ended, far below its first epoch
    assert run["epochs"][0]["train_loss"] < source["epochs"][0]["train_loss"] / 2

    fresh_head = cli(
        "train",
        "--from",
        trained["run_id"],
        "--finetune",
        "--dataset",
        learnable,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--loader-workers",
        0,
        "--json",
    )
    assert "the head starts fresh (extractor head -> finetune head)" in " ".join(fresh_head.stderr.split())
    assert (
        "a warm start keeps the architecture"
        in cli(
            "train", "--from", trained["run_id"], "--model", "efficientnet_b0", "--dataset", learnable, expect=1
        ).stderr
    )


def test_precision_choice_follows_the_hardware(monkeypatch):
    import torch

    from dogbreed.errors import DogbreedError
    from dogbreed.train.precision import training_precision as choose

    cpu = torch.device("cpu")
    monkeypatch.setenv("DOGBREED_CPU_FEATURES", "none")
    assert choose(cpu, "auto").name == "fp32"
    emulated = choose(cpu, "bf16")
    assert emulated.name == "bf16" and "emulated" in emulated.warning
    monkeypatch.setenv("DOGBREED_CPU_FEATURES", "avx512f avx512_bf16")
    assert choose(cpu, "auto").name == "bf16" and choose(cpu, "auto").warning is None
    assert "scoring in fp32" in choose(cpu, "auto").note  # the training step alone: see test_train_precision.py
    monkeypatch.setenv("DOGBREED_CPU_FEATURES", "amx_bf16,amx_tile")
    assert choose(cpu, "auto").name == "bf16"
    assert choose(cpu, "fp32").name == "fp32"
    with pytest.raises(DogbreedError, match="fp16 training needs a CUDA GPU"):
        choose(cpu, "fp16")
    with pytest.raises(DogbreedError, match="unknown precision"):
        choose(cpu, "fp8")
    with choose(cpu, "bf16").autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    assert choose(cpu, "bf16").grad_scaler() is None


def test_bf16_training_is_recorded(cli, learnable):
    out = cli.json("train", "--dataset", learnable, "--epochs", 1, "--precision", "bf16", *SMALL)
    assert out["status"] == "finished" and out["precision"] == "bf16"
    assert cli.json("stats", out["run_id"])["precision"] == "bf16"
    assert "unknown precision" in cli("train", "--dataset", learnable, "--precision", "int8", expect=1).stderr


def test_each_architecture_gets_its_published_preprocessing():
    from dogbreed.train import preprocessing_for

    r50, convnext, effnet = (preprocessing_for(a, None) for a in ("resnet50", "convnext_tiny", "efficientnet_b0"))
    assert (r50.resize_size, r50.crop_size, r50.interpolation) == (232, 224, "bilinear")
    assert (convnext.resize_size, convnext.crop_size, convnext.interpolation) == (236, 224, "bilinear")
    assert (effnet.resize_size, effnet.crop_size, effnet.interpolation) == (256, 224, "bicubic")
    small = preprocessing_for("efficientnet_b0", 32)  # an explicit size keeps the ratio and the interpolation
    assert (small.resize_size, small.crop_size, small.interpolation) == (37, 32, "bicubic")


def _recalibrated(model, pictures):
    """Fresh BatchNorm statistics from real pictures. A from-scratch EfficientNet at 32 px answers the same for every
    input (its activations vanish); with statistics measured on pictures it tells them apart, which is what lets
    this test see which preprocessing predict used."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the pass
    model.backbone.train()
    model.head.train()
    with torch.no_grad():
        model.head(model.backbone(pictures))
    return model.eval()


def test_efficientnet_checkpoint_records_bicubic_and_predict_uses_it(cli, learnable, tmp_path):
    """Predict's stored probabilities are those of bicubic preprocessing, not of the bilinear default."""
    import json

    import torch

    from dogbreed import imaging
    from dogbreed.formats.checkpoint import save_checkpoint
    from dogbreed.models.build import load_checkpoint
    from dogbreed.models.predictor import Predictor

    out = cli.json("train", "--dataset", learnable, "--model", "EfficientNet", "--epochs", 1, *SMALL)
    path = cli.json("stats", out["run_id"])["checkpoint_path"]
    model, meta = load_checkpoint(path)
    assert (meta.arch, meta.interpolation, meta.resize_size, meta.image_size) == ("efficientnet_b0", "bicubic", 37, 32)
    files = sorted((learnable / "Images").glob("*/*.jpg"))
    pictures = torch.stack([torch.from_numpy(imaging.preprocess(f.read_bytes(), meta.preprocessing)) for f in files])
    sensitive = tmp_path / "effnet.pt"
    save_checkpoint(sensitive, _recalibrated(model, pictures), meta)
    cli("upload", *files[:: len(files) // 6][:6])
    cli("predict", "--all", "--checkpoint", sensitive)
    net = Predictor(load_checkpoint(sensitive)[0]).eval()
    bilinear = imaging.Preprocessing(32, 37, "bilinear", meta.mean, meta.std)
    gaps = []
    for image_id, stored in cli.sql("SELECT image_id, probs FROM predictions ORDER BY image_id"):
        data = cli.sql("SELECT data FROM image_blobs WHERE image_id = ?", (image_id,))[0][0]
        stored = json.loads(stored)
        with torch.inference_mode():
            ours = net(torch.from_numpy(imaging.preprocess(data, meta.preprocessing))[None])[0][0]
            other = net(torch.from_numpy(imaging.preprocess(data, bilinear))[None])[0][0]
        for i, wnid in enumerate(meta.wnids):
            assert stored[wnid] == pytest.approx(float(ours[i]), abs=1e-4)
        gaps.append(float((ours - other).abs().max()))
    assert len(gaps) == 6 and max(gaps) > 1e-2  # bilinear would have given other numbers: the test tells them apart


def test_tensorboard_logs_the_epochs_or_says_what_is_missing(cli, learnable, tmp_path, monkeypatch):
    import sys

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "tensorboard", None)  # as if the package were not installed
        missing = cli("train", "--dataset", learnable, "--tensorboard", tmp_path / "tb", *SMALL, expect=1)
        assert "pip install tensorboard" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
        assert not cli.sql("SELECT id FROM runs")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = cli.json("train", "--dataset", learnable, "--epochs", 2, "--tensorboard", tmp_path / "tb", *SMALL)
    (logdir,) = (tmp_path / "tb").iterdir()
    assert logdir.name == f"run{out['run_id']}-resnet18-finetune"  # --no-pretrained implies --finetune
    events = EventAccumulator(str(logdir))
    events.Reload()
    values = [e.value for e in events.Scalars("accuracy/validation")]
    assert values == pytest.approx([e["val_acc"] for e in out["epochs"]])


def test_a_damaged_training_state_is_a_one_line_error(cli, learnable, tmp_path):
    from dogbreed.store import open_store
    from dogbreed.store import runs as run_rows
    from tests.conftest import make_checkpoint

    conn = open_store(cli.db)
    run_id = run_rows.start_run(
        conn,
        name="crafted",
        model="resnet18",
        mode="extractor",
        device="cpu",
        dataset=str(learnable),
        params={"dataset": str(learnable), "epochs": 4},
        num_classes=120,
    )
    last = make_checkpoint(tmp_path / "crafted.last.pt")
    run_rows.update_run(conn, run_id, status="interrupted", last_checkpoint_path=str(last))
    result = cli("train", "--resume", run_id, expect=1)
    assert "holds no training state" in result.stderr and "Traceback" not in result.output

    import torch

    payload = torch.load(last, weights_only=True)
    payload["train_state"] = {"epoch": 2, "optimizer": "not a dict"}
    torch.save(payload, last)
    result = cli("train", "--resume", run_id, expect=1)
    assert "damaged training state ('optimizer'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cli.sql("SELECT status FROM runs") == [("interrupted",)]  # nothing changed
