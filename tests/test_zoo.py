"""Ready ImageNet models: the ImageNet <-> breed table, the 1000 -> 120 + dog-probability graph, and the
first-photo story (predict with no training), all offline with weights files the tests make."""

from __future__ import annotations

import csv
import io
import json

from dogbreed import imagenet
from dogbreed.breeds import BREEDS
from dogbreed.cli.predict import RESULT_FIELDS, csv_fields
from tests.images import jpeg_bytes, write


def test_the_imagenet_table_holds_every_breed_once_at_its_published_index():
    import torchvision

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(imagenet.WNIDS) == 1000 and list(imagenet.WNIDS) == sorted(set(imagenet.WNIDS))
    indices = imagenet.breed_indices()
    assert len(indices) == 120 and len(set(indices)) == 120
    assert sorted(indices) == [*range(151, 251), *range(252, 269), 273, 274, 275]  # 117 + dingo, dhole, wild dog
    for breed, index in zip(BREEDS, indices):
        assert imagenet.WNIDS[index] == breed.wnid
        # torchvision's own class names agree with ours (spelling aside) at that index
        ours = breed.name.lower().replace("-", " ")
        theirs = categories[index].lower().replace("-", " ").replace("_", " ")
        assert ours.split()[-1] in theirs or theirs.split()[-1] in ours, (breed.name, categories[index])


def test_the_dog_classes_are_all_dogs_including_ones_stanford_does_not_list():
    import torchvision

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    dogs = imagenet.dog_indices()
    assert set(imagenet.breed_indices()) < set(dogs)
    assert categories[251] == "dalmatian" and 251 in dogs  # a dog that is not a Stanford breed
    assert {categories[i] for i in (269, 277, 281, 849)} == {"timber wolf", "red fox", "tabby", "teapot"}
    assert not {269, 277, 281, 849} & set(dogs)


def test_ready_models_come_from_torchvision_metadata():
    from dogbreed.models import zoo

    models = {m.name: m for m in zoo.ready_models()}
    assert len(models) > 40
    r50 = models["resnet50"]
    assert (r50.weights, r50.top1, r50.gflops) == ("IMAGENET1K_V2", 80.858, 4.089)
    assert r50.preprocessing.resize_size == 232 and r50.preprocessing.crop_size == 224
    assert models["efficientnet_b0"].preprocessing.interpolation == "bicubic"
    assert models["convnext_tiny"].preprocessing.resize_size == 236
    assert not r50.cached  # the tests' TORCH_HOME is empty


def test_a_bias_on_golden_retriever_gives_golden_retriever_and_a_dog(cli, tmp_path, golden_weights):
    photo = write(tmp_path / "dog.jpg", jpeg_bytes(seed=5))
    out = cli.json("predict", photo, "--model", "resnet18", "--weights", golden_weights)  # a fresh store
    assert out["done"] == 1 and not cli.db.with_name("x").exists()
    result = out["results"][0]
    assert result["top"][0]["breed"] == "Golden retriever" and result["top"][0]["wnid"] == "n02099601"
    assert result["top"][0]["probability"] > 0.99 and result["dog_probability"] > 0.99
    assert result["not_a_dog"] is False
    assert result["model"] == "resnet18 (ImageNet, golden.pth)" and result["device"] == "cpu"
    assert {"image_id", "filename", "top", "dog_probability", "model", "device"} <= set(result)
    stored = cli.sql("SELECT model_key, model_ref, model_name, dog_probability FROM predictions")[0]
    from dogbreed.files import file_sha256

    assert stored[0] == file_sha256(golden_weights) and stored[1] == str(golden_weights.resolve())
    assert stored[3] > 0.99


def test_a_bias_on_a_non_dog_class_is_marked_not_a_dog_everywhere(cli, tmp_path, teapot_weights):
    photo = write(tmp_path / "teapot.jpg", jpeg_bytes(seed=6))
    out = cli.json("predict", photo, "--model", "resnet18", "--weights", teapot_weights)
    result = out["results"][0]
    assert result["dog_probability"] < 0.01 and result["not_a_dog"] is True
    probs = result["top"]
    assert abs(sum(json.loads(cli.sql("SELECT probs FROM predictions")[0][0]).values()) - 1) < 1e-4
    assert probs  # the breeds are still ranked: the mark says the ranking is probably meaningless
    image_id = result["image_id"]
    assert "NOT A DOG?" in cli("list").stdout
    assert "probably NOT a dog" in cli("show", image_id).stdout
    assert cli.json("show", image_id)["predictions"][0]["not_a_dog"] is True
    assert cli.json("list")[0]["not_a_dog"] is True
    assert cli.json("stats")["store"]["not_a_dog"] == 1


