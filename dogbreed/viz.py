"""Figures: the `view` picture (photo + top-k bars), training curves and the confusion matrix. Matplotlib's Agg
backend; every figure is closed; text that came from files or checkpoints is drawn literally (no mathtext)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dogbreed.errors import DogbreedError

VIEW_SIZE_INCHES = (12, 5)
VIEW_DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["text.parse_math"] = False  # a '$' in a file name is a dollar sign, not mathtext
    return plt


def title_color(top1: str, ground_truth: str | None) -> str:
    """Green when the prediction matches the ground truth, red when it does not, black without one."""
    if ground_truth is None:
        return "black"
    return "green" if top1 == ground_truth else "red"


def _save(fig: Any, output: Path) -> Path:
    """Render to memory, then write: a bad output path is a one-line error and never leaves half a PNG."""
    from dogbreed.files import NotWritable, write_regular_file

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    try:
        return write_regular_file(Path(output), buf.getvalue())
    except NotWritable as exc:
        raise DogbreedError(f"{exc}; choose another file name") from None


def render_view(
    image_bytes: bytes,
    top: Sequence[Any],
    ground_truth: str | None,
    output: Path,
    *,
    heading: str = "",
    model: str = "",
    dog_probability: float | None = None,
) -> Path:
    """Photo (EXIF-oriented) on the left, horizontal bars of the top-k breeds (``BreedScore``s, only breeds the
    model knows) on the right, title "<breed> (<p>%)" coloured by correctness, the image and model named, and a
    "probably not a dog" mark. Writes a PNG of VIEW_SIZE_INCHES * VIEW_DPI pixels."""
    from dogbreed.breeds import display_name
    from dogbreed.imagenet import DOG_THRESHOLD
    from dogbreed.imaging import load_rgb

    plt = _pyplot()
    picture = load_rgb(image_bytes, min_side=VIEW_DPI * VIEW_SIZE_INCHES[1])
    # never more pixels than the figure has: a 1 x 64,000,000 picture would cost matplotlib gigabytes
    picture.thumbnail((VIEW_DPI * VIEW_SIZE_INCHES[0], VIEW_DPI * VIEW_SIZE_INCHES[1]))
    fig, (ax_img, ax_bar) = plt.subplots(
        1, 2, figsize=VIEW_SIZE_INCHES, dpi=VIEW_DPI, gridspec_kw={"width_ratios": [1, 1.2]}
    )
    try:
        ax_img.imshow(picture)
        ax_img.set_axis_off()
        caption = [heading] if heading else []
        if ground_truth:
            caption.append(f"ground truth: {display_name(ground_truth)}")
        ax_img.set_title("\n".join(caption), fontsize=9)
        names = [s.breed for s in top][::-1]
        probs = [s.probability * 100 for s in top][::-1]
        colors = ["tab:green" if ground_truth and s.wnid == ground_truth else "tab:blue" for s in top][::-1]
        ax_bar.barh(names, probs, color=colors)
        ax_bar.set_xlabel("probability (%)")
        ax_bar.set_xlim(0, 100)
        for y, p in enumerate(probs):
            ax_bar.text(min(p + 1, 88), y, f"{p:.1f}%", va="center", fontsize=8)
        notes = [model] if model else []
        if dog_probability is not None:
            notes.append(f"dog probability {dog_probability:.1%}")
        ax_bar.set_title("\n".join(notes), fontsize=8)
        best = top[0]
        title = f"{best.breed} ({best.probability * 100:.1f}%)"
        color = title_color(best.wnid, ground_truth)
        if dog_probability is not None and dog_probability < DOG_THRESHOLD:
            title += "  -  probably NOT a dog"
            color = "red" if ground_truth is None else color
        fig.suptitle(title, color=color, fontsize=15, fontweight="bold")
        fig.tight_layout()
        return _save(fig, output)
    finally:
        plt.close(fig)


def render_curves(epochs: list[dict[str, Any]], output: Path, title: str = "", best_epoch: int | None = None) -> Path:
    """Loss, accuracy and macro F1 per epoch, train against validation, accuracy and F1 in %, the kept epoch
    marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    xs = [e["epoch"] for e in epochs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=VIEW_DPI)
    try:
        panels = (
            ("loss", "cross-entropy loss", 1, [("train_loss", "train"), ("val_loss", "validation")]),
            (
                "accuracy",
                "accuracy (%)",
                100,
                [("train_acc", "train top-1"), ("val_acc", "validation top-1"), ("val_top5", "validation top-5")],
            ),
            ("macro F1", "macro F1 (%)", 100, [("train_f1", "train"), ("val_f1", "validation")]),
        )
        for ax, (name, ylabel, scale, series) in zip(axes, panels):
            for key, label in series:
                points = [(x, e[key] * scale) for x, e in zip(xs, epochs) if e.get(key) is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if scale == 100:
                ax.yaxis.set_major_formatter(PercentFormatter(100))
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, output)
    finally:
        plt.close(fig)
