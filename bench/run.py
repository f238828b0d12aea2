"""dogbreed's benchmark suite: one table, every figure a rate or a ratio against a baseline measured in the
same run (this machine is shared and noisy; fast figures are repeated and the median reported).

    nox -s bench                # or: python bench/run.py [--quick] [--json results.json]

Sections: predict end to end vs the raw batched forward; the engines (auto, int8 export, detection forced off,
`predict --id 1` start-up) against the torch fp32 forward; CLI start-up; upload rate; list paging on a
100,000-row store; extractor epochs with cached features; `train --store` twice (the feature cache); predict's
peak memory at two store sizes; serve.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
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


def dogbreed(
    home: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "DOGBREED_HOME": str(home), **(env or {})}
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
    from dogbreed.formats.checkpoint import CheckpointMeta, save_checkpoint
    from dogbreed.models.build import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", "extractor", 120)
    save_checkpoint(
        path, model, CheckpointMeta("resnet18", "extractor", [[b.wnid, b.name] for b in BREEDS], image_size=image_size)
    )
    return path


# ---------------------------------------------------------------- 1. predict vs raw forward


def raw_forward_rate(
    model: Path,
    batch: int,
    threads: int,
    seconds: float = 4.0,
    engine: str = "torch",
    precision: str = "fp32",
    env: dict[str, str] | None = None,
    procs: int = 1,
) -> float:
    """Images/s of the model alone on pre-made arrays (no decoding, no store), through the engine API, in
    ``procs`` processes at once with ``threads`` each (their rates summed). With the defaults: the torch fp32
    batched forward."""
    code = f"""
import sys, time, numpy as np
from dogbreed.models import sources
from dogbreed.engines import Choice, load_engine
engine = load_engine(sources.from_checkpoint({str(model)!r}), Choice({engine!r}, {precision!r}, 'cpu'))
engine.set_threads({threads})
size = engine.spec.preprocessing.crop_size
x = np.random.default_rng(0).standard_normal(({batch}, 3, size, size)).astype(np.float32)
for _ in range(2): engine.predict(x)
print('ready', flush=True)
sys.stdin.readline()  # every process measures the same window
n, t = 0, time.perf_counter()
while time.perf_counter() - t < {seconds}:
    engine.predict(x); n += {batch}
