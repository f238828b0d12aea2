"""Pictures the server draws: the `view` figure, training curves, and thumbnails re-encoded as JPEG (the stored
bytes themselves are never sent back to a browser: what it gets is always a plain picture this code made).

Matplotlib's pyplot is not thread-safe, and handlers run in a thread pool: figures are drawn one at a time."""

from __future__ import annotations

import io
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request

from dogbreed.serve.context import store

THUMB_SIZES = (256, 800)
_DRAWING = threading.Lock()


def _draw(render: Callable[[Path], Path]) -> bytes:
    """Run a viz renderer (which writes a file) and return the file's bytes."""
    with _DRAWING, tempfile.TemporaryDirectory(prefix="dogbreed-serve-") as tmp:
        return render(Path(tmp) / "figure.png").read_bytes()


def view_png(request: Request, image_id: int, top_k: int) -> bytes | None:
    """The newest prediction's `view` figure, or None when the image has no prediction; 404 for no image."""
    from dogbreed import viz
    from dogbreed.serve.context import image_or_404

    with store(request) as conn:
        image_or_404(conn, image_id)
        try:
            view = viz.image_view(conn, image_id, top_k=top_k)
        except viz.NoPrediction:
            return None
    return _draw(view.draw)


def curves_png(request: Request, run_id: int) -> bytes:
    from dogbreed import viz
    from dogbreed.store.runs import get_run

    with store(request) as conn:
        run = get_run(conn, run_id)
    if run is None:
        raise HTTPException(404, "No training run found.")
    if not run.epochs:
        raise HTTPException(404, f"Run {run_id} has no finished epoch to plot.")
    return _draw(
        lambda out: viz.render_curves(run.epochs, out, title=f"run {run.id}: {run.name}", best_epoch=run.best_epoch)
    )


def thumbnail_jpeg(request: Request, image_id: int, size: int) -> bytes:
    """The photo, upright, at most ``size`` pixels on its longer side, as a fresh JPEG."""
    from dogbreed.imaging import ImageRejected, load_rgb
    from dogbreed.serve.context import not_found
    from dogbreed.store.images import get_image_bytes

    with store(request) as conn:
        data = get_image_bytes(conn, image_id)
    if data is None:
        raise not_found()
    try:
        picture = load_rgb(data, min_side=size)
    except ImageRejected as exc:
        raise HTTPException(422, f"image {image_id} cannot be drawn: {exc}") from None
    picture.thumbnail((size, size))
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=85)
    return buf.getvalue()
