"""Defaults a user can trust (issue 21), through the real CLI: a model trained on synthetic data is marked as such
everywhere and never answers for photos unless pinned; ..."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.datasets.synthetic import make_synthetic
from tests.conftest import imagenet_state_dict, photo_like_dataset
from tests.images import jpeg_bytes, write

TINY = ["--no-pretrained", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0", "--epochs", "2"]


@pytest.fixture
def ready_resnet50(home, tmp_path) -> Path:
    """The default ready model's weights where torchvision looks first (no download): a resnet50 that answers
    golden retriever whatever the picture."""
    folder = tmp_path / "torch-home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return imagenet_state_dict(folder / "resnet50-11ad3fa6.pth", 207, arch="resnet50")


# ---------------------------------------------------------------- the default model


def test_a_synthetic_run_is_marked_everywhere_and_photos_get_the_ready_model_unless_pinned(
    cli, home, tmp_path, ready_resnet50
):
    data = tmp_path / "synthetic"
    cli("dataset", "synthetic", "--dataset", data, "--breeds", "3", "--per-class", "12", "--size", "48")
    trained = cli.json("train", "--dataset", data, *TINY)
    run = trained["run_id"]
    listed = cli.json("stats")["runs"][0]
    assert listed["id"] == run and listed["synthetic"] is True
    assert "(synthetic data)" in cli("stats").stdout
    assert "SYNTHETIC" in cli("stats", run).stdout

    default = cli.json("models")["default"]
    assert default["kind"] == "ready" and default["synthetic"] is False
    assert f"run {run} was trained on synthetic data" in default["reason"]
    assert f"dogbreed models --default run:{run}" in default["reason"]  # the way to use it anyway

    photo = write(tmp_path / "dog.jpg", jpeg_bytes(seed=5))
    result = cli("predict", photo)
    line = next(x for x in result.stderr.splitlines() if x.startswith("model:"))
    assert line.startswith("model: resnet50") and "synthetic data, not photos" in " ".join(result.stderr.split())
    assert "Golden retriever" in result.stdout

    cli("models", "--default", f"run:{run}")
    pinned = cli.json("predict", "--all")
    assert pinned["model_key"] == listed["checkpoint_sha256"] and pinned["synthetic"] is True
    assert "pinned" in pinned["reason"] and "dogbreed models --default auto" in pinned["reason"]
    text = " ".join(cli("predict", "--all").stderr.split())
    assert "trained on SYNTHETIC data (stripe patterns, not photos)" in text and "unpin" in text
    assert cli.json("models")["default"]["synthetic"] is True
    assert cli.json("eval", "--run", run)["synthetic"] is True
    assert "SYNTHETIC" in " ".join(cli("eval", "--run", run).stdout.split())
    cli("view", 1, "--output", tmp_path / "view.svg")
    assert "SYNTHETIC data" in (tmp_path / "view.svg").read_text()


def test_a_run_on_photos_is_the_default_and_a_newer_synthetic_run_does_not_displace_it(cli, tmp_path):
    photos = photo_like_dataset(tmp_path / "photos", breeds=3, per_class=12, size=(48, 36), seed=1)
    synthetic = tmp_path / "synthetic"
    make_synthetic(synthetic, breeds=3, per_class=12, size=(48, 36), seed=2)
    real = cli.json("train", "--dataset", photos, *TINY)["run_id"]
    cli.json("train", "--dataset", synthetic, *TINY)
    default = cli.json("models")["default"]
    assert default["kind"] == "checkpoint" and default["synthetic"] is False
    assert "best validation accuracy" in default["reason"] and "change: dogbreed models --default" in default["reason"]
    assert cli.json("stats", real)["synthetic"] is False


def test_runs_recorded_before_the_marker_was_stored_are_judged_by_their_dataset_folder(cli, tmp_path):
    from dogbreed.models import sources
    from dogbreed.store import connect

    data = tmp_path / "synthetic"
    make_synthetic(data, breeds=3, per_class=12, size=(48, 36))
    (data / "dogbreed-synthetic.json").unlink()  # a dataset made by an earlier version: only its README says so
    run = cli.json("train", "--dataset", data, *TINY)["run_id"]
    cli.sql("SELECT 1")
    conn = connect(cli.db)
    conn.execute("UPDATE runs SET synthetic = NULL")  # as recorded before migration step 6
    assert sources.best_run(conn) is None
    assert cli.json("stats", run)["synthetic"] is True
    (data / "README.txt").write_text("my photos\n")
    assert sources.best_run(conn)[0] == run
    conn.close()


# ---------------------------------------------------------------- no frozen random backbone by accident


def test_no_pretrained_trains_the_whole_network_and_says_so_and_a_random_frozen_backbone_must_be_asked_for(
    cli, tmp_path
):
    from dogbreed.api import train  # dogbreed.train is shadowed by the dogbreed.train package once it is imported
    from dogbreed.errors import DogbreedError

    data = tmp_path / "synthetic"
    make_synthetic(data, breeds=3, per_class=12, size=(48, 36), seed=4)
    refused = cli("train", "--dataset", data, "--extractor", *TINY, expect=1)
    assert len(refused.stderr.strip().splitlines()) == 1 and "frozen RANDOM backbone" in refused.stderr
    assert "--random-backbone" in refused.stderr and "Traceback" not in refused.output
    assert cli.sql("SELECT COUNT(*) FROM runs") == [(0,)]  # refused before anything was recorded

    implied = cli("train", "--dataset", data, *TINY)
    assert "--no-pretrained: training the whole network (--finetune)" in " ".join(implied.stderr.split())
    assert cli.json("stats")["runs"][0]["mode"] == "finetune"

    asked = cli.json("train", "--dataset", data, "--random-backbone", *TINY[1:])
    run = cli.json("stats", asked["run_id"])
    assert run["mode"] == "extractor" and run["params"]["random_backbone"] is True
    assert run["params"]["imagenet_overlap"] is False  # no ImageNet weights were read
    conflict = cli("train", "--dataset", data, "--random-backbone", "--finetune", *TINY[1:], expect=1)
    assert "--random-backbone means extractor mode" in conflict.stderr

    # the Python API keeps the same rule
    with pytest.raises(DogbreedError, match="frozen RANDOM backbone"):
        train(data, db=cli.db, mode="extractor", pretrained=False, epochs=1, image_size=32, workers=0)
    result = train(data, db=cli.db, pretrained=False, epochs=1, image_size=32, batch=16, workers=0)
    assert result.status == "finished" and cli.json("stats", result.run_id)["mode"] == "finetune"


# ---------------------------------------------------------------- one meaning for the numbers


def test_breed_figures_are_among_breeds_and_the_dog_figure_is_of_a_dog_at_all_and_every_output_says_so(
    cli, tmp_path, teapot_weights
):
    photo = write(tmp_path / "teapot.jpg", jpeg_bytes(seed=9))
    model = ["-m", "resnet18", "--weights", teapot_weights]
    out = cli.json("predict", photo, *model, "--top-k", "120")
    result = out["results"][0]
    top = result["top"]
    assert all(t["probability_among_breeds"] == t["probability"] for t in top)  # old key kept, new one says it
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-4)  # renormalised over the breeds
    assert result["dog_probability"] < 0.5 and result["not_a_dog"] is True  # a teapot: no dog at all

    table = " ".join(cli("predict", "--all", *model).stdout.split())
    assert "among breeds" in table and "dog at all" in table and "NOT A DOG?" in table
    assert "breed %: among the model's breeds; dog at all: that it shows a dog" in table
    listing = " ".join(cli("list").stdout.split())
    assert "among breeds" in listing and "dog at all" in listing
    assert cli.json("list")[0]["top1_prob_among_breeds"] == cli.json("list")[0]["top1_prob"]
    shown = " ".join(cli("show", 1).stdout.split())
    assert "among breeds" in shown and "probably NOT a dog: dog at all" in shown
    assert "the breed % above are among the breeds the model knows, if it shows one" in shown
    first = cli.json("show", 1)["predictions"][0]["top"][0]
    assert first["probability_among_breeds"] == first["probability"]
    cli("view", 1, "--output", tmp_path / "view.svg")
    svg = (tmp_path / "view.svg").read_text()
    assert "among breeds" in svg and "probability among the breeds the model knows" in svg
    assert "probably NOT a dog" in svg and "a dog at all:" in svg


# ---------------------------------------------------------------- fast by default


def test_after_a_plain_train_predict_at_auto_runs_a_faster_engine_that_agrees_with_fp32_with_no_other_command(
    cli, home, tmp_path, monkeypatch
):
    from dogbreed.datasets import open_dataset
    from dogbreed.engines import cpu

    data = tmp_path / "synthetic"
    make_synthetic(data, breeds=4, per_class=100, size=(48, 36), seed=6)  # 100 test images: the guard's minimum
    trained = cli.json("train", "--dataset", data, "--no-pretrained", "--image-size", "32", "--epochs", "3",
                       "--batch-size", "32", "--loader-workers", "0")
    run = trained["run_id"]
    assert trained["checked_on"] == f"100 of 100 images of the test split of run {run}'s dataset"
    assert {c["n"] for c in trained["checks"]} == {100} and trained["auto_engine"] != "torch fp32"
    assert cli.sql("SELECT DISTINCT data FROM engine_checks") == [(trained["checked_on"],)]  # recorded, with which
    converted = list((home / "cache" / "openvino").glob("*/model.xml"))
    assert len(converted) == 1  # converted once, by train: predict starts from the cache
    stamp = converted[0].stat().st_mtime_ns

    test_split = open_dataset(data, verify=False)
    cli("upload", *[test_split.index.images_dir / s.path for s in test_split.test], "-q")
    auto = cli("predict", "--all", "--run", run)
    assert not [line for line in auto.stderr.splitlines() if line.startswith("engine:")]  # nothing to do: no hint
    fast = cli.json("predict", "--all", "--run", run)
    assert (fast["engine"], fast["precision"]) != ("torch", "fp32") and fast["engine_hint"] is None
    if cpu.detect().bf16:
        assert fast["precision"] == "bf16", fast["engine_note"]
    reference = cli.json("predict", "--all", "--run", run, "--engine", "torch", "--precision", "fp32")
    top1 = {r["image_id"]: r["top"][0]["wnid"] for r in reference["results"]}
    agree = sum(top1[r["image_id"]] == r["top"][0]["wnid"] for r in fast["results"]) / len(top1)
    assert len(top1) == 100 and agree >= 0.99
    assert converted[0].stat().st_mtime_ns == stamp  # never converted again

    monkeypatch.setenv(cpu.ENV, "none")  # detection off: fp32 only, on the fastest checked engine
    off = cli.json("predict", "--all", "--run", run)
    assert (off["engine"], off["precision"]) == ("openvino", "fp32"), off["engine_note"]
    assert "no native bf16" in off["engine_note"]


def test_a_small_test_split_is_topped_up_to_the_guards_minimum_with_validation_then_training_images(tmp_path):
    from dogbreed.checks import held_out_images
    from dogbreed.datasets import open_dataset

    data = tmp_path / "small"
    make_synthetic(data, breeds=4, per_class=40, size=(40, 30), seed=7)
    opened = open_dataset(data, verify=False)
    images = held_out_images(opened, "the small set", limit=200)
    n_val = len(opened.val)
    assert len(images) == 100 and len(set(images.refs)) == 100
    assert images.description == (
        f"40 of 40 images of the test split + {n_val} of the validation split + {60 - n_val} of the training split "
        "of the small set"
    )
    test_files = {opened.index.images_dir / s.path for s in opened.test}
    assert test_files <= set(images.refs)  # every held-out image first
    big = held_out_images(opened, "the small set", limit=30)  # enough test images: no top-up
    assert len(big) == 30 and big.description == "30 of 40 images of the test split of the small set"


def test_a_ready_model_is_measured_once_on_stored_photos_then_runs_the_fastest_engine_that_passed(
    cli, uploaded, golden_weights, tmp_path
):
    model = ["-m", "resnet18", "--weights", golden_weights]
    uploaded(60)
    few = cli("predict", "--all", *model)
    hint = [line for line in few.stderr.splitlines() if line.startswith("engine:")]
    assert hint == ["engine: faster engines: measured automatically once the store holds 100 photos"]
    for i in range(40):
        write(tmp_path / "more" / f"{i}.jpg", jpeg_bytes(size=(70, 52), seed=i))  # other bytes than the first 60
    cli("upload", tmp_path / "more", "-q")
    first = cli("predict", "--all", *model)
    assert "measuring the faster engines once, on 100 stored images" in " ".join(first.stderr.split())
    again = cli.json("predict", "--all", *model)
    assert again["engines_measured_on"] is None  # once: recorded, not measured again
    assert (again["engine"], again["precision"]) != ("torch", "fp32") and again["engine_hint"] is None
    checks = cli.json("check", *model, "--list")["checks"]
    assert checks and all(c["n"] == 100 and c["data"].startswith("100 stored images") for c in checks)


# ---------------------------------------------------------------- the smaller items


def in_terminal(home: Path, *args: str, columns: int = 80) -> list[str]:
    """`dogbreed ARGS` on a real pseudo-terminal of ``columns`` columns (Rich sees a terminal, as a user's shell
    does); its output lines, without colours."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "DOGBREED_HOME": str(home), "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "dogbreed", *map(str, args)], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).splitlines()