print(n / (time.perf_counter() - t))
"""
    env = {**os.environ, **(env or {})}
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(procs)
    ]
    for proc in running:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"forward benchmark failed to start ({engine} {precision})")
    for proc in running:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    rates = []
    for proc in running:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"forward benchmark failed ({engine} {precision})")
        rates.append(float(out.strip().splitlines()[-1]))
    return sum(rates)


def best_forward_rate(model: Path, cores: int, **kw) -> float:
    """The better of one process with every core and one single-threaded process per core: a baseline that
    another process on the machine cannot make look slow (a 2-thread OpenMP forward loses up to 3x when a
    neighbour takes a core; single-threaded processes barely notice)."""
    one = raw_forward_rate(model, 16, cores, **kw)
    if cores == 1:
        return one
    return max(one, raw_forward_rate(model, 16, 1, procs=cores, **kw))


def naive_rate(home: Path, checkpoint: Path, n: int = 48) -> float:
    """The original service's path: one image at a time, batch 1, decode + preprocess + forward each."""
    code = f"""
import sqlite3, time
from dogbreed.models import sources
from dogbreed.engines import Choice, load_engine
from dogbreed.imaging import preprocess
engine = load_engine(sources.from_checkpoint({str(checkpoint)!r}), Choice('torch', 'fp32', 'cpu'))
engine.set_threads({os.cpu_count()})
conn = sqlite3.connect({str(home / "dogbreed.db")!r})
ids = [r[0] for r in conn.execute('SELECT image_id FROM image_blobs LIMIT {n}')]
t = time.perf_counter()
for i in ids:
    data = conn.execute('SELECT data FROM image_blobs WHERE image_id = ?', (i,)).fetchone()[0]
    engine.predict(preprocess(data, engine.spec.preprocessing)[None])
print(len(ids) / (time.perf_counter() - t))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def predict_run(
    home: Path, model: Path | None, n: int, *extra: str, env: dict[str, str] | None = None
) -> tuple[tuple[float, float, float], dict]:
    """Images/s of one `predict --all` (once the model is loaded: read from the store, decode, preprocess,
    forward, write; the run as the command times it, model loading included; the whole command's wall time,
    interpreter and imports included) and its JSON summary (engine, precision, note)."""
    which = ("--checkpoint", str(model)) if model is not None else ()
    wall, proc = dogbreed(home, "predict", "--all", *which, "--json", *extra, env=env)
    out = json.loads(proc.stdout)
    assert out["done"] == n, {k: v for k, v in out.items() if k != "results"}
    return (n / (out["seconds"] - out["load_seconds"]), n / out["seconds"], n / wall), out


def predict_rates(home: Path, checkpoint: Path, n: int, *extra: str) -> tuple[float, float, float]:
    return predict_run(home, checkpoint, n, *extra)[0]


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
        pairs.append((raw_rate, *predict_rates(home, ckpt, n, "--engine", "torch")))
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
            rate = predict_rates(home, ckpt, n, "--engine", "torch", *args)[0]
            row("levers", f"predict {label}", f"{rate:.1f} img/s", f"{rate / raw:.2f}x raw")
        for batch in (1, 8, 32):
            rate = raw_forward_rate(ckpt, batch, cores)
            row("levers", f"raw forward batch {batch}", f"{rate:.1f} img/s", f"{rate / raw:.2f}x batch 16")


# ---------------------------------------------------------------- 1b. engines


def trained_run(home: Path, quick: bool) -> dict:
    """A plain `dogbreed train` (resnet18, from scratch: --no-pretrained trains the whole network) at 224 px on a
    synthetic set whose test split (120 images) is enough for the accuracy guard: confident predictions, so the
    agreement figures mean something. Speed does not depend on the weights. Training measures the faster engines
    at its end (its JSON carries the checks): no other command runs before predict."""
    data = home / "synthetic"
    per_class = "80"
    dogbreed(
        home, "dataset", "synthetic", "--dataset", str(data), "--breeds", "6", "--per-class", per_class, "--size", "320"
    )
    _, proc = dogbreed(
        home,
        "train",
        "--dataset",
        str(data),
        "--no-pretrained",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--image-size",
        "224",
        "--loader-workers",
        "0",
        "--json",
    )
    return json.loads(proc.stdout)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _guard_text(checks: list[dict], engine: str, precision: str) -> str:
    for c in checks:
        if (c["engine"], c["precision"]) == (engine, precision):
            drop = ""
            if c.get("accuracy") is not None and c.get("reference_accuracy") is not None:
                drop = f", accuracy {_pct(c['accuracy'])} vs fp32 {_pct(c['reference_accuracy'])}"
            return f"agreement {_pct(c['agreement'])} on {c['n']} test images{drop}"
    return "no check"


def bench_engines(work: Path, quick: bool) -> None:
    """The issue-10 rows, all in one run: `predict --all` at auto settings and with an int8 export, each beside
    its recorded agreement / accuracy, against the torch fp32 raw batched forward; auto with bf16/VNNI detection
    forced off against today's torch fp32 predict; `predict --id 1` whole-command time on a cached OpenVINO
    model against the torch path."""
    from dogbreed.engines import cpu

    home = work / "engines"
    n = 128 if quick else 512
    cores = os.cpu_count() or 1
    trained = trained_run(home, quick)
    run_id, ckpt, checks = trained["run_id"], Path(trained["checkpoint"]), trained["checks"]
    _, proc = dogbreed(home, "export", "--run", str(run_id), "--int8", "--json")
    exported = json.loads(proc.stdout)
    int8 = Path(exported["path"])
    make_store(home, n)
    off = {cpu.ENV: "none"}
    # the first predict after train: its conversion is already cached, its checks recorded by train itself
    first, auto_out = predict_run(home, ckpt, n)
    rounds = []
    for _ in range(1 if quick else 3):  # interleaved: a noisy neighbour slows both sides of a pair
        one = raw_forward_rate(ckpt, 16, cores)  # the baseline: one process, every core
        many = raw_forward_rate(ckpt, 16, 1, procs=cores) if cores > 1 else one
        auto, auto_out = predict_run(home, ckpt, n)
        q, q_out = predict_run(home, int8, n)
        today, _ = predict_run(home, ckpt, n, "--engine", "torch", "--precision", "fp32")
        forced, forced_out = predict_run(home, ckpt, n, env=off)
        rounds.append((one, many, auto[0], q[0], today[0], forced[0], auto[2], q[2]))
    med = [statistics.median(r[i] for r in rounds) for i in range(len(rounds[0]))]

    def ratio(i: int, j: int = 0) -> float:
        return statistics.median(r[i] / r[j] for r in rounds)

    def vs_raw(i: int) -> str:
        return (
            f"{ratio(i):.2f}x raw 1x{cores}, {statistics.median(r[i] / max(r[0], r[1]) for r in rounds):.2f}x best raw"
        )

    engine, precision = auto_out["engine"], auto_out["precision"]
    prep = prep_ms(home, n)
    ceilings = {
        "auto": ceiling(prep, raw_forward_rate(ckpt, 16, 1, engine=engine, precision=precision), cores),
        "int8": ceiling(prep, raw_forward_rate(int8, 16, 1, engine="openvino", precision="int8"), cores),
    }
    row(
        "engines",
        f"torch fp32 raw batched forward, batch 16, 1 process x {cores} threads (baseline)",
        f"{med[0]:.1f} img/s",
    )
    row("engines", f"  the same, {cores} processes x 1 thread (best raw when faster)", f"{med[1]:.1f} img/s")
    row(
        "engines",
        "`train` measured the engines itself, on",
        trained["checked_on"].split(" of run")[0],
        f"auto: {trained['auto_engine']}; the first `predict --all` after it: {first[2]:.1f} img/s whole command",
    )
    row(
        "engines",
        f"`predict --all` auto ({engine} {precision}), {n} stored 500x375 JPEGs",
        f"{med[2]:.1f} img/s",
        f"{vs_raw(2)} (>= 2.0x); {med[2] / ceilings['auto']:.0%} of its ceiling; "
        f"{_guard_text(checks, engine, precision)}",
    )
    int8_check = exported["checks"][0] if exported["checks"] else {}
    row(
        "engines",
        "`predict --all` with the int8 export (openvino int8)",
        f"{med[3]:.1f} img/s",
        f"{vs_raw(3)} (>= 3.5x); {med[3] / ceilings['int8']:.0%} of its ceiling; "
        f"{_guard_text([int8_check], 'openvino', 'int8')}",
    )
    row(
        "engines",
        f"  ceilings: {cores} cores / (decode+preprocess {prep:.2f} ms + 1-thread forward) per image",
        f"{ceilings['auto']:.0f} / {ceilings['int8']:.0f} img/s",
        f"auto / int8: {ceilings['auto'] / med[0]:.2f}x / {ceilings['int8'] / med[0]:.2f}x raw 1x{cores}",
    )
    row("engines", "`predict --all --engine torch --precision fp32` (today's path)", f"{med[4]:.1f} img/s", vs_raw(4))
    forced_choice = f"{forced_out['engine']} {forced_out['precision']}"
    row(
        "engines",
        f"auto with {cpu.ENV}=none (picks {forced_choice})",
        f"{med[5]:.1f} img/s",
        f"{ratio(5, 4):.2f}x today's fp32 predict (>= ~1.0x); picks fp32: "
        f"{'yes' if forced_out['precision'] == 'fp32' else 'NO'}",
    )
    row("engines", "  auto, whole command (python, imports, model load)", f"{med[6]:.1f} img/s", vs_raw(6))
    row("engines", "  int8, whole command", f"{med[7]:.1f} img/s", vs_raw(7))
    row(
        "engines",
        "  int8 export size",
        f"{exported['size_bytes'] / 2**20:.1f} MB",
        f"calibrated on {exported['calibration']}",
    )
    bench_predict_one(home, ckpt, 3 if quick else 7)
    if not quick:
        bench_no_bf16_cpu(ckpt, int8, cores)


def prep_ms(home: Path, n: int) -> float:
    """Decode + preprocess (224 px) of the stored JPEGs, ms per image on one core."""
    code = f"""
