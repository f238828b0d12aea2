"""Figures: the `view` picture (photo + top-k bars), training curves and the confusion matrix. Matplotlib's Agg
backend; every figure is closed; text that came from files or checkpoints is drawn literally (no mathtext)."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
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
    plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text: selectable, searchable, smaller
    return plt


def title_color(top1: str, ground_truth: str | None) -> str:
    """Green when the prediction matches the ground truth, red when it does not, black without one."""
    if ground_truth is None:
        return "black"
    return "green" if top1 == ground_truth else "red"


FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def _save(fig: Any, output: Path) -> Path:
    """Render to memory in the format the file name asks for, then write: a bad output path is a one-line error
    and never leaves half a file."""
    from dogbreed.files import NotWritable, write_regular_file

    suffix = Path(output).suffix.lower() or ".png"
    if suffix not in FIGURE_FORMATS:
        raise DogbreedError(f"{output}: figures are written as {', '.join(FIGURE_FORMATS)} files; name it so")
    buf = io.BytesIO()
    fig.savefig(buf, format=FIGURE_FORMATS[suffix], dpi=fig.dpi)
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
    ground_truth_name: str | None = None,
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
            caption.append(f"ground truth: {ground_truth_name or display_name(ground_truth)}")
        ax_img.set_title("\n".join(caption), fontsize=9)
        names = [s.breed for s in top][::-1]
        probs = [s.probability * 100 for s in top][::-1]
        colors = ["tab:green" if ground_truth and s.wnid == ground_truth else "tab:blue" for s in top][::-1]
        ax_bar.barh(names, probs, color=colors)
        ax_bar.set_xlabel("probability among the breeds the model knows (%)")
        ax_bar.set_xlim(0, 100)
        for y, p in enumerate(probs):
            ax_bar.text(min(p + 1, 88), y, f"{p:.1f}%", va="center", fontsize=8)
        notes = [model] if model else []
        if dog_probability is not None:
            notes.append(f"a dog at all: {dog_probability:.1%}; the bars: which breed, if it is one of these")
        ax_bar.set_title("\n".join(notes), fontsize=8)
        best = top[0]
        title = f"{best.breed} ({best.probability * 100:.1f}% among breeds)"
        color = title_color(best.wnid, ground_truth)
        if dog_probability is not None and dog_probability < DOG_THRESHOLD:
            title += f"  -  probably NOT a dog ({dog_probability:.1%})"
            color = "red" if ground_truth is None else color
        fig.suptitle(title, color=color, fontsize=15, fontweight="bold")
        fig.tight_layout()
        return _save(fig, output)
    finally:
        plt.close(fig)


class NoPrediction(DogbreedError):
    """The image has no prediction (from the model asked for) to draw."""


@dataclass(frozen=True)
class ImageView:
    """What the `view` figure of one stored image shows, read from the store (``image_view``); ``draw`` renders
    it. Reading and drawing are apart so that a server reads under its store connection and draws outside it."""

    image_bytes: bytes
    top: Sequence[Any]
    ground_truth: str | None
    ground_truth_name: str | None
    heading: str
    model: str
    dog_probability: float | None

    def draw(self, output: Path) -> Path:
        return render_view(
            self.image_bytes,
            self.top,
            self.ground_truth,
            output,
            heading=self.heading,
            model=self.model,
            dog_probability=self.dog_probability,
            ground_truth_name=self.ground_truth_name,
        )


def image_view(conn: sqlite3.Connection, image_id: int, *, top_k: int = 10, source: Any = None) -> ImageView:
    """The `view` figure of stored image ``image_id``: its newest prediction, or the newest by ``source`` (a
    ``ModelSource``). Raises ``DogbreedError`` for no such image, ``NoPrediction`` when there is nothing to draw."""
    from dogbreed import labels
    from dogbreed.models.sources import SYNTHETIC_NOTE, learnt_from_synthetic
    from dogbreed.store import images, predictions

    image = images.get_image(conn, image_id)
    if image is None:
        raise DogbreedError(f"no image with id {image_id}; see 'dogbreed list'")
    preds = predictions.for_image(conn, image_id)
    if source is not None:
        preds = [p for p in preds if p.model_key == source.key]
    if not preds and source is not None:
        raise NoPrediction(
            f"image {image_id} has no prediction from {source.name}; run "
            f"'dogbreed predict --id {image_id} {source.as_options()}' first"
        )
    if not preds:
        raise NoPrediction(f"image {image_id} has no prediction yet; run 'dogbreed predict --id {image_id}'")
    pred = preds[0]
    synthetic = f"\n{SYNTHETIC_NOTE}" if learnt_from_synthetic(conn, pred.model_key) else ""
    return ImageView(
        images.get_image_bytes(conn, image_id),
        pred.top(top_k),
        image.ground_truth,
        labels.vocabulary(conn).name(image.ground_truth) or None,
        heading=f"image {image_id}: {image.filename}",
        model=f"{pred.model} on {pred.device}, {pred.created_at[:19].replace('T', ' ')}{synthetic}",
        dog_probability=pred.dog_probability,
    )


def render_curves(epochs: list[dict[str, Any]], output: Path, title: str = "", best_epoch: int | None = None) -> Path:
    """Loss, accuracy and macro F1 per epoch, train against validation, each on the scale the tables use
    (accuracy in %, F1 from 0 to 1), the kept epoch marked."""
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
            ("macro F1", "macro F1 (0-1, as in the tables)", 1, [("train_f1", "train"), ("val_f1", "validation")]),
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


ANNOTATE_UP_TO = 30  # a matrix this small is drawn whole with counts; larger ones get the zoom panel too
ZOOM_BREEDS = 20


def _confusion_order(cm: Any) -> list[int]:
    """Rows/columns ordered so that breeds confused with each other sit together: average-linkage clustering on
    how often two breeds are mistaken for each other (each row as a share of its pictures), leaves in optimal
    order."""
    import numpy as np

    n = cm.shape[0]
    if n < 3:
        return list(range(n))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    np.fill_diagonal(rates, 0)
    similarity = rates + rates.T
    distance = 1.0 - similarity / max(float(similarity.max()), 1e-12)
    np.fill_diagonal(distance, 0)
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), "average", optimal_ordering=True))]


def _most_confused_breeds(cm: Any, k: int) -> list[int]:
    """The ``k`` breeds involved in the most mistakes (as the truth or as the answer)."""
    import numpy as np

    off = cm.copy()
    np.fill_diagonal(off, 0)
    involvement = off.sum(axis=0) + off.sum(axis=1)
    ranked = [int(i) for i in np.argsort(-involvement, kind="stable") if involvement[i] > 0]
    return ranked[:k]


def _draw_matrix(ax: Any, cm: Any, names: list[str], *, annotate: bool, fontsize: float, title: str) -> Any:
    """Rows (true breed) as shares of their pictures: the diagonal is each breed's recall, off the diagonal where
    its pictures went. Annotated: every count in its cell."""
    import numpy as np

    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates * 100, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    _label_axes(ax, names, fontsize, title)
    if annotate:
        for i, j in zip(*np.nonzero(cm)):
            color = "white" if rates[i, j] > 0.6 else ("black" if i == j else "darkred")
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=max(fontsize - 1, 5), color=color)
    return image


def _draw_mistakes(ax: Any, cm: Any, names: list[str], *, fontsize: float, title: str) -> Any:
    """Only the mistakes, so that a 5% confusion is as visible as it matters: off-diagonal cells as shares of the
    true breed's pictures on a scale that tops at the largest one; the diagonal (right answers) in grey."""
    import numpy as np

    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) * 100
    np.fill_diagonal(rates, np.nan)
    top = float(np.nanmax(rates)) if n_mistakes(cm) else 1.0
    cmap = _pyplot().get_cmap("Reds").with_extremes(bad="0.8", under="white")  # bad: the diagonal; under: none
    image = ax.imshow(np.ma.masked_invalid(rates), cmap=cmap, vmin=1e-9, vmax=top, interpolation="nearest")
    _label_axes(ax, names, fontsize, title)
    return image


