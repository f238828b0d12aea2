"""The original service's API: same paths, shapes and status codes, so its clients and its tests keep working.

    POST   /api/upload             multipart 'file', query filename, ground_truth -> 201 {id, filename, ground_truth,
                                   predictions: null}
    POST   /api/predict?img_id=N   -> {"data": {"task_id", "state", "status"}, "message": "Task received"}
    GET    /api/images             -> {"data": [{id, filename, ground_truth, predictions}]}
    GET    /api/images/{id}        -> {"data": {id, filename, ground_truth, predictions}}
    GET    /api/images/{id}/view   -> the `view` figure (PNG); 204 before any prediction
    GET    /api/tasks/{task_id}    -> {task_id, task_status, task_result}
    GET    /api/stats/             -> the training history: {measure: {epoch index: value}}
    DELETE /api/images/{id}/       -> the deleted id

An unknown id is 404 ``{"detail": "No images found with that id."}``; an id below 1 or not an integer is 422.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from dogbreed.serve import shapes
from dogbreed.serve.context import (
    MAX_ID,
    ImageId,
    image_or_404,
    is_image_type,
    newest_prediction,
    not_found,
    resolve_label,
    service,
    settings,
    store,
)

router = APIRouter(prefix="/api", tags=["the original service"])


class Device(str, enum.Enum):
    cpu = "cpu"
    gpu = "gpu"
    mps = "mps"


@router.post("/upload", status_code=201, name="upload_image")
def upload_image(
    request: Request,
    file: UploadFile = File(..., description="The photo."),
    filename: str | None = Query(None, max_length=255, description="The name to store (default: the file's)."),
    ground_truth: str | None = Query(None, max_length=100, description="Its breed, in any spelling."),
) -> Any:
    """Store one photo (not predicted yet). The same bytes uploaded again answer 200 with the stored image."""
    from dogbreed.ingest import upload_bytes

    if not is_image_type(file.content_type):
        raise HTTPException(422, "Invalid image file extension.")
    breed = resolve_label(request, ground_truth)
    name = filename or file.filename or "upload"
    data = file.file.read()  # already within the request size cap (limits.BodyLimit)
    with store(request) as conn:
        result = upload_bytes(conn, [(name, data)], ground_truth=breed)[0]
        if result.status == "refused":
            raise HTTPException(422, f"{result.path}: {result.reason}")
        pred = newest_prediction(conn, result.image_id) if result.status == "duplicate" else None
    body = shapes.original_image(result.image, pred)
    return body if result.status == "new" else JSONResponse(body, status_code=200)


@router.post("/predict", name="perform_prediction")
def perform_prediction(
    request: Request,
    img_id: int = Query(..., ge=1, le=MAX_ID, description="The image to predict."),
    device: Device | None = Query(
        None, description="Accepted for the original's clients; the server's --device runs it."
    ),
) -> dict[str, Any]:
    """Queue a prediction of one stored image; poll /api/tasks/{task_id} for its state and result."""
    from dogbreed.store.jobs import job_states, plan_each

    with store(request) as conn:
        image_or_404(conn, img_id)
        job_id = plan_each(conn, [img_id], settings(request).source.identity).get(img_id)
        if job_id is None:  # deleted between the two statements
            raise not_found()
        service(request).submit([job_id])
        state = shapes.TASK_STATES.get(job_states(conn, [job_id]).get(job_id, "queued"), "PENDING")
    return {"data": {"task_id": str(job_id), "state": state, "status": state}, "message": "Task received"}


@router.get("/images", name="list_images")
def list_images(request: Request) -> dict[str, Any]:
    """Every stored image with its newest prediction (never the bytes). For pages and filters: /api/records."""
    from dogbreed.store.images import list_images as page
    from dogbreed.store.predictions import for_image

    rows = []
    with store(request) as conn:
        after = 0
        while batch := page(conn, limit=500, after_id=after):
            for image in batch:
                preds = for_image(conn, image.id) if image.top1 is not None else []
                rows.append(shapes.original_image(image, preds[0] if preds else None))
            after = batch[-1].id
    return {"data": rows}


@router.get("/images/{img_id}", name="get_image_by_id")
def get_image_by_id(request: Request, img_id: ImageId) -> dict[str, Any]:
    """One image with its newest prediction as {breed: probability}."""
    with store(request) as conn:
        image = image_or_404(conn, img_id)
        return {"data": shapes.original_image(image, newest_prediction(conn, img_id))}


@router.get(
    "/images/{img_id}/view",
    name="view_prediction_results",
    responses={200: {"content": {"image/png": {}}}, 204: {"description": "No prediction yet."}},
)
async def view_prediction_results(request: Request, img_id: ImageId, top_k: int = Query(10, ge=1, le=120)) -> Any:
    """The `dogbreed view` figure of the image's newest prediction (PNG); 204 when it has none yet."""
    from dogbreed.serve.figures import view_png

    png = await run_in_threadpool(view_png, request, img_id, top_k)
    if png is None:
        return Response(status_code=204)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/tasks/{task_id}", name="get_task_status")
def get_task_status(request: Request, task_id: Annotated[int, Path(ge=1, le=MAX_ID)]) -> dict[str, Any]:
    """A prediction job: PENDING, STARTED, SUCCESS (with the image it predicted) or FAILURE (with the reason)."""
    from dogbreed.store.images import get_image
    from dogbreed.store.jobs import get_job, job_states
    from dogbreed.store.predictions import for_jobs

    with store(request) as conn:
        job = get_job(conn, task_id)
        if job is None:
            raise HTTPException(404, "No task found with that id.")
        status = job_states(conn, [task_id]).get(task_id, job.status)  # this server's own running jobs are alive
        result = for_jobs(conn, [task_id])
        pred = result[0].prediction if result else None
        return shapes.task(status, job, get_image(conn, job.image_id), pred)


@router.get("/stats/", name="get_training_stats")
def get_training_stats(request: Request, run: int | None = Query(None, ge=1, le=MAX_ID)) -> dict[str, Any]:
    """Loss, accuracy and F1 ('score') per epoch of the served model's training run, else of the newest run with
    epochs (or of ``run``)."""
    from dogbreed.store.runs import get_run, list_runs

    with store(request) as conn:
        run_id = run or settings(request).source.run_id
        if run_id is None:
            run_id = next((r.id for r in list_runs(conn) if r.epochs_done), None)
        record = get_run(conn, run_id) if run_id is not None else None
        if record is None:
            raise HTTPException(404, "No training run found." if run else "No training runs yet.")
        return shapes.training_history(record)


@router.delete("/images/{img_id}/", name="delete_image")
def delete_image(request: Request, img_id: ImageId) -> int:
    """Delete an image with its bytes, predictions and jobs; answers its id."""
    from dogbreed.store.images import delete_images

    with store(request) as conn:
        if not delete_images(conn, [img_id]):
            raise not_found()
    return img_id