import sqlite3, time
from dogbreed.imaging import Preprocessing, preprocess
conn = sqlite3.connect({str(home / "dogbreed.db")!r})
blobs = [r[0] for r in conn.execute('SELECT data FROM image_blobs LIMIT {min(n, 128)}')]
prep = Preprocessing()
best = 1e9
for _ in range(3):
    t = time.perf_counter()
    for b in blobs: preprocess(b, prep)
    best = min(best, (time.perf_counter() - t) / len(blobs))
print(best * 1000)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def ceiling(prep: float, forward_rate_1thread: float, cores: int) -> float:
    """Images/s when every core decodes and forwards its own images with nothing else to do."""
    return cores / ((prep + 1000 / forward_rate_1thread) / 1000)


def bench_predict_one(home: Path, ckpt: Path, reps: int) -> None:
    """`dogbreed predict --id 1` whole-command wall time, interleaved: auto on the cached OpenVINO conversion (no
    torch import) against the torch path."""
    sides: dict[str, list[float]] = {"openvino": [], "torch": []}
    for _ in range(reps):
        for engine in sides:
            wall, proc = dogbreed(home, "predict", "--id", "1", "--checkpoint", str(ckpt), "--engine", engine, "--json")
            sides[engine].append(wall)
    ov, pt = (statistics.median(sides[k]) for k in ("openvino", "torch"))
    row("engines", "`predict --id 1` whole command, torch fp32 (baseline)", f"{pt * 1000:.0f} ms")
    row(
        "engines",
        "`predict --id 1` whole command, cached OpenVINO model",
        f"{ov * 1000:.0f} ms",
        f"{pt / ov:.1f}x faster (no torch import)",
    )


