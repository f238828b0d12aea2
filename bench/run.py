"""dogbreed's benchmark suite: one table, every figure a rate or a ratio against a baseline measured in the
same run (this machine is shared and noisy; fast figures are repeated and the median reported).

    nox -s bench                # or: python bench/run.py [--quick] [--json results.json]

Sections: predict end to end vs the raw batched forward; CLI start-up; upload rate; list paging on a
100,000-row store; extractor epochs with cached features; predict's peak memory at two store sizes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROWS: list[tuple[str, str, str, str]] = []  # (section, figure, value, target)


def row(section: str, figure: str, value: str, target: str = "") -> None:
    ROWS.append((section, figure, value, target))
    print(f"  {section:<10} {figure:<58} {value:>16}  {target}", flush=True)


def photo_jpeg(seed: int, size=(500, 375)) -> bytes:
    """A photo-like 500x375 JPEG (smooth gradients plus texture; ~40-60 KB like Stanford Dogs files)."""
    rng = np.random.default_rng(seed)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xs / w * 200 + 30, ys / h * 180 + 40, (xs + ys) / (w + h) * 150 + 60], -1)
    base += rng.normal(0, 22, (h, w, 3)) + rng.integers(0, 60, 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def dogbreed(home: Path, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "DOGBREED_HOME": str(home)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dogbreed", *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"dogbreed {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return elapsed, proc


def make_store(home: Path, n: int, seed: int = 0) -> Path:
    folder = home / f"jpegs-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"photo{i:05d}.jpg").write_bytes(photo_jpeg(seed * 100_000 + i))
    dogbreed(home, "upload", str(folder), "--json")
    return folder


def make_checkpoint(path: Path, image_size: int = 224) -> Path:
    import torch

    from dogbreed.breeds import BREEDS
    from dogbreed.model import CheckpointMeta, build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("resnet18", "extractor", 120)
    save_checkpoint(
        path, model, CheckpointMeta("resnet18", "extractor", [[b.wnid, b.name] for b in BREEDS], image_size=image_size)
    )
    return path


# ---------------------------------------------------------------- 1. predict vs raw forward


def raw_forward_rate(checkpoint: Path, batch: int, threads: int, seconds: float = 4.0) -> float:
    """Images/s of the model alone on pre-made tensors (no decoding, no store)."""
    code = f"""
import time, torch
from dogbreed.model import load_checkpoint, prepare_for_inference, predict_probs
torch.set_num_threads({threads})
dev = torch.device('cpu')
model, meta = load_checkpoint({str(checkpoint)!r})
model = prepare_for_inference(model, dev)
x = torch.randn({batch}, 3, meta.image_size, meta.image_size)
for _ in range(2): predict_probs(model, x, dev)
n, t = 0, time.perf_counter()
while time.perf_counter() - t < {seconds}:
    predict_probs(model, x, dev); n += {batch}