def test_tables_at_an_80_column_terminal_keep_every_important_value_whole_and_fold_long_paths(cli, home, tmp_path):
    from dogbreed.store import open_store
    from dogbreed.store import runs as run_rows

    checkpoint = str(tmp_path / "a-rather-deep-folder" / "holding" / "checkpoints" / "resnet18-extractor-run1.pt")
    conn = open_store(cli.db)
    run = run_rows.start_run(conn, name="resnet18-extractor", model="resnet18", mode="extractor", device="cpu",
                             dataset="/d", params={}, num_classes=4, precision="bf16", synthetic=True)
    for epoch in (1, 2):
        row = dict.fromkeys(run_rows.EPOCH_FIELDS, 0.25) | {"epoch": epoch, "val_acc": 0.25 * epoch}
        run_rows.add_epoch(conn, run, row)
    run_rows.update_run(conn, run, status="finished", best_epoch=2, best_val_acc=0.5, test_acc=0.983,
                        test_macro_f1=0.98, duration_s=2.0, checkpoint_path=checkpoint)
    conn.close()

    lines = in_terminal(home, "--db", cli.db, "stats")
    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert "…" not in text  # nothing cut short
    for value in ("resnet18", "extractor", "finished", "50.0%", "98.3%", "synthetic"):
        assert value in text, (value, text)
    header = next(line for line in lines if "checkpoint" in line)
    start = header.index("checkpoint")
    body = lines[lines.index(header) + 2 : lines.index(header) + 12]
    assert "".join(line[start:].strip() for line in body).startswith(checkpoint)  # folded, never cut
    assert "hidden at 80 columns:" in text  # the less important columns left out are named

    epochs = in_terminal(home, "--db", cli.db, "stats", run)
    assert all(len(line) <= 80 for line in epochs) and "kept" in "\n".join(epochs)


