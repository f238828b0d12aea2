"""The store as the training source, and any class folders: own breeds added, photos labelled through the CLI,
a model trained on them that names them, reproduced by eval, changed by relabelling, exported and run without
torch; class folders with arbitrary names; and the ways it refuses (too few images, unknown folder names)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dogbreed.datasets.synthetic import _picture
from tests.conftest import Cli
from tests.test_engines import run_without_torch

OWN = ["Shiba Inu", "Australian shepherd", "Labradoodle"]
STANFORD = ["beagle", "golden retriever"]
TRAIN = ["--no-pretrained", "--finetune", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0"]


def photos(folder: Path, slot: int, n: int, seed: int) -> list[Path]:
    """``n`` generated photos of one 'breed' (a colour and stripe pattern per slot, jittered per photo)."""
    rng = random.Random(seed * 100 + slot)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{slot}-{seed}-{i:03d}.jpg"
        _picture(slot, 5, (40, 32), rng).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.fixture
def labelled_store(cli, tmp_path):
    """Three own breeds (breeds add) and two Stanford breeds, 16 photos each: two own breeds labelled at upload
    (-g), the third uploaded bare and labelled afterwards (label)."""
    for name in OWN:
        cli("breeds", "add", name)
    for slot, name in enumerate(OWN + STANFORD):
        files = photos(tmp_path / "photos" / str(slot), slot, 16, seed=0)
        if slot == 2:
            ids = [r["image_id"] for r in cli.json("upload", *files)["results"]]
            cli("label", *ids, name)
        else:
            cli("upload", *files, "-g", name)
    return tmp_path


def predicted(cli, files: list[Path], *extra: str) -> list[str]:
    out = cli.json("predict", *files, "--engine", "torch", "--precision", "fp32", *extra)
    return [r["top"][0]["breed"] for r in out["results"]]


def test_train_on_the_store_learns_own_breeds_and_eval_reproduces_it(cli, labelled_store, home, tmp_path):
    run = cli.json("train", "--store", "--epochs", "6", *TRAIN)
    assert run["status"] == "finished" and run["test"]["accuracy"] >= 0.8, run["test"]
    names = [b["name"] for b in run["test"]["per_breed"]]
    assert set(names) == {*OWN, "Beagle", "Golden retriever"}
    recorded = cli.sql("SELECT split, COUNT(*) FROM run_images WHERE run_id = ? GROUP BY split", (run["run_id"],))
    assert dict(recorded) == {"train": 60, "val": 5, "test": 15}  # 16 a breed: 3 test, 1 validation, 12 train
    new = {name: photos(tmp_path / "new" / str(slot), slot, 3, seed=7) for slot, name in enumerate(OWN)}
    for name, files in new.items():
        assert predicted(cli, files).count(name) >= 2, name
    # eval of the run on its recorded test images gives the run's own test accuracy, image by image
    later = photos(tmp_path / "later", 0, 5, seed=9)
    cli("upload", *later, "-g", "shiba inu")  # images labelled after the run never reach its test set
    evaluated = cli.json("eval", "--run", run["run_id"], "--engine", "torch", "--precision", "fp32")
    assert evaluated["n"] == run["test"]["n"] == 15
    assert evaluated["accuracy"] == pytest.approx(run["test"]["accuracy"], abs=1e-9)
    assert evaluated["per_breed_f1"] == pytest.approx(run["test"]["per_breed_f1"])
    # the model exported to OpenVINO names the own breeds with torch unimportable
    export = cli.json("export", run["run_id"], "-o", tmp_path / "own.xml", "--no-check")
    proc = run_without_torch(home, "predict", *map(str, new["Labradoodle"]), "-c", export["path"], "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["top"][0]["breed"] for r in json.loads(proc.stdout)["results"]].count("Labradoodle") >= 2
    # a breed in use by a run stays; a store that never had the breed still reads its name from the model
    assert "training run(s)" in cli("breeds", "remove", "Labradoodle", expect=1).stderr
    elsewhere = Cli(tmp_path / "elsewhere.db")
    assert predicted(elsewhere, new["Labradoodle"], "-c", run["checkpoint"]).count("Labradoodle") >= 2


def test_relabelling_and_training_again_changes_what_predict_says(cli, labelled_store, tmp_path):
    first = cli.json("train", "--store", "--epochs", "6", *TRAIN)
    shiba = photos(tmp_path / "new-shiba", 0, 3, seed=11)
    assert predicted(cli, shiba, "--run", str(first["run_id"])).count("Shiba Inu") >= 2
    shibas = [r["id"] for r in cli.json("list", "--breed", "shiba inu", "--limit", "100")]
    doodles = [r["id"] for r in cli.json("list", "--breed", "labradoodle", "--limit", "100")]
    cli("label", *shibas, "labradoodle")
    cli("label", *doodles, "shiba inu")
    second = cli.json("train", "--store", "--epochs", "6", *TRAIN)
    assert predicted(cli, shiba, "--run", str(second["run_id"])).count("Labradoodle") >= 2
    changes = cli.sql("SELECT COUNT(*) FROM label_changes WHERE how = 'label'")[0][0]
    assert changes == 16 + 16 + 16  # the first labelling of the third breed, then both swaps


def test_too_few_images_per_breed_is_one_line_or_left_out(cli, tmp_path):
    cli("breeds", "add", "Shiba Inu")
    cli("upload", *photos(tmp_path / "a", 0, 3, seed=0), "-g", "shiba")
    cli("upload", *photos(tmp_path / "b", 3, 8, seed=0), "-g", "beagle")
    cli("upload", *photos(tmp_path / "c", 4, 8, seed=0), "-g", "golden")
    result = cli("train", "--store", "--epochs", "1", *TRAIN, expect=1)
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert "Shiba Inu (3)" in result.stderr and "at least 5" in result.stderr and "--skip-small" in result.stderr
    assert cli.sql("SELECT COUNT(*) FROM runs") == [(0,)]  # nothing recorded
    run = cli.json("train", "--store", "--skip-small", "--epochs", "1", *TRAIN)
    assert run["status"] == "finished"
    assert {b["name"] for b in run["test"]["per_breed"]} <= {"Beagle", "Golden retriever"}
    again = cli("train", "--store", "--skip-small", "--epochs", "1", *TRAIN)
    assert "--skip-small: left out 1 breed(s)" in again.stderr


def test_class_folders_with_any_names_train_after_adding_their_breeds(cli, tmp_path):
    root = tmp_path / "mydogs"
    for slot, folder in enumerate(["n02088364", "Rex", "dachshund"]):  # Beagle by WordNet id, two of our own
        photos(root / folder, slot, 12, seed=1)
    (root / ".hidden").mkdir()
    result = cli("train", "--dataset", root, "--epochs", "1", *TRAIN, expect=1)
    assert "'Rex'" in result.stderr and "'dachshund'" in result.stderr and "--add-breeds" in result.stderr
    assert cli.sql("SELECT COUNT(*) FROM breeds") == [(0,)] and cli.sql("SELECT COUNT(*) FROM runs") == [(0,)]
    run = cli.json("train", "--dataset", root, "--add-breeds", "--epochs", "3", *TRAIN)
    assert run["status"] == "finished"
    assert {b["name"] for b in run["test"]["per_breed"]} == {"Beagle", "Rex", "dachshund"}
    own = {b["name"]: b["wnid"] for b in cli.json("breeds") if b["own"]}
    assert own == {"Rex": "own:rex", "dachshund": "own:dachshund"}
    evaluated = cli.json("eval", "--run", run["run_id"], "--engine", "torch", "--precision", "fp32")
    assert evaluated["accuracy"] == pytest.approx(run["test"]["accuracy"], abs=1e-9)


def test_the_store_and_a_stanford_dataset_train_together(cli, tmp_path):
    from dogbreed.datasets.synthetic import make_synthetic

    dataset = tmp_path / "stanford"
    make_synthetic(dataset, breeds=2, per_class=12, size=(40, 32), lists=True, seed=2)
    cli("breeds", "add", "Shiba Inu")
    cli("upload", *photos(tmp_path / "s", 4, 10, seed=2), "-g", "shiba")
    run = cli.json("train", "--dataset", dataset, "--store", "--epochs", "2", *TRAIN)
    assert run["status"] == "finished" and len(run["test"]["classes"]) == 3
    assert cli.json("stats", run["run_id"])["dataset"] == f"{dataset} + store"
    stored = cli.sql("SELECT split, COUNT(*) FROM run_images WHERE run_id = ? GROUP BY split", (run["run_id"],))
    assert sum(n for _, n in stored) == 10  # only the stored images are recorded; the dataset's split is its own


def test_extractor_features_are_cached_between_runs(cli, labelled_store, home, tmp_path):
    from tests.conftest import imagenet_state_dict

    weights = imagenet_state_dict(tmp_path / "r18.pth", 207)
    args = ["train", "--store", "--weights", weights, "--image-size", "32", "--epochs", "2", "--loader-workers", "0"]
    first = cli.json(*args)
    cached = sorted((home / "cache" / "features").rglob("*.npy"))
    assert len(cached) == 65  # every train and validation image, once
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    second = cli.json(*args)
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps  # read back, not computed again
    assert second["test"]["accuracy"] == first["test"]["accuracy"]
    assert second["epochs"] == [dict(e, seconds=s["seconds"]) for e, s in zip(first["epochs"], second["epochs"])]


def test_labels_changed_while_train_store_runs_leave_the_run_on_its_snapshot(cli, labelled_store, home, gate):
    """The run trains on the labels it read when it started: held after its first epoch, the store is relabelled,
    an image deleted and a new one labelled; the run finishes on its snapshot, records it, and eval reproduces it."""
    import os
    import sys

    cmd = [sys.executable, "-m", "dogbreed", "--db", str(cli.db), "train", "--store", "--epochs", "2", "--json"]
    proc = gate.start(cmd + TRAIN, env={**os.environ, "DOGBREED_HOME": str(home)})
    gate.wait(proc)
    (run_id,) = cli.sql("SELECT id FROM runs")[0]
    snapshot = cli.sql("SELECT image_id, split, label FROM run_images WHERE run_id = ? ORDER BY image_id", (run_id,))
    split_of = {image_id: split for image_id, split, _ in snapshot}
    shibas = [r["id"] for r in cli.json("list", "--breed", "shiba inu", "--limit", "100")]
    tested = [i for i in shibas if split_of[i] == "test"]
    trained = [i for i in shibas if split_of[i] == "train"]
    cli("label", *tested, "labradoodle")  # the run still scores them as Shiba Inu
    cli("delete", trained[0])
    cli("upload", photos(home.parent / "late", 0, 1, seed=5)[0], "-g", "shiba inu")
    gate.open()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    run = json.loads(out)
    assert run["status"] == "finished"
    after = cli.sql("SELECT image_id, split, label FROM run_images WHERE run_id = ? ORDER BY image_id", (run_id,))
    assert after == snapshot  # the late image is not in it, the relabelled ones keep the label trained on
    assert f"store:{trained[0]}" in run["skipped"]  # the deleted image was skipped in epoch 2, not fatal
    evaluated = cli.json("eval", "--run", run_id, "--engine", "torch", "--precision", "fp32")
    assert evaluated["n"] == run["test"]["n"]
    assert evaluated["accuracy"] == pytest.approx(run["test"]["accuracy"], abs=1e-9)