def bench_no_bf16_cpu(ckpt: Path, int8: Path, cores: int) -> None:
    """What a CPU without bf16 or VNNI gets, emulated here: oneDNN (torch's and OpenVINO's) limited to plain
    AVX-512 (``ONEDNN_MAX_CPU_ISA=AVX512_CORE``, a Skylake-SP), detection forced off."""
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DOGBREED_CPU_FEATURES": "none"}
    base = best_forward_rate(ckpt, cores, env=env)
    row("no-bf16", "torch fp32 forward, oneDNN limited to AVX512_CORE (baseline)", f"{base:.1f} img/s")
    for label, model, engine, precision in (
        ("openvino f32 forward", ckpt, "openvino", "fp32"),
        ("openvino bf16 forward (emulated: what detection avoids)", ckpt, "openvino", "bf16"),
        ("openvino int8 forward (no VNNI)", int8, "openvino", "int8"),
    ):
        rate = best_forward_rate(model, cores, engine=engine, precision=precision, env=env)
        row("no-bf16", label, f"{rate:.1f} img/s", f"{rate / base:.2f}x torch fp32")


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
        heavy = [
            m
            for m in ("torch", "matplotlib", "sqlmodel", "openvino", "nncf")
            if f" {m}\n" in imports or f"| {m}\n" in imports
        ]
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
        "--dataset",
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
        "--random-backbone",  # extractor mode on purpose: its epochs are what this section measures
        "--no-check",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--image-size",
        "224",
        "--loader-workers",
        "0",
        "--json",
    )
    conn = sqlite3.connect(home / "dogbreed.db")
    secs = [r[0] for r in conn.execute("SELECT seconds FROM epochs ORDER BY epoch")]
    later = statistics.median(secs[1:])
    row("train", "extractor epoch 1 (backbone features computed once)", f"{secs[0]:.2f} s")
    row("train", "extractor epochs 2-4 (head on cached features), median", f"{later * 1000:.1f} ms")
    row("train", "  epoch 1 / later epoch", f"{secs[0] / later:.0f}x", ">= 100x")


