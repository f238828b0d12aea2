"""A small, clearly synthetic dataset in the Stanford layout, so the whole pipeline runs offline.

Each "breed" is a colour and a stripe pattern (hue, stripe angle and frequency differ per class) under random
jitter, shifts and noise: learnable from scratch in a minute on a CPU, yet not trivially identical images.
These are NOT dog photos; the folder is named synthetic so nobody mistakes it for the real dataset.
"""

from __future__ import annotations

import colorsys
import json
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image

from dogbreed.breeds import BREEDS, Breed
from dogbreed.datasets import SYNTHETIC_MARKER, being_written

DEFAULT_BREEDS = ("n02085620", "n02088364", "n02099601", "n02106662", "n02110185", "n02113799")


def _picture(breed_slot: int, n_breeds: int, size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    hue = (breed_slot / n_breeds + rng.uniform(-0.03, 0.03)) % 1.0
    angle = math.pi * breed_slot / n_breeds + rng.uniform(-0.15, 0.15)
    freq = 2 + (breed_slot % 3) * 2 + rng.uniform(-0.3, 0.3)
    fg = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255
    bg = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.3, rng.uniform(0.3, 0.6))) * 255
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) / max(w, h) * 2 * math.pi * freq + phase)
    mask = (wave > 0).astype(np.float32)[..., None]
    arr = mask * fg + (1 - mask) * bg
    arr += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 18, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _write_lists(root: Path, train: list[tuple[str, int]], test: list[tuple[str, int]]) -> None:
    import scipy.io

    (root / "lists").mkdir(parents=True, exist_ok=True)
    for name, items in (("train_list.mat", train), ("test_list.mat", test)):
        files = np.empty((len(items), 1), dtype=object)
        for i, (path, _) in enumerate(items):
            files[i, 0] = np.array([path])
        labels = np.array([[label] for _, label in items], dtype=np.uint8)
        scipy.io.savemat(str(root / "lists" / name), {"file_list": files, "labels": labels})


def make_synthetic(
    root: Path,
    *,
    breeds: int | list[str] = len(DEFAULT_BREEDS),
    per_class: int = 40,
    size: tuple[int, int] = (96, 72),
    test_fraction: float = 0.25,
    lists: bool = True,
    seed: int = 0,
) -> list[Breed]:
    """Write ``per_class`` JPEGs for each breed under ``root/Images`` (and ``lists/*.mat`` when ``lists``)."""
    if isinstance(breeds, int):
        chosen_ids = list(DEFAULT_BREEDS[:breeds]) + [b.wnid for b in BREEDS if b.wnid not in DEFAULT_BREEDS]
        chosen = [b for b in BREEDS if b.wnid in chosen_ids[:breeds]]
    else:
        chosen = [b for b in BREEDS if b.wnid in breeds]
    with being_written(root, "dataset synthetic"):  # complete only once everything below is written
        _write_images(root, chosen, per_class, size, test_fraction, lists, seed)
    return chosen


def _write_images(
    root: Path, chosen: list[Breed], per_class: int, size: tuple[int, int], test_fraction: float, lists: bool, seed: int
) -> None:
    rng = random.Random(seed)
    train, test = [], []
    n_test = max(1, round(per_class * test_fraction))
    for slot, breed in enumerate(chosen):
        folder = root / "Images" / breed.folder
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            name = f"{breed.wnid}_{i:05d}.jpg"
            _picture(slot, len(chosen), size, rng).save(folder / name, "JPEG", quality=88)
            item = (f"{breed.folder}/{name}", breed.index + 1)  # Stanford labels are 1-based
            (test if i < n_test else train).append(item)
    if lists:
        _write_lists(root, train, test)
    readme = root / "README.txt"
    readme.write_text(
        "SYNTHETIC data made by dogbreed: coloured stripe patterns standing in for dog breeds, for offline demos\n"
        "and tests. Not photos of dogs.\n"
    )
    marker = {"synthetic": True, "made_by": "dogbreed dataset synthetic", "what": "stripe patterns, not photos"}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker) + "\n")  # what open_dataset and training read