def test_predict_csv_is_flat_and_show_has_csv(cli, tmp_path, golden_weights):
    import csv
    import io

    from dogbreed.cli.predict import RESULT_FIELDS

    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=11))
    text = cli("predict", photo, "-m", "resnet18", "--weights", golden_weights, "--csv", "-k", "2").stdout
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert list(row)[: RESULT_FIELDS.index("top")] == list(RESULT_FIELDS[: RESULT_FIELDS.index("top")])
    assert "top" not in row and row["top1"] == "Golden retriever" and float(row["p1"]) > 0.9
    assert row["top2"] and float(row["p2"]) < float(row["p1"]) and "top3" not in row
    shown = list(csv.DictReader(io.StringIO(cli("show", 1, "--csv").stdout)))
    assert len(shown) == 1 and shown[0]["image_id"] == "1" and shown[0]["filename"] == "a.jpg"
    assert shown[0]["top1"] == "Golden retriever" and shown[0]["model"].startswith("resnet18")
    write(tmp_path / "b.jpg", jpeg_bytes(seed=12))
    cli("upload", tmp_path / "b.jpg")
    alone = list(csv.DictReader(io.StringIO(cli("show", 2, "--csv").stdout)))
    assert len(alone) == 1 and alone[0]["filename"] == "b.jpg" and alone[0]["top1"] == ""  # no prediction yet


