"""Figures: the `view` picture (photo + top-k bars) and training curves. Matplotlib's Agg backend, figures closed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

VIEW_SIZE_INCHES = (12, 5)
VIEW_DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def title_color(top1: str, ground_truth: str | None) -> str:
    """Green when the prediction matches the ground truth, red when it does not, black without one."""
    if ground_truth is None:
        return "black"
    return "green" if top1 == ground_truth else "red"


def render_view(
    image_bytes: bytes,
    top: list[dict[str, Any]],
    ground_truth: str | None,
    output: Path,
    subtitle: str = "",
) -> Path:
    """Photo (EXIF-oriented) on the left, horizontal bars of the top-k breeds on the right, title
    "<breed> (<p>%)" coloured by correctness. Writes a PNG of VIEW_SIZE_INCHES * VIEW_DPI pixels."""
    from dogbreed.breeds import display_name
    from dogbreed.imaging import load_rgb

    plt = _pyplot()
    picture = load_rgb(image_bytes, min_side=VIEW_DPI * VIEW_SIZE_INCHES[1])
    fig, (ax_img, ax_bar) = plt.subplots(
        1, 2, figsize=VIEW_SIZE_INCHES, dpi=VIEW_DPI, gridspec_kw={"width_ratios": [1, 1.2]}
    )
    try:
        ax_img.imshow(picture)
        ax_img.set_axis_off()
        if ground_truth:
            ax_img.set_title(f"ground truth: {display_name(ground_truth)}", fontsize=10)
        names = [t["name"] for t in top][::-1]
        probs = [t["prob"] * 100 for t in top][::-1]
        colors = ["tab:blue"] * len(top)
        if ground_truth:
            colors = ["tab:green" if t["wnid"] == ground_truth else "tab:blue" for t in top]
        ax_bar.barh(names, probs, color=colors[::-1])
        ax_bar.set_xlabel("probability (%)")
        ax_bar.set_xlim(0, 100)
        for y, p in enumerate(probs):
            ax_bar.text(min(p + 1, 88), y, f"{p:.1f}%", va="center", fontsize=8)
        best = top[0]
        fig.suptitle(
            f"{best['name']} ({best['prob'] * 100:.1f}%)",
            color=title_color(best["wnid"], ground_truth),
            fontsize=15,
            fontweight="bold",
        )
        if subtitle:
            ax_bar.set_title(subtitle, fontsize=8)
        fig.tight_layout()
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=VIEW_DPI)
    finally:
        plt.close(fig)
    output.write_bytes(buf.getvalue())
    return output


def render_curves(epochs: list[dict[str, Any]], output: Path, title: str = "") -> Path:
    """Loss, accuracy and F1 per epoch, train against validation."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    xs = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=VIEW_DPI)
    try:
        panels = (
            ("loss", [("train_loss", "train"), ("val_loss", "validation")]),
            ("accuracy", [("train_acc", "train"), ("val_acc", "validation top-1"), ("val_top5", "validation top-5")]),
            ("macro F1", [("val_f1", "validation")]),
        )
        for ax, (label, series) in zip(axes, panels):
            for key, name in series:
                ax.plot(xs, [e[key] for e in epochs], marker="o", label=name)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(label)
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format="png")
    finally:
        plt.close(fig)
    return output
