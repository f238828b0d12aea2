"""What the original service lacked: classify in one call, correct a label, browse with pages and filters, the
full image record, runs, models, health and thumbnails. Own paths, so the original shapes stay exact."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dogbreed import labels, records
from dogbreed.errors import DogbreedError
from dogbreed.jobqueue import Queued, ServiceStopping, queue_photos
from dogbreed.serve import shapes
from dogbreed.serve.context import (
    MAX_ID,
    ImageId,
    image_or_404,
    is_image_type,
    newest_prediction,
    resolve_label,
    service,
    settings,
    store,
)

router = APIRouter(prefix="/api", tags=["dogbreed"])


class Label(BaseModel):
    ground_truth: str | None = Field(None, max_length=100, description="A breed in any spelling; null clears it.")


@router.post("/classify", name="classify")
async def classify(
    request: Request,
    files: list[UploadFile] = File(..., description="One or more photos."),
    ground_truth: str | None = Query(None, max_length=100, description="The breed of every photo (optional)."),
    top_k: int = Query(3, ge=1, le=120),
    wait: float | None = Query(None, ge=0, le=600, description="Seconds to wait for the predictions."),
) -> Any:
    """Store photos and classify them with the server's model, as `dogbreed predict PHOTO` does: breeds, dog
    probability and the not-a-dog mark per photo. A photo that cannot be read is refused alone. Answers 202 with
    the task ids of the photos still being predicted when ``wait`` runs out."""
    from dogbreed.ingest import UploadResult

    cfg = settings(request)
    if len(files) > cfg.max_files:
        raise HTTPException(422, f"At most {cfg.max_files} photos per request; send the rest in another.")
    breed = resolve_label(request, ground_truth)
    photos, refused = [], {}
    for i, f in enumerate(files):
        name = f.filename or f"photo{i + 1}"
        if is_image_type(f.content_type):
            photos.append((name, await f.read()))
        else:
            refused[i] = UploadResult(name, "refused", f"not an image (content type {f.content_type or 'none'})")
    try:
        queued = await run_in_threadpool(_queue, request, photos, breed)
    except ServiceStopping as exc:
        raise HTTPException(503, str(exc)) from None
    await _wait(queued, cfg.wait_s if wait is None else wait)
    uploads = iter(queued.uploads)
    in_order = [refused[i] if i in refused else next(uploads) for i in range(len(files))]
    items = await run_in_threadpool(_answers, request, queued, in_order, top_k)
    if all(item["upload"] == "refused" for item in items):
        raise HTTPException(422, "; ".join(f"{item['filename']}: {item['reason']}" for item in items))
    # The status comes from the states answered (one snapshot), not from the wait: a job that finishes between the
    # two must not give a 202 whose items all say SUCCESS.
    pending = any(item["state"] in ("PENDING", "STARTED") for item in items)
    return JSONResponse({"data": items}, status_code=202 if pending else 200)


def _queue(request: Request, photos: list[tuple[str, bytes]], breed: Any) -> Queued:
    with store(request) as conn:
        return queue_photos(conn, service(request), photos, breed)


async def _wait(queued: Queued, seconds: float) -> None:
    """Wait for the writer thread to settle the ticket, at most ``seconds`` (then the jobs go on)."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(queued.ticket.future), seconds)
    except asyncio.TimeoutError:
        pass
    except ServiceStopping as exc:
        raise HTTPException(503, str(exc)) from None


def _answers(request: Request, queued: Queued, uploads: list[Any], top_k: int) -> list[dict[str, Any]]:
    from dogbreed.store import snapshot
    from dogbreed.store.jobs import job_states
    from dogbreed.store.predictions import for_jobs

    with store(request) as conn, snapshot(conn):  # states and results from one moment
        results = {r.job_id: r for r in for_jobs(conn, list(queued.jobs.values()))}
        states = job_states(conn, list(queued.jobs.values()))
    items = []
    for upload in uploads:
        job_id = queued.jobs.get(upload.image_id) if upload.image_id is not None else None
        state = shapes.TASK_STATES.get(states.get(job_id, ""), "FAILURE") if job_id else "FAILURE"
        if upload.status == "refused":
            state = "REFUSED"
        items.append(shapes.classified(upload, job_id, state, results.get(job_id), top_k))
    return items


@router.put("/images/{img_id}/label", name="set_label")
def set_label(request: Request, img_id: ImageId, label: Label) -> dict[str, Any]:
    """Correct an image's ground truth (any spelling the CLI accepts, your own breeds too; null clears it). Every
    change is recorded, as `dogbreed label` records it."""
    from dogbreed.store.images import get_image

    breed = resolve_label(request, label.ground_truth)
    with store(request) as conn:
        image_or_404(conn, img_id)
        try:
            labels.label(conn, [img_id], breed.name if breed else None)
        except DogbreedError as exc:  # deleted meanwhile, or the breed removed meanwhile
            raise HTTPException(404 if "no image" in str(exc) else 422, str(exc)) from None
        names = labels.vocabulary(conn)
        return {"data": shapes.original_image(get_image(conn, img_id), newest_prediction(conn, img_id), names)}


@router.get("/records", name="list_records")
def list_records(
    request: Request,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ID),
    after: int | None = Query(None, ge=0, le=MAX_ID, description="Only ids above this (fast deep paging)."),
    breed: str | None = Query(None, max_length=100, description="Only images with this ground truth."),
) -> dict[str, Any]:
    """A page of images as `dogbreed list --json` gives them; ``next_after`` continues after this page."""
    from dogbreed.store.images import list_images

    wnid = resolve_label(request, breed).wnid if breed else None
    with store(request) as conn:
        rows = list_images(conn, limit=limit, offset=offset, after_id=after, breed=wnid)
        data = [records.listing_row(r, labels.vocabulary(conn)) for r in rows]
    return {"data": data, "next_after": rows[-1].id if len(rows) == limit else None}