def _labelled_photos(home: Path, per_breed: int) -> dict[str, Path]:
    """Five 'breeds' of 500x375 photos (a colour and stripe pattern each, jittered per photo): three of the
    user's own, two of Stanford's."""
    import random

    from dogbreed.datasets.synthetic import _picture

    rng = random.Random(0)
    folders = {}
    for slot, name in enumerate(["Shiba Inu", "Australian shepherd", "Labradoodle", "beagle", "golden retriever"]):
        folder = home / "photos" / str(slot)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_breed):
            _picture(slot, 5, (500, 375), rng).save(folder / f"{i:04d}.jpg", quality=85)
        folders[name] = folder
    return folders


def bench_store(work: Path, quick: bool) -> None:
    """train --store on labelled photos from an ImageNet-layout backbone in extractor mode: the first run computes
    the backbone features, the second reads them back from the feature cache."""
    import torch
    import torchvision

    home = work / "store"
    per_breed = 30 if quick else 60
    for name, folder in _labelled_photos(home, per_breed).items():
        if name[0].isupper():
            dogbreed(home, "breeds", "add", name)
        dogbreed(home, "upload", str(folder), "-g", name, "-q")
    weights = home / "resnet18-imagenet-layout.pth"  # offline stand-in for torchvision's ImageNet weights: same cost
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    args = ["train", "--store", "--weights", str(weights), "--epochs", "10", "--loader-workers", "0", "--json"]
    args.insert(-1, "--no-check")  # the section times training and its feature cache, not the engine checks
    first, _ = dogbreed(home, *args)
    second, proc = dogbreed(home, *args)
    n = 5 * per_breed
    conn = sqlite3.connect(home / "dogbreed.db")
    epoch1 = dict(conn.execute("SELECT run_id, seconds FROM epochs WHERE epoch = 1"))
    conn.close()
    row("store", f"train --store, {n} photos, 5 breeds, extractor, 10 epochs: first run (wall)", f"{first:.1f} s")
    row("store", "  the same again, features read from the cache (wall)", f"{second:.1f} s", f"{first / second:.1f}x")
    row("store", "  epoch 1: backbone features computed (first run)", f"{epoch1[1]:.1f} s")
    row("store", "  epoch 1: features read back (second run)", f"{epoch1[2]:.1f} s", f"{epoch1[1] / epoch1[2]:.1f}x")
    acc = json.loads(proc.stdout)["test"]["accuracy"]
    row("store", "  test accuracy (backbone weights random here: says only that it runs)", f"{acc:.0%}")


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
        "import torch; from dogbreed.models.build import load_checkpoint; "
        "from dogbreed.models.predictor import prepare_for_inference; "
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