def test_predicting_files_stores_them_once_and_reports_each(cli, tmp_path, golden_weights):
    good = write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    copy = write(tmp_path / "sub" / "a-copy.jpg", good.read_bytes())
    broken = write(tmp_path / "broken.jpg", b"not a picture")
    result = cli("predict", good, copy, broken, "-m", "resnet18", "--weights", golden_weights, expect=1)
    assert "broken.jpg" in result.output and "not a recognised image format" in result.output
    assert "Golden retriever" in result.stdout and "1 predicted" in result.stdout
    assert cli.sql("SELECT COUNT(*) FROM images") == [(1,)]
    again = cli.json("predict", good, "-m", "resnet18", "--weights", golden_weights)
    assert again["uploads"][0]["status"] == "duplicate" and again["done"] == 1
    assert cli.sql("SELECT COUNT(*) FROM predictions") == [(1,)]  # one prediction per image per model
    quiet = cli("predict", good, broken, "-m", "resnet18", "--weights", golden_weights, "-q", expect=1)
    assert "broken.jpg" in quiet.stdout and "1 predicted, 0 failed, 1 refused" in quiet.stdout
    for fmt, rows in (("--csv", 0), ("--csv", 1), ("--nl", 1)):
        args = (broken,) if rows == 0 else (good, broken)
        result = cli("predict", *args, "-m", "resnet18", "--weights", golden_weights, fmt, expect=1)
        assert "broken.jpg" in result.stderr and "broken" not in result.stdout
        if fmt == "--csv":
            parsed = list(csv.reader(io.StringIO(result.stdout)))
            assert parsed[0] == csv_fields(3) and len(parsed) == rows + 1  # top1, p1, ... flat, also when empty
        else:
            assert list(json.loads(result.stdout)) == list(RESULT_FIELDS)


def test_predict_all_on_an_empty_store_says_to_add_pictures(cli, golden_weights):
    result = cli("predict", "--all", "-m", "resnet18", "--weights", golden_weights)
    assert "the store has no images yet; add some with 'dogbreed upload PATH'" in result.stdout


def test_paths_and_stored_ids_do_not_mix(cli, tmp_path, golden_weights):
    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    result = cli("predict", photo, "--all", "-m", "resnet18", "--weights", golden_weights, expect=1)
    assert "choose one of" in result.output
    assert cli.sql("SELECT COUNT(*) FROM images") == [(0,)] and cli.sql("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_with_no_model_anywhere_the_default_ready_model_is_used_and_offline_names_the_file(cli, tmp_path, home):
    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    result = cli("predict", photo, expect=1)
    err = result.stderr
    assert "cannot download resnet50 weights (IMAGENET1K_V2)" in err and "resnet50-11ad3fa6.pth" in err
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in err
    assert "--weights FILE" in err and "Traceback" not in result.output


def test_weights_that_do_not_fit_the_architecture_are_one_line(cli, tmp_path, golden_weights):
    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    result = cli("predict", photo, "-m", "efficientnet_b0", "--weights", golden_weights, expect=1)
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "does not fit efficientnet_b0" in line and "unexpected key" in line


def test_pinning_the_default_model(cli, tmp_path, golden_weights, checkpoint):
    photo = write(tmp_path / "a.jpg", jpeg_bytes(seed=1))
    cli("upload", photo)
    cli("models", "--default", str(checkpoint), "--json")
    out = cli.json("predict", "--all")
    assert out["model"] == checkpoint.name and "pinned" in out["reason"]
    assert "--weights goes with --default ARCH" in cli("models", "--weights", golden_weights, expect=1).stderr
    listing = cli.json("models", "--default", "auto")
    assert listing["default"]["kind"] == "ready" and listing["default"]["model"].startswith("resnet50")
