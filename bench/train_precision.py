"""Training at bf16 against fp32 on this machine: images per second of dogbreed's own training step, and the loss
curves of real training runs on the synthetic set.

    python bench/train_precision.py [--quick] [--json results.json]

Throughput: ``train._train_epoch`` (autocast, loss, backward, AdamW step, metrics: the loop ``dogbreed train``
runs) over pre-decoded batches, so decoding does not hide the arithmetic. fp32 and bf16 are measured back to back
in each round (alternating which goes first) and the figure is the median of the per-round bf16 / fp32 ratios:
the machine is shared and noisy, and a pair sees the same load. Loss curves: ``train`` end to end, finetuning from
scratch, fp32 and bf16 with the same seed, and fp32 with a second seed as the yardstick: two runs drift apart
anyway (rounding, then chaos), so bf16 is close when its gap to fp32 is no larger than that drift.

``section_rows(work, quick, row)`` is the entry point for a suite that prints its own table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Row = Callable[[str, str, str, str], None]
ROWS: list[tuple[str, str, str, str]] = []


def print_row(section: str, figure: str, value: str, target: str = "") -> None:
    ROWS.append((section, figure, value, target))
    print(f"  {section:<10} {figure:<62} {value:>16}  {target}", flush=True)


def machine_line() -> str:
    import torch

    from dogbreed.mixed_precision import NATIVE_BF16_FLAGS, cpu_features

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native = sorted(cpu_features() & NATIVE_BF16_FLAGS) or ["none"]
    return (
        f"{model}, {os.cpu_count()} cores, native bf16: {', '.join(native)}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


# ---------------------------------------------------------------- 1. throughput of the training step


def step_throughput(arch: str, size: int, batch: int, steps: int, rounds: int) -> list[tuple[float, float]]:
    """(fp32, bf16) images per second of the training loop, one pair per round, the two measured back to back
    (alternating which goes first) so that both see the same machine load."""
    import torch

    from dogbreed.distributed import SINGLE
    from dogbreed.imagesets import Batch
    from dogbreed.mixed_precision import Precision
    from dogbreed.models.build import build_model
    from dogbreed.train import Listener, _train_epoch

    torch.manual_seed(0)
    device = torch.device("cpu")
    batches = [Batch(torch.randn(batch, 3, size, size), torch.randint(0, 120, (batch,)), [], []) for _ in range(steps)]
    models = {}
    for name in ("fp32", "bf16"):
        model = build_model(arch, "finetune", 120)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        models[name] = (model, optimizer, Precision(name, "cpu", name))
        _train_epoch(model, batches[:1], optimizer, device, Listener(), set(), models[name][2], None, SINGLE)  # warm

    def rate(name: str) -> float:
        model, optimizer, precision = models[name]
        start = time.perf_counter()
        _train_epoch(model, batches, optimizer, device, Listener(), set(), precision, None, SINGLE)
        return steps * batch / (time.perf_counter() - start)

    pairs = []
    for i in range(rounds):
        if i % 2:
            bf16 = rate("bf16")
            fp32 = rate("fp32")
        else:
            fp32 = rate("fp32")
            bf16 = rate("bf16")
        pairs.append((fp32, bf16))
    return pairs


# ---------------------------------------------------------------- 2. loss curves of real runs


def loss_curves(work: Path, quick: bool) -> dict[str, list[dict]]:
    """Three ``dogbreed train`` runs on the synthetic set (finetune from scratch): fp32 and bf16 with the same seed,
    and fp32 with another seed, which measures how far two runs drift apart anyway."""
    from dogbreed.store import open_store
    from dogbreed.synthetic import make_synthetic
    from dogbreed.train import TrainConfig, train

    data = work / "synthetic"
    make_synthetic(data, breeds=6, per_class=24 if quick else 40, size=(96, 72), seed=0)
    db = work / "bench.db"
    open_store(db).close()
    curves = {}
    for label, precision, seed in (("fp32", "fp32", 0), ("bf16", "bf16", 0), ("fp32 seed 1", "fp32", 1)):
        config = TrainConfig(
            dataset=data,
            checkpoints_dir=work / "checkpoints",
            model="resnet18",
            mode="finetune",
            epochs=3 if quick else 6,
            batch=16,
            lr=1e-3,
            image_size=64,
            pretrained=False,
            workers=0,
            seed=seed,
            save=False,
            precision=precision,
        )
        result = train(config, db)
        curves[label] = {"epochs": result.epochs, "test_acc": result.test["accuracy"]}
    return curves


def _mean_gap(a: list[dict], b: list[dict], key: str) -> float:
    return statistics.mean(abs(x[key] - y[key]) for x, y in zip(a, b))


def section_rows(work: Path, quick: bool, row: Row = print_row) -> dict:
    arch, size, batch = "resnet18", (128 if quick else 224), 16
    steps, rounds = (2, 4) if quick else (2, 7)
    pairs = step_throughput(arch, size, batch, steps, rounds)
    ratios = sorted(b / f for f, b in pairs)
    where = f"{arch} finetune, {size} px, batch {batch}"
    row("precision", f"training step, fp32 ({where}), median", f"{statistics.median(f for f, _ in pairs):.1f} img/s")
    row("precision", "training step, bf16 autocast, median", f"{statistics.median(b for _, b in pairs):.1f} img/s")
    row(
        "precision",
        f"  bf16 / fp32, median of {rounds} back-to-back pairs (range)",
        f"{statistics.median(ratios):.2f}x",
        f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x; fp32 = 1",
    )

    curves = loss_curves(work, quick)
    fp32, bf16, other = (curves[k]["epochs"] for k in ("fp32", "bf16", "fp32 seed 1"))
    for a, b, c in zip(fp32, bf16, other):
        row(
            "precision",
            f"  epoch {a['epoch']}: train loss fp32 / bf16 / fp32 seed 1",
            f"{a['train_loss']:.3f} / {b['train_loss']:.3f} / {c['train_loss']:.3f}",
            f"val acc {a['val_acc']:.0%} / {b['val_acc']:.0%} / {c['val_acc']:.0%}",
        )
    gap, noise = _mean_gap(fp32, bf16, "train_loss"), _mean_gap(fp32, other, "train_loss")
    row(
        "precision",
        "loss curves: mean train-loss gap fp32 vs bf16 (same seed)",
        f"{gap:.3f}",
        f"vs {noise:.3f} between two fp32 seeds",
    )
    tests = " / ".join(f"{curves[k]['test_acc']:.1%}" for k in ("fp32", "bf16", "fp32 seed 1"))
    row("precision", "  test accuracy fp32 / bf16 / fp32 seed 1", tests, "")
    return {"throughput_pairs": pairs, "curves": curves}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer rounds and epochs")
    parser.add_argument("--json", type=Path, help="also write the figures (and both loss curves) here")
    args = parser.parse_args()
    print(f"machine: {machine_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dogbreed-bench-precision-") as tmp:
        details = section_rows(Path(tmp), args.quick)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_line(), "rows": ROWS, **details}, indent=2))
    print("\n| section | figure | value | target / baseline |\n|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
