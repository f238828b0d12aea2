"""dogbreed export: the exported file predicts on its own (no checkpoint, no torch), carries its description,
keeps a ready model's dog probability, is checked against the fp32 model, and refuses bad input in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dogbreed.errors import DogbreedError
from dogbreed.formats.export import ExportMeta
from dogbreed.imaging import Preprocessing
from tests.test_engines import run_without_torch
from tests.tiny_model import TinyModel, tiny_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModel:
    return tiny_model(tmp_path_factory.getbasetemp())


def own_copy(tiny: TinyModel, tmp_path: Path) -> Path:
    """A copy of the trained checkpoint that the test may delete."""
    copy = tmp_path / "mine.pt"
    shutil.copy(tiny.checkpoint, copy)
    return copy


def top1s(out: dict) -> dict[int, str]:
    return {r["image_id"]: r["top"][0]["breed"] for r in out["results"]}


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_an_export_predicts_without_its_checkpoint_and_without_torch(cli, home, tiny, tmp_path, fmt):
    ckpt = own_copy(tiny, tmp_path)
    from dogbreed.formats.checkpoint import read_checkpoint

    files = sorted(tiny.dataset.glob("Images/*/*_0000[0-2].jpg"))
    cli("upload", *files, "--label-from-folder")
    expected = top1s(cli.json("predict", "--all", "-c", ckpt))
    target = tmp_path / "out" / ("tiny.xml" if fmt == "openvino" else "tiny.onnx")
    out = cli.json("export", ckpt, "--format", fmt, "--output", target, "--dataset", tiny.dataset)
    assert out["path"] == str(target) and all(Path(f).is_file() for f in out["files"])
    assert out["classes"] == read_checkpoint(ckpt)[0].wnids  # the class list travels with the file
    assert out["preprocessing"]["crop_size"] == 32 and out["has_dog"] is False and out["precision"] == "fp32"
    check = {c["precision"]: c for c in out["checks"]}["fp32"]
    assert check["engine"] == "openvino" and check["n"] == 104 and check["agreement"] == 1.0
    ckpt.unlink()  # the export must not need it
    proc = run_without_torch(home, "predict", "--all", "-c", str(target), "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["engine"] == "openvino" and got["model_key"] == out["key"]
    assert top1s(got) == expected


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_int8_export_is_calibrated_on_training_images_checked_on_test_images_and_run_by_auto(cli, tiny, tmp_path, fmt):
    cli("upload", *sorted(tiny.dataset.glob("Images/*/*_0000[0-1].jpg")), "--label-from-folder")
    args = ["--int8", "--format", fmt, "-o", tmp_path, "--dataset", tiny.dataset, "--calibration", "64"]
    out = cli.json("export", tiny.checkpoint, *args)
    suffix = ".xml" if fmt == "openvino" else ".onnx"
    assert out["precision"] == "int8" and Path(out["path"]).name == f"tiny-run1-int8{suffix}"
    assert out["calibration"].startswith("64 of 280 images of the training split")
    assert out["check_data"].startswith("104 of 104 images of the test split")
    (check,) = out["checks"]
    assert check["precision"] == "int8" and check["labelled"] == 104
    assert check["agreement"] >= 0.99  # int8 gives the torch fp32 top-1 on the test images
    assert check["reference_accuracy"] - check["accuracy"] <= 0.01  # a confident model loses nothing
    assert check["auto"].startswith("yes")
    row = cli.sql("SELECT model_key, target_key, precision, labelled FROM engine_checks")
    assert row == [(out["source_key"], out["key"], "int8", 104)]
    run = cli.json("predict", "--all", "-c", out["path"])
    assert (run["engine"], run["precision"]) == ("openvino", "int8") and run["done"] == 8
    assert "a drop of 0.0 points" in run["engine_note"]
    assert {tuple(r) for r in cli.sql("SELECT DISTINCT engine, precision FROM predictions")} == {("openvino", "int8")}


def test_auto_refuses_an_int8_export_without_a_measured_accuracy_and_says_how_to_run_it(cli, tiny, tmp_path):
    cli("upload", *sorted(tiny.dataset.glob("Images/*/*_0000[0-9].jpg")))  # 40 stored, unlabelled
    out = cli.json("export", tiny.checkpoint, "--int8", "-o", tmp_path / "q.xml", "--calibration", "16")
    assert "stored images" in out["calibration"] and "stored images" in out["check_data"]
    assert out["checks"][0]["labelled"] == 0 and out["checks"][0]["auto"].startswith("no")
    refused = cli("predict", "--all", "-c", out["path"], expect=1)
    assert "auto does not run the int8 model q.xml" in refused.stderr and "--precision int8" in refused.stderr
    forced = cli.json("predict", "--all", "-c", out["path"], "--precision", "int8")
    assert forced["done"] == 40 and "unguarded" in forced["engine_note"]


def test_a_ready_model_export_keeps_the_dog_probability(cli, home, golden_weights, teapot_weights, tmp_path):
    from tests.images import jpeg_bytes, write

    write(tmp_path / "pics" / "a.jpg", jpeg_bytes(size=(80, 60), seed=5))
    cli("upload", tmp_path / "pics")
    for weights, breed, dog in ((golden_weights, "Golden retriever", True), (teapot_weights, None, False)):
        target = tmp_path / f"{weights.stem}.xml"
        out = cli.json("export", "--model", "resnet18", "--weights", weights, "-o", target, "--no-check")
        assert out["has_dog"] is True and len(out["classes"]) == 120 and out["check_skipped"] == "--no-check"
        proc = run_without_torch(home, "predict", "--all", "-c", str(target), "--json")
        assert proc.returncode == 0, proc.stderr
        (result,) = json.loads(proc.stdout)["results"]
        assert result["not_a_dog"] is (not dog)
        assert (result["dog_probability"] > 0.99) if dog else (result["dog_probability"] < 0.01)
        if breed:
            assert result["top"][0]["breed"] == breed


def test_an_output_without_a_suffix_is_a_folder_made_when_missing(cli, tiny, tmp_path):
    out = cli.json("export", tiny.checkpoint, "-o", tmp_path / "new" / "exports", "--no-check")
    written = sorted(Path(f) for f in out["files"])
    assert [f.suffix for f in written] == [".bin", ".xml"] and all(f.is_file() for f in written)
    assert {f.parent for f in written} == {tmp_path / "new" / "exports"}


def test_export_mistakes_are_one_line_errors(cli, tiny, tmp_path):
    def error(*args: str) -> str:
        result = cli(*args, expect=1)
        assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.output
        return result.stderr

    assert "--output x.onnx has the .onnx suffix" in error("export", tiny.checkpoint, "-o", "x.onnx")
    assert "an openvino export is a .xml file" in error("export", tiny.checkpoint, "-o", tmp_path / "x.bin")
    assert "unknown format 'tflite'" in error("export", tiny.checkpoint, "--format", "tflite")
    assert "does not exist" in error("export", tmp_path / "missing.pt")
    assert "no training run with id 7" in error("export", "7")
    assert "int8 calibration needs at least 16 images and found 0" in error("export", tiny.checkpoint, "--int8")
    assert "name the model once" in error("export", "3", "--model", "resnet18")
    assert "--calibration is for int8 exports" in error("export", tiny.checkpoint, "--calibration", "50")


def test_foreign_or_tampered_model_files_are_refused_in_one_line(cli, tiny, tmp_path, uploaded):
    uploaded(1)
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    assert "cannot be read as an OpenVINO or ONNX model" in cli("predict", "--all", "-c", text, expect=1).stderr
    out = cli.json("export", tiny.checkpoint, "-o", tmp_path / "good.xml", "--no-check")
    xml = Path(out["path"]).read_text()
    marker = "n02085620"
    assert marker in xml
    tampered = tmp_path / "tampered.xml"
    tampered.write_text(xml.replace(marker, "n99999999"))
    shutil.copy(tmp_path / "good.bin", tmp_path / "tampered.bin")
    err = cli("predict", "--all", "-c", tampered, expect=1).stderr
    assert "invalid dogbreed description" in err and "not one of the 120 Stanford breeds" in err
    lonely = tmp_path / "lonely.xml"  # an IR whose weights file is missing
    lonely.write_text(xml)
    assert "bin file cannot be found" in cli("predict", "--all", "-c", lonely, expect=1).stderr
    plain = tmp_path / "plain.xml"
    plain.write_text(xml[: xml.index("<rt_info>")] + xml[xml.index("</rt_info>") + len("</rt_info>") :])
    shutil.copy(tmp_path / "good.bin", tmp_path / "plain.bin")
    assert "is not a dogbreed export" in cli("predict", "--all", "-c", plain, expect=1).stderr


def test_export_description_is_validated_field_by_field():
    meta = ExportMeta([["n02085620", "x"], ["n02085782", "y"]], Preprocessing(), True, "int8", "key", "name")
    again = ExportMeta.from_json(meta.to_json(), "f")
    assert again.wnids == ("n02085620", "n02085782") and again.classes[0][1] == "Chihuahua"  # names from our table
    assert again.preprocessing == Preprocessing() and again.precision == "int8"
    good = json.loads(meta.to_json())
    for change, problem in (
        ({"version": 99}, "newer dogbreed"),
        ({"format": "other"}, "no dogbreed-export marker"),
        ({"classes": [["n02085620", "x"]]}, "2 to 1000"),
        ({"classes": [["n02085620", "x"], ["n02085620", "x"]]}, "names a breed twice"),
        ({"precision": "fp64"}, "'precision' must be one of"),
        ({"has_dog": "yes"}, "'has_dog'"),
        ({"preprocessing": {**good["preprocessing"], "crop_size": 10**6}}, "'crop_size' must be"),
        ({"preprocessing": {**good["preprocessing"], "std": [0, 1, 1]}}, "above 0"),
        ({"preprocessing": {**good["preprocessing"], "interpolation": "lanczos9"}}, "'interpolation'"),
    ):
        with pytest.raises(DogbreedError, match=problem):
            ExportMeta.from_json(json.dumps({**good, **change}), "f")
    with pytest.raises(DogbreedError, match="not JSON"):
        ExportMeta.from_json("{", "f")


def test_an_export_can_be_the_pinned_default_and_a_broken_one_cannot(cli, tiny, tmp_path, uploaded):
    uploaded(2)
    out = cli.json("export", tiny.checkpoint, "-o", tmp_path / "pinned.xml", "--no-check")
    cli("models", "--default", out["path"])
    run = cli.json("predict", "--all")
    assert run["model_key"] == out["key"] and run["engine"] == "openvino" and run["done"] == 2
    broken = tmp_path / "broken.xml"
    broken.write_text("<net/>")
    assert "cannot be read as an OpenVINO or ONNX model" in cli("models", "--default", broken, expect=1).stderr
    assert cli.json("predict", "--all")["model_key"] == out["key"]  # the good pin stays
