"""Which ready ImageNet model should `predict` use by default? Forward speed on this CPU (same run, random
weights: speed does not depend on them) beside the published ImageNet top-1 of each candidate.

    python bench/ready_models.py [--seconds 4] [--models resnet50 resnet18 ...]
"""

from __future__ import annotations

import argparse
import os
import time

CANDIDATES = (
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "regnet_y_1_6gf",
    "convnext_tiny",
    "efficientnet_v2_s",
)


def rate(arch: str, seconds: float, batch: int = 16) -> float:
    import torch
    import torchvision

    from dogbreed.models.predictor import Predictor, prepare_for_inference
    from dogbreed.models.zoo import describe

    crop = describe(arch).preprocessing.crop_size
    net = prepare_for_inference(Predictor(torchvision.models.get_model(arch), imagenet=True), torch.device("cpu"))
    x = torch.randn(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(2):
            net(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(x)
            n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--models", nargs="*", default=list(CANDIDATES))
    args = parser.parse_args()
    import torch

    from dogbreed.models.zoo import describe

    torch.set_num_threads(os.cpu_count() or 1)
    base = rate("resnet50", args.seconds)
    print("| model | weights | ImageNet top-1 | GFLOPs | img/s (batch 16, fp32) | vs resnet50 |")
    print("|---|---|---|---|---|---|")
    for arch in args.models:
        info = describe(arch)
        r = base if arch == "resnet50" else rate(arch, args.seconds)
        print(f"| {arch} | {info.weights} | {info.top1:.1f}% | {info.gflops:.2f} | {r:.1f} | {r / base:.2f}x |")


if __name__ == "__main__":
    main()
