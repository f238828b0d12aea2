"""The web page: a gallery with the upload area, one page per image, the training runs, and the login form for
servers started with --token. Server-rendered with Jinja2 (every value escaped), a little plain JavaScript in
static/app.js, nothing from a CDN."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from dogbreed import records
from dogbreed.serve.auth import COOKIE, token_matches
from dogbreed.serve.context import MAX_ID, ImageId, image_or_404, settings, store

PAGE_SIZE = 24
TOP_K = 10
templates = Jinja2Templates(directory=str(FilePath(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


def percent(p: float | None) -> str:
    return "" if p is None else f"{p:.1%}"


templates.env.filters["percent"] = percent


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    cfg = settings(request)
    context.setdefault("model", cfg.source.name)
    context.setdefault("engine", f"{cfg.choice.engine} {cfg.choice.precision} on {cfg.choice.device}")
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def card(item: Any) -> dict[str, Any]:
    from dogbreed.breeds import display_name

    return {
        "id": item.id,
        "filename": item.filename,
        "breed": display_name(item.top1) or None,
        "probability": item.top1_prob,
        "not_a_dog": records.not_a_dog(item.dog_probability),
        "ground_truth": display_name(item.ground_truth) or None,
    }


@router.get("/", response_class=HTMLResponse)
def gallery(
    request: Request,
    before: int | None = Query(None, ge=1, le=MAX_ID),
    breed: str | None = Query(None, max_length=100),
) -> HTMLResponse:
    from dogbreed.serve.context import resolve_label
    from dogbreed.store.images import newest_images

    chosen = resolve_label(request, breed)
    with store(request) as conn:
        items = newest_images(conn, limit=PAGE_SIZE + 1, before_id=before, breed=chosen.wnid if chosen else None)
    more = len(items) > PAGE_SIZE
    items = items[:PAGE_SIZE]
    return render(
        request,
        "gallery.html",
        cards=[card(i) for i in items],
        older=items[-1].id if more else None,
        first_page=before is None,
        breed=chosen.name if chosen else None,
        breed_query=breed,
        max_mb=settings(request).max_upload_bytes / 2**20,
        max_files=settings(request).max_files,
    )


@router.get("/images/{img_id}", response_class=HTMLResponse)
def image_page(request: Request, img_id: ImageId) -> HTMLResponse:
    from dogbreed.breeds import BREEDS, display_name
    from dogbreed.store.predictions import for_image

    with store(request) as conn:
        image = image_or_404(conn, img_id)
        preds = for_image(conn, img_id)
    pred = preds[0] if preds else None
    return render(
        request,
        "image.html",
        image=image,
        ground_truth=display_name(image.ground_truth) or None,
        pred=pred,
        top=pred.top(TOP_K) if pred else [],
        not_a_dog=records.not_a_dog(pred.dog_probability) if pred else None,
        others=preds[1:],
        breeds=sorted(BREEDS, key=lambda b: b.name.lower()),
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, run: int | None = Query(None, ge=1, le=MAX_ID)) -> HTMLResponse:
    from dogbreed.store.runs import list_runs

    with store(request) as conn:
        runs = list_runs(conn)
    if run is not None and run not in {r.id for r in runs}:
        raise HTTPException(404, "No training run found.")
    shown = run or next((r.id for r in runs if r.epochs_done), None)
    return render(request, "runs.html", runs=runs, shown=shown)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", needed=settings(request).token is not None, wrong=False, model=None)


@router.post("/login", response_model=None)
def login(request: Request, token: str = Form(..., max_length=1000)) -> Any:
    """Browsers cannot send an Authorization header while navigating: the right token sets a cookie instead
    (HttpOnly, SameSite=Strict, so other sites' pages cannot use it)."""
    expected = settings(request).token
    if expected is None:
        return RedirectResponse("/", status_code=303)
    if not token_matches(token, expected):
        return render(request, "login.html", status_code=401, needed=True, wrong=True, model=None)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response
