"""Engines and the auto choice: every engine agrees with the fp32 torch reference on a tiny trained model, auto
stays at fp32 until a recorded check allows more (and whenever CPU feature detection is forced off), and the
OpenVINO engine converts a checkpoint once and then runs it without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dogbreed.engines import Choice, choose, cpu, guard, load_engine
from tests.tiny_model import TinyModel, tiny_model

NO_TORCH = (
    "import sys\n"
    "sys.modules['torch'] = None  # any 'import torch' now fails\n"
    "sys.modules['torchvision'] = None\n"
    "from dogbreed.cli import main\n"
    "sys.argv = ['dogbreed', *sys.argv[1:]]\n"
    "main()\n"
)


def run_without_torch(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`dogbreed ARGS` in a fresh interpreter in which importing torch raises ImportError."""
    env = {**os.environ, "DOGBREED_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModel:
    return tiny_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def test_images(tiny) -> list[Path]:
    from dogbreed.dataset import make_splits, scan

    index = scan(tiny.dataset)
    return [index.images_dir / s.path for s in make_splits(index).test][:48]


def top1(engine, files: list[Path]) -> np.ndarray:
    from dogbreed.imaging import preprocess

    batch = np.stack([preprocess(f.read_bytes(), engine.spec.preprocessing) for f in files])
    return engine.predict(batch).probs.argmax(axis=1)


# ---------------------------------------------------------------- CPU features


def test_feature_detection_can_be_forced_off_or_on(monkeypatch):
    monkeypatch.setenv(cpu.ENV, "none")
    found = cpu.detect()
    assert (found.bf16, found.vnni, found.amx, found.forced) == (False, False, False, True)
    assert cpu.native_bf16(library_says=True) == (False, f"no native bf16 ({cpu.ENV}=none)")
    monkeypatch.setenv(cpu.ENV, "avx512f, avx512_bf16, avx512_vnni")  # a flag list, as training reads it too
    assert (cpu.detect().bf16, cpu.detect().vnni, cpu.detect().amx) == (True, True, False)
    from dogbreed.mixed_precision import cpu_has_native_bf16

    assert cpu_has_native_bf16()  # training and inference agree on what the variable means
    monkeypatch.setenv(cpu.ENV, "avx2 fma")
    assert (cpu.detect().bf16, cpu.detect().vnni) == (False, False) and not cpu_has_native_bf16()


def test_detection_reads_the_flags_that_mean_native_bf16_and_vnni(monkeypatch):
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    sapphire = cpu._from_flags({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"}, "test")
    skylake = cpu._from_flags({"avx2", "avx512f", "avx512bw"}, "test")
    alder = cpu._from_flags({"avx2", "avx_vnni"}, "test")
    assert (sapphire.bf16, sapphire.vnni, sapphire.amx) == (True, True, True)
    assert (skylake.bf16, skylake.vnni, skylake.amx) == (False, False, False)  # AVX-512 alone emulates bf16
    assert (alder.bf16, alder.vnni) == (False, True)
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")
    graviton3 = cpu._from_flags({"asimd", "bf16", "i8mm", "asimddp"}, "test")
    assert (graviton3.bf16, graviton3.vnni) == (True, True)


# ---------------------------------------------------------------- engines agree with the reference


def test_every_engine_and_precision_gives_the_torch_fp32_top1(tiny, test_images, tmp_path, monkeypatch):
    monkeypatch.setenv("DOGBREED_HOME", str(tmp_path / "home"))
    from dogbreed.models import sources

    source = sources.from_checkpoint(tiny.checkpoint)
    reference = load_engine(source, Choice("torch", "fp32", "cpu"))
    expected = top1(reference, test_images)
    labels = [f.parent.name.split("-")[0] for f in test_images]
    assert np.mean(np.array(reference.spec.classes)[expected] == np.array(labels)) >= 0.9  # it learnt something
    for engine, precision in (("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")):
        got = top1(load_engine(source, Choice(engine, precision, "cpu")), test_images)
        assert (got == expected).all(), (engine, precision)


def test_openvino_gives_the_same_probabilities_in_forked_workers_as_in_process(cli, tiny, uploaded):
    ids = uploaded(40)
    inline = cli.json("predict", "--all", "-c", tiny.checkpoint, "--engine", "openvino", "--workers", "0", "-b", "8")
    forked = cli.json("predict", "--all", "-c", tiny.checkpoint, "--engine", "openvino", "--workers", "2", "-b", "8")
    assert inline["done"] == forked["done"] == len(ids) and forked["engine"] == "openvino"

    def probs(out):
        return {r["image_id"]: [t["probability"] for t in r["top"]] for r in out["results"]}

    a, b = probs(inline), probs(forked)
    assert a.keys() == b.keys()
    assert max(abs(x - y) for i in a for x, y in zip(a[i], b[i])) < 1e-6


def test_openvino_converts_a_checkpoint_once_then_runs_it_without_torch(cli, home, tiny, uploaded):
    uploaded(3)
    first = cli.json("predict", "--all", "-c", tiny.checkpoint, "--engine", "openvino")
    cached = list((home / "cache" / "openvino").glob("*/model.xml"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    proc = run_without_torch(home, "predict", "--all", "-c", str(tiny.checkpoint), "--engine", "openvino", "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert cached[0].stat().st_mtime_ns == stamp  # not converted again
    assert [r["top"][0]["breed"] for r in again["results"]] == [r["top"][0]["breed"] for r in first["results"]]
    torch_path = run_without_torch(home, "predict", "--all", "-c", str(tiny.checkpoint), "--engine", "torch")
    assert torch_path.returncode != 0  # the guard really blocks torch: the run above did not need it


# ---------------------------------------------------------------- the auto choice and its guard


def test_auto_stays_at_fp32_without_a_check_and_says_how_to_get_one(cli, tiny, uploaded):
    uploaded(2)
    out = cli.json("predict", "--all", "-c", tiny.checkpoint)
    assert (out["engine"], out["precision"]) == ("torch", "fp32")
    assert (
        "not checked yet" in out["engine_note"]
        and f"dogbreed check --checkpoint {tiny.checkpoint}" in out["engine_note"]
    )
    assert {tuple(r) for r in cli.sql("SELECT engine, precision FROM predictions")} == {("torch", "fp32")}


def test_a_recorded_check_lets_auto_pick_the_fastest_choice_and_forcing_features_off_keeps_fp32(
    cli, tiny, uploaded, monkeypatch
):
    uploaded(2)
    out = cli.json("check", "-c", tiny.checkpoint, "--dataset", tiny.dataset)
    assert out["data"].startswith("104 of 104 images of the test split")
    measured = {(c["engine"], c["precision"]): c for c in out["checks"]}
    assert ("openvino", "fp32") in measured
    assert all(c["n"] == 104 and c["labelled"] == 104 and c["agreement"] >= 0.99 for c in measured.values())
    stored = cli.sql("SELECT engine, precision, device, n, labelled FROM engine_checks")
    assert {(e, p) for e, p, *_ in stored} == set(measured) and all(d == "cpu" for _, _, d, _, _ in stored)

    monkeypatch.setenv(cpu.ENV, "none")  # no bf16, no VNNI: fp32, on the fastest checked engine
    off = cli.json("predict", "--all", "-c", tiny.checkpoint)
    assert (off["engine"], off["precision"]) == ("openvino", "fp32"), off["engine_note"]
    assert "100.0% top-1 agreement with fp32 on 104 images" in off["engine_note"]
    assert "no native bf16" in off["engine_note"]

    if ("openvino", "bf16") in measured:  # this CPU has native bf16: auto takes it
        monkeypatch.delenv(cpu.ENV)
        on = cli.json("predict", "--all", "-c", tiny.checkpoint)
        assert (on["engine"], on["precision"]) == ("openvino", "bf16"), on["engine_note"]
        assert {tuple(r) for r in cli.sql("SELECT DISTINCT engine, precision FROM predictions")} == {
            ("openvino", "bf16")
        }


def test_the_guard_refuses_low_agreement_and_too_few_images(cli, tiny, monkeypatch):
    from dogbreed.models import sources
    from dogbreed.store import open_store
    from dogbreed.store.evaluations import add_check, checks_for

    monkeypatch.setenv(cpu.ENV, "avx512_bf16")
    source = sources.from_checkpoint(tiny.checkpoint)
    conn = open_store(cli.db)
    add_check(conn, model_key=source.key, engine="openvino", precision="bf16", data="t", n=500, agreement=0.97)
    add_check(conn, model_key=source.key, engine="torch", precision="bf16", data="t", n=60, agreement=1.0)
    add_check(conn, model_key=source.key, engine="openvino", precision="fp32", data="t", n=500, agreement=0.999)
    choice = choose(source, "cpu", checks=checks_for(conn, source.key))
    assert (choice.engine, choice.precision) == ("openvino", "fp32")
    assert "97.0% top-1 agreement with fp32 on 500 images, under the 99% guard" in choice.note
    assert "checked on only 60 images" in choice.note
    # a newer measurement replaces an older one
    add_check(conn, model_key=source.key, engine="openvino", precision="bf16", data="t", n=500, agreement=0.995)
    assert choose(source, "cpu", checks=checks_for(conn, source.key)).precision == "bf16"
    # explicit requests are honoured whatever the checks say
    explicit = choose(source, "cpu", "torch", "fp32", checks_for(conn, source.key))
    assert (explicit.engine, explicit.precision) == ("torch", "fp32")


def test_int8_guard_needs_a_measured_accuracy_drop_of_at_most_one_point():
    from dogbreed.store.evaluations import EngineCheck

    def check(ref, acc, labelled):
        return EngineCheck(1, "k", "openvino", "int8", "t", "d", 500, 0.99, ref, acc, "now", "cpu", labelled)

    assert guard.verdict(check(0.90, 0.895, 400), "int8")[0]
    assert not guard.verdict(check(0.90, 0.885, 400), "int8")[0]
    assert "no labelled images" in guard.verdict(check(None, None, 0), "int8")[1]
    assert "only 50 labelled" in guard.verdict(check(0.9, 0.9, 50), "int8")[1]


def test_engine_and_precision_mistakes_are_one_line_errors(cli, tiny, uploaded):
    uploaded(1)
    for args, text in (
        (["--engine", "tensorflow"], "unknown engine 'tensorflow'"),
        (["--precision", "fp8"], "unknown precision 'fp8'"),
        (["--precision", "int8"], "int8 runs on quantized exports"),
        (["--precision", "fp16"], "fp16 needs a CUDA GPU"),
    ):
        result = cli("predict", "--all", "-c", tiny.checkpoint, *args, expect=1)
        assert text in result.stderr and "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_bf16_requested_on_a_cpu_without_it_runs_with_a_warning(cli, tiny, uploaded, monkeypatch):
    """An explicit precision is honoured, with or without an explicit engine: no engine claims emulated bf16, so
    auto falls back to torch and says why it will be slow."""
    uploaded(1)
    monkeypatch.setenv(cpu.ENV, "none")
    for engine in (["--engine", "torch"], []):
        result = cli("predict", "--all", "-c", tiny.checkpoint, "--precision", "bf16", *engine)
        assert "bf16 is emulated on this CPU and slower than fp32" in result.stderr
        assert cli.json("show", 1)["predictions"][0]["precision"] == "bf16"


def test_the_conversion_cache_keeps_only_the_most_recently_used(tmp_path):
    import time

    from dogbreed.engines.convert import _prune

    for i in range(10):
        (tmp_path / f"model{i}").mkdir()
        os.utime(tmp_path / f"model{i}", (time.time() - 100 + i, time.time() - 100 + i))
    (tmp_path / ".converting-old").mkdir()
    os.utime(tmp_path / ".converting-old", (time.time() - 7200, time.time() - 7200))
    (tmp_path / ".converting-now").mkdir()
    _prune(tmp_path, keep=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".converting-now"] + [f"model{i}" for i in range(2, 10)]


def test_check_list_shows_what_was_recorded_for_the_model_and_its_exports(cli, tiny, tmp_path):
    assert cli.json("check", "-c", tiny.checkpoint, "--list")["checks"] == []
    assert "none yet" in cli("check", "-c", tiny.checkpoint, "--list").stdout
    cli("export", tiny.checkpoint, "-o", tmp_path / "e.xml", "--dataset", tiny.dataset, "-n", "20")
    listed = cli.json("check", "-c", tiny.checkpoint, "--list")["checks"]
    assert listed and all(c["target"].startswith("export ") and c["n"] == 20 for c in listed)
    expected = "no: checked on only 20 images (the guard needs 100: check again with --dataset DIR)"
    assert all(c["auto"] == expected for c in listed)
    csv_lines = cli("check", "-c", tiny.checkpoint, "--list", "--csv").stdout.splitlines()
    assert len(csv_lines) == len(listed) + 1 and "auto" in csv_lines[0].split(",")
    nl = [json.loads(line) for line in cli("check", "-c", tiny.checkpoint, "--list", "--nl").stdout.splitlines()]
    assert [c["target"] for c in nl] == [c["target"] for c in listed]