def n_mistakes(cm: Any) -> int:
    import numpy as np

    return int(cm.sum() - np.trace(cm))


def _label_axes(ax: Any, names: list[str], fontsize: float, title: str) -> None:
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("predicted breed")
    ax.set_ylabel("true breed")
    ax.set_title(title, fontsize=11)


def render_confusion(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    classes: Sequence[str],
    output: Path,
    title: str = "",
    class_names: dict[str, str] | None = None,
) -> Path:
    """The confusion matrix, readable at 120 breeds: only breeds in the truth or the answers, ordered by
    clustering so that breeds mistaken for each other form blocks along the diagonal, names on both axes.

    Up to ANNOTATE_UP_TO breeds: one matrix, rows as shares of each true breed's pictures (the diagonal is recall),
    every count written in its cell. Beyond: on the left every breed with only the mistakes coloured (the diagonal
    grey, the scale topping at the largest confusion, so that small confusions show); on the right the
    ZOOM_BREEDS breeds involved in the most mistakes, in the same order, with counts."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from dogbreed.breeds import display_name

    if not len(y_true):
        raise DogbreedError("no predictions to draw a confusion matrix from")
    present = sorted(set(int(v) for v in y_true) | set(int(v) for v in y_pred))
    cm = confusion_matrix(y_true, y_pred, labels=present)
    order = _confusion_order(cm)
    cm = cm[np.ix_(order, order)]
    names = [display_name(classes[present[i]], class_names) for i in order]
    n = len(names)
    correct = int(np.trace(cm))
    heading = f"{title}  -  " if title else ""
    heading += f"{correct} of {int(cm.sum())} right ({correct / cm.sum():.1%}), {n} breeds"
    plt = _pyplot()
    if n <= ANNOTATE_UP_TO:
        side = max(6.0, 2.5 + 0.32 * n)
        fig, ax = plt.subplots(figsize=(side + 1.5, side + 0.5), dpi=VIEW_DPI, layout="constrained")
    else:
        side = max(10.0, 0.1 * n + 2.5)
        fig, (ax, ax_zoom) = plt.subplots(
            1,
            2,
            figsize=(side * 1.9, side),
            dpi=VIEW_DPI,
            layout="constrained",
            gridspec_kw={"width_ratios": [1.1, 0.8]},
        )
    try:
        if n <= ANNOTATE_UP_TO:
            image = _draw_matrix(
                ax, cm, names, annotate=True, fontsize=8 if n > 15 else 9, title="rows: true breed (% of its pictures)"
            )
            fig.colorbar(image, ax=ax, shrink=0.7, label="% of the true breed's pictures")
        else:
            image = _draw_mistakes(
                ax, cm, names, fontsize=max(3.5, min(7.0, 640 / n)), title=f"mistakes among all {n} breeds (clustered)"
            )
            fig.colorbar(image, ax=ax, shrink=0.5, label="% of the true breed's pictures (mistakes)")
            zoom = sorted(_most_confused_breeds(cm, ZOOM_BREEDS))  # sorted: the clustered order, pairs side by side
            if zoom:
                image = _draw_matrix(
                    ax_zoom,
                    cm[np.ix_(zoom, zoom)],
                    [names[i] for i in zoom],
                    annotate=True,
                    fontsize=8,
                    title=f"the {len(zoom)} breeds in the most mistakes (counts)",
                )
                fig.colorbar(image, ax=ax_zoom, shrink=0.5, label="% of the true breed's pictures")
            else:
                ax_zoom.set_axis_off()
                ax_zoom.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
        fig.suptitle(heading, fontsize=13)
        return _save(fig, output)
    finally:
        plt.close(fig)