@router.get("/records/{img_id}", name="get_record")
def get_record(request: Request, img_id: ImageId, top_k: int = Query(5, ge=1, le=120)) -> dict[str, Any]:
    """The full image record as `dogbreed show --json` gives it, with every prediction, newest first."""
    from dogbreed.store.predictions import for_image

    with store(request) as conn:
        image = image_or_404(conn, img_id)
        return records.image_record(image, for_image(conn, img_id), top_k, labels.vocabulary(conn))


@router.get("/images/{img_id}/thumbnail", name="thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(request: Request, img_id: ImageId, size: int = Query(256)) -> Response:
    """The photo, upright, re-encoded as a JPEG of at most ``size`` (256 or 800) pixels."""
    from dogbreed.serve.figures import THUMB_SIZES, thumbnail_jpeg

    if size not in THUMB_SIZES:
        raise HTTPException(422, f"size is one of {', '.join(map(str, THUMB_SIZES))}")
    data = await run_in_threadpool(thumbnail_jpeg, request, img_id, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/runs", name="list_runs")
def list_runs(request: Request) -> dict[str, Any]:
    """Training runs, newest first, as `dogbreed stats --json` lists them."""
    from dogbreed.store.runs import list_runs as runs

    with store(request) as conn:
        return {"data": [records.run_record(r) for r in runs(conn)]}


@router.get("/runs/{run_id}", name="get_run")
def get_run(request: Request, run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
    """One run with its epochs and test report, as `dogbreed stats RUN --json` gives it."""
    from dogbreed.store.runs import get_run as run

    with store(request) as conn:
        record = run(conn, run_id)
        if record is None:
            raise HTTPException(404, "No training run found.")
        return records.run_record(record)


@router.get("/runs/{run_id}/curves", name="run_curves", responses={200: {"content": {"image/png": {}}}})
async def run_curves(request: Request, run_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> Response:
    """Loss, accuracy and macro F1 per epoch (`dogbreed stats RUN --plot`), as a PNG."""
    from dogbreed.serve.figures import curves_png

    return Response(await run_in_threadpool(curves_png, request, run_id), media_type="image/png")


@router.get("/models", name="models")
def models(request: Request, ready: bool = Query(True, description="Also list torchvision's ready models.")) -> Any:
    """The model this server predicts with, the store's default for the CLI, trained runs and ready models."""
    from dogbreed.errors import DogbreedError
    from dogbreed.models import sources
    from dogbreed.store.runs import finished_with_checkpoint

    cfg = settings(request)
    s, c = cfg.source, cfg.choice
    serving = {"model": s.name, "kind": s.kind, "key": s.key, "run_id": s.run_id, "reason": s.reason or None}
    serving.update(engine=c.engine, precision=c.precision, device=c.device, engine_note=c.note)
    with store(request) as conn:
        try:
            chosen = sources.resolve(conn)
            default = {"model": chosen.name, "kind": chosen.kind, "reason": chosen.reason, "error": None}
        except DogbreedError as exc:
            default = {"model": None, "kind": None, "reason": None, "error": str(exc)}
        runs = [
            {k: getattr(r, k) for k in ("id", "name", "model", "mode", "best_val_acc", "test_acc", "checkpoint_path")}
            for r in finished_with_checkpoint(conn)
        ]
    ready_rows = []
    if ready:
        from dogbreed.models import zoo

        ready_rows = [m.to_dict() for m in zoo.ready_models()]
    return {"serving": serving, "default": default, "runs": runs, "ready_models": ready_rows}


class NewBreed(BaseModel):
    name: str = Field(..., max_length=200, description="The breed's name (case and separators do not matter).")
    note: str | None = Field(None, max_length=1000)


def _breed_row(b: Any, names: Any) -> dict[str, Any]:
    return {
        "wnid": b.wnid,
        "name": b.name,
        "own": b.own,
        "note": b.note or None,
        "label": shapes.folder_label(b.wnid, names),
        "ground_truth": shapes.ground_truth_label(b.wnid, names),
    }


@router.get("/breeds", name="breeds")
def breeds(request: Request) -> dict[str, Any]:
    """Stanford's 120 breeds and the store's own, with every spelling the API uses."""
    with store(request) as conn:
        names = labels.vocabulary(conn)
    return {"data": [_breed_row(b, names) for b in names.breeds]}


@router.post("/breeds", name="add_breed", status_code=201)
def add_breed(request: Request, new: NewBreed) -> dict[str, Any]:
    """Register a breed of your own, as `dogbreed breeds add NAME` does (422 when the name is taken or unusable)."""
    with store(request) as conn:
        try:
            breed = labels.add_breed(conn, new.name, new.note)
        except DogbreedError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"data": _breed_row(breed, labels.vocabulary(conn))}


@router.delete("/breeds/{name}", name="remove_breed")
def remove_breed(request: Request, name: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
    """Forget one of your breeds, named exactly (409 while images or runs use it)."""
    with store(request) as conn:
        try:
            breed = labels.remove_breed(conn, name)
        except DogbreedError as exc:
            status = 409 if "cannot remove" in str(exc) else 404
            raise HTTPException(status, str(exc)) from None
    return {"data": {"wnid": breed.wnid, "name": breed.name}}


@router.get("/health", name="health")
def health(request: Request) -> JSONResponse:
    """200 while the workers are ready to predict, 503 otherwise; the queue and counters either way."""
    from dataclasses import asdict

    stats = service(request).stats()
    s = settings(request).source
    body = {"status": stats.state, "model": s.name, **asdict(stats)}
    body.pop("state")
    return JSONResponse(body, status_code=200 if stats.state == "ready" else 503)