def bench_precision(work: Path, quick: bool) -> None:
    """Training at bf16 against fp32 (bench/train_precision.py), as rows of this table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_precision import section_rows

    section_rows(work / "precision", quick, row)


# ---------------------------------------------------------------- 9. serve


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "dogbreedbench"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def classify_load(port: int, bodies: list[tuple[bytes, str]], clients: int) -> tuple[float, list[float]]:
    """``clients`` threads, each on its own keep-alive connection, send classify requests (one photo each) until
    ``bodies`` are all sent; (requests/s, latencies in s)."""
    import http.client
    import threading

    todo = list(reversed(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not todo:
                    break
                body, ctype = todo.pop()
            start = time.perf_counter()
            conn.request("POST", "/api/classify", body=body, headers={"Content-Type": ctype})
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {answer[:200]!r}")
            latencies.append(time.perf_counter() - start)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} classify requests failed, e.g. {failures[0]}")
    return len(latencies) / wall, latencies


def start_server(home: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """`dogbreed serve --port 0 ...` on its own store; returns once it prints that it is serving."""
    import re

    env = {**os.environ, "DOGBREED_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dogbreed", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"dogbreed serve did not start: {line!r}")
    return proc, int(match.group(1))


def bench_serve(work: Path, quick: bool) -> None:
    """`dogbreed serve`: classify requests (one 500x375 JPEG each, stored and predicted) from 1, 8 and 32 clients,
    against `predict --all`'s images/s on the same model, engine and machine. The 32-client figure and predict
    alternate in pairs (a noisy neighbour then slows both sides of a pair) and the median ratio is reported."""
    n = 128 if quick else 512
    ckpt = make_checkpoint(work / "resnet18-224.pt")
    base = work / "serve-predict"
    make_store(base, n)
    seeds = iter(range(500_000, 10_000_000, 1))

    def bodies(count: int) -> list[tuple[bytes, str]]:
        return [_multipart(f"p{i}.jpg", photo_jpeg(i)) for i in (next(seeds) for _ in range(count))]

    def classify(clients: int, count: int) -> tuple[float, float, float]:
        classify_load(port, bodies(max(clients, 8)), clients)  # warm: connections, first batches
        rps, lat = classify_load(port, bodies(count), clients)
        return rps, float(np.percentile(lat, 50)) * 1000, float(np.percentile(lat, 99)) * 1000

    engine = ("--engine", "torch", "--precision", "fp32")
    proc, port = start_server(work / "serve", "--checkpoint", str(ckpt), *engine)
    try:
        pairs = []
        for _ in range(1 if quick else 3):
            pairs.append((predict_rates(base, ckpt, n, *engine)[0], *classify(32, n)))
        levels = [(clients, count, classify(clients, count)) for clients, count in ((1, 48), (8, 96 if quick else 256))]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    predict = statistics.median(p[0] for p in pairs)
    row("serve", f"`predict --all`, {n} stored 500x375 JPEGs, model loaded (baseline)", f"{predict:.1f} img/s")
    for clients, count, (rps, p50, p99) in levels:
        target = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; {rps / predict:.2f}x predict"
        row("serve", f"classify, {clients} client(s), {count} photos, one per request", f"{rps:.1f} req/s", target)
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    rps, p50, p99 = sorted(pairs, key=lambda p: p[1] / p[0])[len(pairs) // 2][1:]
    target = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; {ratio:.2f}x predict (median of paired runs; >= 0.80x)"
    row("serve", f"classify, 32 clients, {n} photos, one per request", f"{rps:.1f} req/s", target)


SECTIONS = {
    "predict": bench_predict,
    "engines": bench_engines,
    "startup": bench_startup,
    "upload": bench_upload,
    "list": bench_list,
    "train": bench_extractor,
    "store": bench_store,
    "precision": bench_precision,
    "memory": bench_memory,
    "serve": bench_serve,
}


def machine_line() -> str:
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        have = next(line for line in cpuinfo.splitlines() if line.startswith("flags"))
        flags = ", ".join(
            f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16") if f" {f}" in have
        )
    except (OSError, StopIteration):
        model = platform.processor()
    import openvino
    import torch

    from dogbreed.engines import cpu

    return (
        f"{model}; {os.cpu_count()} cores ({flags}); detected: {cpu.detect().describe()}; "
        f"{platform.system()} {platform.machine()}; Python {platform.python_version()}; torch {torch.__version__}; "
        f"OpenVINO {openvino.get_version().split('-')[0]}"
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
            before = os.getloadavg()[0]
            SECTIONS[name](Path(tmp), args.quick)
            # other processes' load, so a reader can tell a quiet run from a contended one
            row(name, "  load average (1 min) before / after the section", f"{before:.1f} / {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_line(), "rows": ROWS}, indent=2))
    print("\n| section | figure | value | target / baseline |\n|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