def test_a_store_in_a_missing_folder_is_refused_with_a_hint_and_nothing_is_created(cli, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dogbreed.cli import app

    missing = tmp_path / "typo" / "store.db"
    result = CliRunner().invoke(app, ["--db", str(missing), "list"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"the folder {missing.parent} does not exist" in result.stderr and "mkdir -p" in result.stderr
    assert not missing.parent.exists()
    monkeypatch.setenv("DOGBREED_DB", str(missing))
    assert "DOGBREED_DB" in CliRunner().invoke(app, ["stats"]).stderr and not missing.parent.exists()
    cli("list")  # dogbreed's own home is still made on first use


def test_a_photo_with_the_bytes_of_a_stored_one_says_which(cli, tmp_path, golden_weights):
    first = write(tmp_path / "rex.jpg", jpeg_bytes(seed=13))
    cli("upload", first)
    copy = write(tmp_path / "copy-of-rex.jpg", first.read_bytes())
    result = cli("predict", copy, "-m", "resnet18", "--weights", golden_weights)
    assert "same bytes as image 1 (rex.jpg)" in result.stdout and "rex.jpg" in result.stdout
    (upload,) = cli.json("upload", copy)["results"]
    assert upload["status"] == "duplicate" and upload["reason"] == "same bytes as image 1 (rex.jpg)"