print(n / (time.perf_counter() - t))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def naive_rate(home: Path, checkpoint: Path, n: int = 48) -> float:
    """The original service's path: one image at a time, batch 1, decode + preprocess + forward each."""
    code = f"""
import sqlite3, time, torch
from dogbreed.imaging import preprocess
from dogbreed.model import load_checkpoint, predict_probs
torch.set_num_threads({os.cpu_count()})
dev = torch.device('cpu')
model, meta = load_checkpoint({str(checkpoint)!r})
conn = sqlite3.connect({str(home / "dogbreed.db")!r})
ids = [r[0] for r in conn.execute('SELECT image_id FROM image_blobs LIMIT {n}')]
t = time.perf_counter()
for i in ids:
    data = conn.execute('SELECT data FROM image_blobs WHERE image_id = ?', (i,)).fetchone()[0]
    predict_probs(model, preprocess(data, meta.image_size).unsqueeze(0), dev)
print(len(ids) / (time.perf_counter() - t))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def predict_rates(home: Path, checkpoint: Path, n: int, *extra: str) -> tuple[float, float, float]:
    """Images/s of one `predict --all`: (once the model is loaded: read from the store, decode, preprocess,
    forward, write; the run as the command times it, model loading included; the whole command's wall time,
    interpreter and imports included)."""
    wall, proc = dogbreed(home, "predict", "--all", "--checkpoint", str(checkpoint), "--json", *extra)
    out = json.loads(proc.stdout)
    assert out["done"] == n, out
    return n / (out["seconds"] - out["load_seconds"]), n / out["seconds"], n / wall


def bench_predict(work: Path, quick: bool) -> None:
    n = 128 if quick else 512
    home = work / "predict"
    make_store(home, n)
    ckpt = make_checkpoint(work / "resnet18-224.pt")
    cores = os.cpu_count() or 1
    # Baseline and pipeline alternate, and each pair gives one ratio: a noisy neighbour then slows both sides of
    # a pair rather than only one of them.
    pairs = []
    for _ in range(1 if quick else 3):
        raw_rate = raw_forward_rate(ckpt, 16, cores)
        pairs.append((raw_rate, *predict_rates(home, ckpt, n)))
    raw, steady, run, wall = (statistics.median(p[i] for p in pairs) for i in range(4))
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    row("predict", f"raw batched forward, batch 16, {cores} threads (baseline)", f"{raw:.1f} img/s")
    row("predict", f"`predict --all`, {n} stored 500x375 JPEGs, model loaded", f"{steady:.1f} img/s")
    row("predict", "  ratio to raw forward (median of paired runs)", f"{ratio:.2f}x", ">= 0.90x")
    row("predict", "  with model loading (torchvision import ~1.4 s)", f"{run:.1f} img/s", f"{run / raw:.2f}x raw")
    row("predict", "  whole command wall time (python + torch start-up)", f"{wall:.1f} img/s", f"{wall / raw:.2f}x raw")
    naive = naive_rate(home, ckpt)
    row("predict", "naive path: batch 1, one image at a time", f"{naive:.1f} img/s")
    row("predict", "  predict ratio to naive", f"{steady / naive:.2f}x", ">= 1.4x")
    if not quick:
        for label, args in (
            ("1 worker x 2 threads", ("--workers", "1", "--threads", str(cores))),
            ("in-process (--workers 0)", ("--workers", "0")),
        ):
            rate = predict_rates(home, ckpt, n, *args)[0]
            row("levers", f"predict {label}", f"{rate:.1f} img/s", f"{rate / raw:.2f}x raw")
        for batch in (1, 8, 32):
            rate = raw_forward_rate(ckpt, batch, cores)
            row("levers", f"raw forward batch {batch}", f"{rate:.1f} img/s", f"{rate / raw:.2f}x batch 16")


# ---------------------------------------------------------------- 2. CLI start-up


def bench_startup(work: Path, quick: bool) -> None:
    home = work / "startup"
    folder = home / "one"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(photo_jpeg(1))
    dogbreed(home, "upload", str(folder))
    reps = 5 if quick else 9

    def median_wall(args: list[str]) -> float:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], capture_output=True, env={**os.environ, "DOGBREED_HOME": str(home)})
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    base = median_wall(["-c", "pass"])
    row("startup", "python -c pass (baseline)", f"{base * 1000:.0f} ms")
    for args in (["--help"], ["list"], ["show", "1"]):
        wall = median_wall(["-m", "dogbreed", *args])
        env = {**os.environ, "DOGBREED_HOME": str(home)}
        imports = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "dogbreed", *args], capture_output=True, text=True, env=env
        ).stderr
        heavy = [m for m in ("torch", "matplotlib", "sqlmodel") if f" {m}\n" in imports or f"| {m}\n" in imports]
        row(
            "startup",
            f"dogbreed {' '.join(args)}",
            f"{wall * 1000:.0f} ms",
            f"< 350 ms; {wall / base:.1f}x python; heavy imports: {', '.join(heavy) or 'none'}",
        )


# ---------------------------------------------------------------- 3. upload


def bench_upload(work: Path, quick: bool) -> None:
    n = 300 if quick else 1000
    home = work / "upload"
    folder = home / "in"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"p{i:05d}.jpg").write_bytes(photo_jpeg(10_000 + i))
    hash_start = time.perf_counter()
    for p in folder.iterdir():
        p.read_bytes()
    read_s = time.perf_counter() - hash_start
    wall, _ = dogbreed(home, "upload", str(folder), "--json")
    row(
        "upload",
        f"upload {n} generated 500x375 JPEGs (full decode, whole command)",
        f"{n / wall:.0f} img/s",
        ">= 300 img/s",
    )
    row("upload", "  reading the same files (baseline)", f"{n / read_s:.0f} files/s")


# ---------------------------------------------------------------- 4. list paging


def bench_list(work: Path, quick: bool) -> None:
    from dogbreed.store import open_store, utcnow

    home = work / "list"
    home.mkdir(parents=True)
    conn = open_store(home / "dogbreed.db")
    n = 100_000
    now = utcnow()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO images (id, filename, sha256, format, width, height, size_bytes, created_at) "
        "VALUES (?, ?, ?, 'JPEG', 500, 375, 40000, ?)",
        ((i, f"photo{i}.jpg", f"{i:064x}", now) for i in range(1, n + 1)),
    )
    conn.executemany(
        "INSERT INTO image_blobs (image_id, data) VALUES (?, ?)", ((i, os.urandom(2048)) for i in range(1, n + 1))
    )
    conn.execute("COMMIT")
    conn.close()
    reps = 5
    empty = work / "list-empty"
    dogbreed(empty, "list", "--json")
    base = statistics.median(dogbreed(empty, "list", "--json")[0] for _ in range(reps))
    row("list", "`dogbreed list` on an empty store (baseline: start-up alone)", f"{base * 1000:.0f} ms")
    for label, args in (
        ("first page", ["list", "--json"]),
        ("page at offset 90,000", ["list", "--offset", "90000", "--json"]),
        ("page after id 90,000 (keyset)", ["list", "--after", "90000", "--json"]),
    ):
        wall = statistics.median(dogbreed(home, *args)[0] for _ in range(reps))
        row(
            "list",
            f"`dogbreed list` {label}, 100,000 rows",
            f"{wall * 1000:.0f} ms",
            f"<= 200 ms; +{(wall - base) * 1000:.0f} ms over empty",
        )
    from dogbreed.store import connect, images

    c = connect(home / "dogbreed.db")
    for label, kw in (("first page", {}), ("offset 90,000", {"offset": 90_000})):
        t = time.perf_counter()
        for _ in range(20):
            images.list_images(c, limit=50, **kw)
        row("list", f"  query alone, {label}", f"{(time.perf_counter() - t) / 20 * 1000:.1f} ms")


# ---------------------------------------------------------------- 5. extractor epochs


def bench_extractor(work: Path, quick: bool) -> None:
    home = work / "train"
    data = home / "synthetic"
    dogbreed(
        home,
        "dataset",
        "synthetic",
        "--dir",
        str(data),
        "--breeds",
        "6",
        "--per-class",
        "30" if quick else "60",
        "--size",
        "320",
    )
    dogbreed(
        home,
        "train",
        "--dataset",
        str(data),
        "--no-pretrained",
        "--epochs",
        "4",
        "--batch",
        "32",
        "--image-size",
        "224",
        "--workers",
        "0",
        "--json",
    )
    conn = sqlite3.connect(home / "dogbreed.db")
    secs = [r[0] for r in conn.execute("SELECT seconds FROM epochs ORDER BY epoch")]
    later = statistics.median(secs[1:])
    row("train", "extractor epoch 1 (backbone features computed once)", f"{secs[0]:.2f} s")
    row("train", "extractor epochs 2-4 (head on cached features), median", f"{later * 1000:.1f} ms")
    row("train", "  epoch 1 / later epoch", f"{secs[0] / later:.0f}x", ">= 100x")


# ---------------------------------------------------------------- 6. predict peak memory


def peak_rss_mb(args: list[str], home: Path | None = None) -> float:
    """Peak RSS of the largest process that `python ARGS` runs (itself or any child it waits for)."""
    env = {**os.environ, **({"DOGBREED_HOME": str(home)} if home else {})}
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run([sys.executable, *{args!r}], capture_output=True, check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip()) / 1024


def bench_memory(work: Path, quick: bool) -> None:
    ckpt = work / "resnet18-224.pt"
    if not ckpt.exists():
        make_checkpoint(ckpt)
    load_only = (
        "import torch; from dogbreed.model import load_checkpoint, prepare_for_inference; "
        f"prepare_for_inference(load_checkpoint({str(ckpt)!r})[0], torch.device('cpu'))"
    )
    base = peak_rss_mb(["-c", load_only])
    row("memory", "a process that imports torch and loads the model (baseline)", f"{base:.0f} MB")
    sizes = (200, 800) if quick else (500, 2000)
    peaks = []
    for n in sizes:
        home = work / f"mem{n}"
        make_store(home, n, seed=n)
        peaks.append(peak_rss_mb(["-m", "dogbreed", "predict", "--all", "--checkpoint", str(ckpt), "--json"], home))
        row(
            "memory",
            f"`predict --all` over {n} images: peak RSS of the largest process",
            f"{peaks[-1]:.0f} MB",
            f"+{peaks[-1] - base:.0f} MB over baseline",
        )
    row("memory", f"  peak at {sizes[1]} / peak at {sizes[0]}", f"{peaks[1] / peaks[0]:.2f}x", "~1.0x (streams)")


SECTIONS = {
    "predict": bench_predict,
    "startup": bench_startup,
    "upload": bench_upload,
    "list": bench_list,
    "train": bench_extractor,
    "memory": bench_memory,
}


def machine_line() -> str:
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        have = next(line for line in cpuinfo.splitlines() if line.startswith("flags"))
        flags = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in have)
    except (OSError, StopIteration):
        model = platform.processor()
    import torch

    return (
        f"{model}; {os.cpu_count()} cores ({flags}); {platform.system()} {platform.machine()}; "
        f"Python {platform.python_version()}; torch {torch.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    print(f"machine: {machine_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="dogbreed-bench-") as tmp:
        for name in args.only or SECTIONS:
            SECTIONS[name](Path(tmp), args.quick)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_line(), "rows": ROWS}, indent=2))
    print("\n| section | figure | value | target / baseline |\n|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
