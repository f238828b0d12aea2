"""Training precision (issue 21): whatever precision the training step runs at, validation (checkpoint selection)
and the recorded test accuracy are what the reference fp32 engine gives of the saved weights, the numbers `predict`
and `eval` reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dogbreed.datasets.synthetic import make_synthetic

FINETUNE = ["--no-pretrained", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0"]
EXTRACTOR = ["--random-backbone", "--image-size", "32", "--batch-size", "16", "--loader-workers", "0"]
NATIVE_BF16 = "avx512f,avx512_bf16,amx_bf16"  # DOGBREED_CPU_FEATURES: a CPU that computes bf16 natively
TOLERANCE = 1e-5  # relative: fp32 in training against fp32 in the engine (batching, kernels)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    """Three synthetic breeds with official-style lists: a validation split of a few images per breed."""
    root = tmp_path_factory.mktemp("stripes") / "synthetic"
    make_synthetic(root, breeds=3, per_class=24, size=(40, 32), lists=True, seed=5)
    return root


def reference_scoring(checkpoint: Path, root: Path, split: str, seed: int) -> tuple[float, float, float]:
    """A saved checkpoint on a split made as training made it: (mean cross-entropy, accuracy) as the torch fp32
    engine (the reference `predict` and `eval` use) computes them, and the mean cross-entropy of the same model
    under bf16 autocast, which shows whether the comparison can tell the two apart."""
    import torch

    from dogbreed import engines
    from dogbreed.datasets import open_dataset
    from dogbreed.datasets.loaders import DatasetImages, EvalTransform, loader
    from dogbreed.evaluate import score
    from dogbreed.models import sources
    from dogbreed.models.build import load_checkpoint

    data = open_dataset(root, seed=seed, require=(split,))
    engine = engines.open_engine(None, sources.from_checkpoint(checkpoint), "cpu", "torch", "fp32")
    images = DatasetImages(data.index, data.part(split), EvalTransform(engine.spec.preprocessing))
    scored = score(engine, loader(images, 16, workers=0))
    truth = scored.probs[np.arange(len(scored.y_true)), scored.y_true]
    model, _ = load_checkpoint(checkpoint)
    batches = list(loader(images, 16, workers=0))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.cat([model(b.x).float() for b in batches])
    bf16 = torch.nn.functional.cross_entropy(logits, torch.cat([b.y for b in batches])).item()
    return float(-np.log(truth).mean()), float((scored.probs.argmax(1) == scored.y_true).mean()), bf16


@pytest.mark.parametrize("recipe", [FINETUNE, EXTRACTOR], ids=["finetune", "extractor"])
def test_a_bf16_run_validates_and_tests_in_fp32(cli, stripes, monkeypatch, recipe):
    """A run at bf16 records, for its best epoch, the validation loss the fp32 engine computes from the checkpoint
    it kept (not the one bf16 autocast gives: the test checks it can tell them apart), and the test accuracy that
    engine gives."""
    monkeypatch.setenv("DOGBREED_CPU_FEATURES", NATIVE_BF16)
    out = cli.json("train", "--dataset", stripes, "--epochs", 2, "--seed", 4, "--lr", "1e-3", "--no-check", *recipe)
    run = cli.json("stats", out["run_id"])
    assert out["precision"] == "bf16" and run["precision"] == "bf16"
    best = next(e for e in run["epochs"] if e["epoch"] == out["best_epoch"])
    checkpoint = Path(run["checkpoint_path"])
    val_loss, val_acc, bf16_val_loss = reference_scoring(checkpoint, stripes, "val", seed=4)
    assert abs(bf16_val_loss - val_loss) > 10 * TOLERANCE * val_loss  # bf16 scoring would not pass the next line
    assert best["val_loss"] == pytest.approx(val_loss, rel=TOLERANCE)
    assert best["val_acc"] == pytest.approx(val_acc)
    _, test_acc, _ = reference_scoring(checkpoint, stripes, "test", seed=4)
    assert out["test"]["accuracy"] == pytest.approx(test_acc) == run["test_acc"]
