"""dogbreed eval: the model measured exactly as predict runs it, on a run's own splits or the store's labelled
images; results recorded and listed by stats."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from dogbreed.synthetic import make_synthetic
from tests.conftest import Cli, make_checkpoint

TINY = ["--no-pretrained", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0"]
SEED = 3  # not the default: evaluating the run must take the run's own seed


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic(root, breeds=4, per_class=24, size=(48, 36), lists=True, seed=1)
    return root


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, learnable) -> tuple[Path, dict]:
    """One finished run (through the real CLI), trained once for the module; tests get a copy of its store."""
    home = tmp_path_factory.mktemp("trained-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOGBREED_HOME", str(home))
        for var in ("DOGBREED_DB", "DOGBREED_CHECKPOINTS", "DOGBREED_DATASET"):
            mp.delenv(var, raising=False)
        cli = Cli(home / "dogbreed.db")
        run = cli.json("train", "--dataset", learnable, "--epochs", "3", "--seed", SEED, *TINY)
    assert run["status"] == "finished"
    return home / "dogbreed.db", run


@pytest.fixture
def store_cli(cli, trained_store) -> tuple[Cli, int]:
    """The test's own store: a copy of the trained one (its checkpoint stays where training wrote it)."""
    source, run = trained_store
    cli.db.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(cli.db)
    src.backup(dst)
    src.close()
    dst.close()
    return cli, run["run_id"]


def stored_report(cli: Cli, evaluation_id: int) -> dict:
    (report,) = cli.sql("SELECT report FROM evaluations WHERE id = ?", (evaluation_id,))[0]
    return json.loads(report)


def test_eval_of_a_run_on_its_test_split_reproduces_the_stored_test_accuracy(store_cli):
    cli, run_id = store_cli
    run = cli.json("stats", run_id)
    out = cli.json("eval", "--run", run_id)
    assert out["split"] == "test" and out["run_id"] == run_id and out["n"] == run["test_report"]["n"] == 24
    assert out["accuracy"] == run["test_acc"]  # exactly: the same engine, preprocessing and images
    assert out["top5"] == run["test_top5"] and out["macro_f1"] == run["test_macro_f1"]
    report = stored_report(cli, out["evaluation_id"])
    assert report["y_pred"] == run["test_report"]["y_pred"]  # every single answer agrees
    assert report["paths"] == run["test_report"]["paths"]
    # the checkpoint file alone is recognised as the run's (by its sha256): same split, same answers
    again = cli.json("eval", "--checkpoint", run["checkpoint_path"])
    assert again["run_id"] == run_id and again["accuracy"] == run["test_acc"]
    # recorded, and listed by stats (the run's own evaluations, and the store's)
    listed = cli.json("stats", run_id)["evaluations"]
    assert [e["id"] for e in listed] == [again["evaluation_id"], out["evaluation_id"]]
    assert listed[1]["top1"] == run["test_acc"] and listed[1]["split"] == "test" and listed[1]["n"] == 24
    assert len(cli.json("stats")["evaluations"]) == 2
    assert "evaluations of run" in cli("stats", run_id).stdout
    csv_rows = cli("stats", "--evaluations", "--csv").stdout.strip().splitlines()
    assert csv_rows[0].startswith("id,model_name,run_id") and len(csv_rows) == 3


def test_eval_store_after_uploading_the_test_images_equals_the_stored_test_accuracy(store_cli, learnable):
    cli, run_id = store_cli
    run = cli.json("stats", run_id)
    files = [learnable / "Images" / p for p in run["test_report"]["paths"]]
    cli("upload", *files, "--label-from-folder")
    out = cli.json("eval", "--run", run_id, "--store")
    assert out["split"] == "store" and out["n"] == len(files)
    assert out["accuracy"] == run["test_acc"] and out["macro_f1"] == run["test_macro_f1"]
    assert out["top5"] == run["test_top5"]
    by_file = {Path(p).name: y for p, y in zip(run["test_report"]["paths"], run["test_report"]["y_pred"])}
    report = stored_report(cli, out["evaluation_id"])
    names = dict(cli.sql("SELECT id, filename FROM images"))
    answers = {names[int(key.split()[-1])]: y for key, y in zip(report["paths"], report["y_pred"])}
    assert answers == by_file  # image by image, the same answer as training's test pass


def test_eval_splits_are_the_runs_own(store_cli, learnable):
    """--split val/train rebuild the run's splits with its seed (3), not the default (0)."""
    from dogbreed.dataset import make_splits, scan

    cli, run_id = store_cli
    index = scan(learnable)
    ours, default = make_splits(index, seed=SEED), make_splits(index, seed=0)
    assert {s.path for s in ours.val} != {s.path for s in default.val}  # else this test could not tell
    for split in ("val", "train"):
        out = cli.json("eval", "--run", run_id, "--split", split)
        paths = stored_report(cli, out["evaluation_id"])["paths"]
        assert sorted(paths) == sorted(s.path for s in getattr(ours, split)), split
        assert out["n"] == len(getattr(ours, split))


