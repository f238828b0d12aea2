"""Defaults a user can trust (issue 21), through the real CLI: a model trained on synthetic data is marked as such
everywhere and never answers for photos unless pinned; ..."""

from __future__ import annotations

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
