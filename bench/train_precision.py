"""Training at bf16 against fp32 on this machine: images per second of dogbreed's own training step, and the TEST
accuracy of real training runs on a synthetic proxy at ``--precision fp32`` and ``--precision auto``, several seeds.

    python bench/train_precision.py [--quick] [--json results.json]

Throughput: ``train.loops.Loop.train_epoch`` (autocast, loss, backward, AdamW step, metrics: the loop ``dogbreed train``
runs) over pre-decoded batches, so decoding does not hide the arithmetic. fp32 and bf16 are measured back to back
in each round (alternating which goes first) and the figure is the median of the per-round bf16 / fp32 ratios:
the machine is shared and noisy, and a pair sees the same load. Test accuracy: ``dogbreed train`` end to end
(the real CLI in a subprocess, its own DOGBREED_HOME) on ``dogbreed dataset synthetic --breeds 12`` (a proxy
that does not saturate at 100%), finetuning resnet18 from scratch at 64 px for 8 epochs, seeds 0 to 4, at
``--precision fp32`` and ``--precision auto``: per seed test accuracy, mean, min, and the training seconds.
``--quick``: one seed, 2 epochs (a smoke run, not a measurement). The full section takes ~6 min on 2 quiet cores,
about three times that on a contended machine.

``section_rows(work, quick, row)`` is the entry point for a suite that prints its own table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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

    from dogbreed.engines.cpu import native_bf16_flags

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native = list(native_bf16_flags()) or ["none"]
    return (
        f"{model}, {os.cpu_count()} cores, native bf16: {', '.join(native)}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


# ---------------------------------------------------------------- 1. throughput of the training step


def step_throughput(arch: str, size: int, batch: int, steps: int, rounds: int) -> list[tuple[float, float]]:
    """(fp32, bf16) images per second of the training loop, one pair per round, the two measured back to back
    (alternating which goes first) so that both see the same machine load."""
    import torch

    from dogbreed.datasets.loaders import Batch
    from dogbreed.models.build import build_model
    from dogbreed.train import Listener
    from dogbreed.train.distributed import SINGLE
    from dogbreed.train.loops import Loop
    from dogbreed.train.precision import Precision

    torch.manual_seed(0)
    device = torch.device("cpu")
    batches = [Batch(torch.randn(batch, 3, size, size), torch.randint(0, 120, (batch,)), [], []) for _ in range(steps)]
    models = {}
    for name in ("fp32", "bf16"):
        model = build_model(arch, "finetune", 120)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        models[name] = (model, optimizer, Precision(name, "cpu", name))
        Loop(device, Listener(), models[name][2], SINGLE).train_epoch(model, batches[:1], optimizer, None)  # warm

    def rate(name: str) -> float:
        model, optimizer, precision = models[name]
        start = time.perf_counter()
        Loop(device, Listener(), precision, SINGLE).train_epoch(model, batches, optimizer, None)
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


# ---------------------------------------------------------------- 2. test accuracy of real runs

PROXY = {"breeds": 12, "per_class": 40, "size": 96}  # `dogbreed dataset synthetic` options; 64 px training input
RECIPE = ["--no-pretrained", "--image-size", "64", "--batch-size", "64", "--loader-workers", "0", "--lr", "0.001"]


def cli(home: Path, *args: str) -> str:
    """``dogbreed ARGS`` in a subprocess (the real CLI) with its own DOGBREED_HOME; its standard output."""
    env = {**os.environ, "DOGBREED_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "dogbreed", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"dogbreed {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def accuracy_runs(work: Path, seeds: list[int], epochs: int) -> list[dict]:
    """``dogbreed train`` end to end on a synthetic proxy (finetune from scratch, official-style split), at
    ``--precision fp32`` and ``--precision auto`` for each seed, the two back to back (alternating which goes
    first, so a pair sees the same machine load): per run the precision it trained at, its test accuracy (scored
    by the fp32 reference engine on the saved best epoch) and the seconds its epochs took."""
    home, data = work / "home", work / "synthetic"
    options = [f"--{k.replace('_', '-')}={v}" for k, v in PROXY.items()]
    cli(home, "dataset", "synthetic", "--dataset", str(data), *options, "--seed", "0")
    runs = []
    for i, seed in enumerate(seeds):
        for asked in ("fp32", "auto") if i % 2 == 0 else ("auto", "fp32"):
            out = json.loads(cli(
                home, "train", "--dataset", str(data), *RECIPE, "--epochs", str(epochs), "--seed", str(seed),
                "--precision", asked, "--no-save", "--no-check", "--quiet", "--json",
            ))  # fmt: skip
            seconds = sum(e["seconds"] for e in out["epochs"])
            run = {"seed": seed, "asked": asked, "precision": out["precision"], "best_epoch": out["best_epoch"]}
            runs.append({**run, "test_acc": out["test"]["accuracy"], "seconds": seconds})
            print(f"    seed {seed} --precision {asked} ({out['precision']}): test {out['test']['accuracy']:.3f}, "
                  f"best epoch {out['best_epoch']}, {seconds:.0f} s", flush=True)  # fmt: skip
    return runs


def accuracy_rows(runs: list[dict], epochs: int, row: Row) -> None:
    """Per seed test accuracy of both precisions, then each one's mean and min, and the time ratio."""
    by = {(r["seed"], r["asked"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    chose = sorted({r["precision"] for r in runs if r["asked"] == "auto"})
    where = f"{PROXY['breeds']} breeds x {PROXY['per_class']}, 64 px, {epochs} epochs, resnet18 from scratch"
    row("precision", f"test accuracy ({where}); auto trained at {'/'.join(chose)}", "fp32 / auto", "")
    for seed in seeds:
        fp32, auto = by[(seed, "fp32")], by[(seed, "auto")]
        row(
            "precision",
            f"  seed {seed}: test accuracy fp32 / auto",
            f"{fp32['test_acc']:.3f} / {auto['test_acc']:.3f}",
            f"best epoch {fp32['best_epoch']} / {auto['best_epoch']}; "
            f"{fp32['seconds']:.0f} s / {auto['seconds']:.0f} s",
        )
    accs = {asked: [by[(s, asked)]["test_acc"] for s in seeds] for asked in ("fp32", "auto")}
    row(
        "precision",
        f"  mean over {len(seeds)} seeds: fp32 / auto",
        f"{statistics.mean(accs['fp32']):.3f} / {statistics.mean(accs['auto']):.3f}",
        f"min {min(accs['fp32']):.3f} / {min(accs['auto']):.3f}",
    )
    ratios = sorted(by[(s, "auto")]["seconds"] / by[(s, "fp32")]["seconds"] for s in seeds)
    row(
        "precision",
        "  training time auto / fp32 (epochs' seconds), median of pairs",
        f"{statistics.median(ratios):.2f}x",
        f"{ratios[0]:.2f}x-{ratios[-1]:.2f}x; fp32 = 1",
    )


def section_rows(work: Path, quick: bool, row: Row = print_row) -> dict:
    arch, size, batch = "resnet18", (128 if quick else 224), 16
    steps, rounds = (2, 3) if quick else (2, 5)
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
    seeds, epochs = ([0], 2) if quick else ([0, 1, 2, 3, 4], 8)
    runs = accuracy_runs(work, seeds, epochs)
    accuracy_rows(runs, epochs, row)
    return {"throughput_pairs": pairs, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer rounds, one seed, 2 epochs")
    parser.add_argument("--json", type=Path, help="also write the figures (and every run) here")
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