def test_eval_plot_writes_the_confusion_matrix(store_cli, tmp_path):
    from PIL import Image

    cli, run_id = store_cli
    target = tmp_path / "cm.png"
    result = cli("eval", "--run", run_id, "--plot", target)
    assert "per breed" in result.stdout and "top-1 accuracy" in result.stdout
    with Image.open(target) as img:
        assert img.format == "PNG" and min(img.size) > 400


def test_a_ready_model_is_scored_over_all_its_breeds_and_within_the_datas(cli, tmp_path):
    """A ready ImageNet model knows 120 breeds; the data has 3. Its weights answer Golden retriever (not in the
    data) first and Beagle second: over its own breeds every answer is wrong; restricted to the data's breeds it
    gets the Beagle pictures right."""
    import torch
    import torchvision

    from dogbreed.models.zoo import IMAGENET_CAVEAT

    root = tmp_path / "three"
    make_synthetic(root, breeds=["n02085620", "n02088364", "n02106662"], per_class=10, size=(48, 36), lists=False)
    state = torchvision.models.get_model("resnet18", weights=None).state_dict()
    state["fc.weight"].zero_()
    state["fc.bias"].zero_()
    state["fc.bias"][207] = 30.0  # golden retriever
    state["fc.bias"][162] = 20.0  # beagle
    weights = tmp_path / "golden-then-beagle.pth"
    torch.save(state, weights)
    result = cli("eval", "--model", "resnet18", "--weights", weights, "--dataset", root, "--json")
    out = json.loads(result.stdout)
    assert out["n"] == 6 and out["data_breeds"] == 3
    assert out["accuracy"] == 0.0  # always "Golden retriever", a breed the data does not have
    assert out["accuracy_data_breeds"] == pytest.approx(1 / 3)  # the 2 Beagle pictures of 6
    golden = next(b for b in out["per_breed"] if b["breed"] == "n02099601")
    assert golden["support"] == 0 and golden["precision"] == 0.0
    assert out["imagenet_overlap"] is True and IMAGENET_CAVEAT in " ".join(result.stderr.split())


def test_a_breed_the_model_does_not_know_counts_as_a_mistake(cli, learnable, tmp_path, monkeypatch):
    from dogbreed.breeds import BY_WNID

    known = ["n02085620", "n02088364", "n02099601"]  # the data also has n02106662 (German shepherd)
    ckpt = make_checkpoint(tmp_path / "three.pt", classes=[[w, BY_WNID[w].name] for w in known])
    monkeypatch.chdir(learnable.parent)  # a relative --dataset is recorded as the folder it names
    result = cli("eval", "--checkpoint", ckpt, "--dataset", learnable.name, "--json")
    out = json.loads(result.stdout)
    assert out["data"] == str(learnable.resolve())
    assert out["n"] == 24  # every test picture, the unknown breed's included
    shepherd = next(b for b in out["per_breed"] if b["breed"] == "n02106662")
    assert shepherd["support"] == 6 and shepherd["recall"] == 0.0
    assert "does not know 1 breed(s)" in result.stderr and "German shepherd" in result.stderr


def test_eval_mistakes_are_one_line_errors(store_cli, tmp_path):
    cli, run_id = store_cli
    cases = [
        (["--run", run_id, "--store"], "no labelled images"),
        (["--run", run_id, "--store", "--split", "val"], "choose the data"),
        (["--run", run_id, "--split", "everything"], "unknown split"),
        (["--run", 999], "no training run with id 999"),
        (["--checkpoint", tmp_path / "missing.pt"], "does not exist"),
        (["--run", run_id, "--precision", "fp16"], "fp16 needs a CUDA GPU"),
    ]
    for args, expected in cases:
        result = cli("eval", *args, expect=1)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and expected in errors[0], (args, result.stderr)
        assert "Traceback" not in result.output and not cli.sql("SELECT id FROM evaluations")


def test_confusion_matrix_order_puts_confused_breeds_together(tmp_path):
    """At 120 breeds the matrix is clustered: breeds mistaken for each other end up side by side."""
    import numpy as np
    from PIL import Image
    from sklearn.metrics import confusion_matrix

    from dogbreed.breeds import BREEDS
    from dogbreed.viz import _confusion_order, render_confusion

    rng = np.random.default_rng(0)
    partner = {}
    for a, b in rng.permutation(120).reshape(60, 2):  # 60 random pairs, far apart in breed order
        partner[int(a)], partner[int(b)] = int(b), int(a)
    y_true, y_pred = [], []
    for i in range(120):
        y_true += [i] * 10
        y_pred += [i] * 7 + [partner[i]] * 3
    order = _confusion_order(confusion_matrix(y_true, y_pred))
    position = {c: k for k, c in enumerate(order)}
    assert sorted(order) == list(range(120))
    assert all(abs(position[a] - position[b]) == 1 for a, b in partner.items())
    target = render_confusion(y_true, y_pred, [b.wnid for b in BREEDS], tmp_path / "cm120.png", title="pairs")
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size[0] > 2000  # two panels with 120 names on each axis
