"""The FastAPI app: routes, limits, the token gate, and the prediction service started and stopped with it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from dogbreed.errors import DogbreedError
from dogbreed.jobqueue import Supervisor
from dogbreed.serve import calls, original, pages
from dogbreed.serve.auth import Gate
from dogbreed.serve.context import ServeSettings
from dogbreed.serve.limits import BodyLimit
from dogbreed.version import __version__

DESCRIPTION = """The dogbreed store over HTTP: the original dog-breed service's API (same paths, shapes and status
codes), the calls it lacked (`/api/classify`, labels, records, runs, models, health) and a web page at `/`.
Breed names: ground truth as `border_collie`, prediction keys as `Border_collie`; uploads accept any spelling."""

# The page's own scripts and styles only; /docs (Swagger UI, served from this package, not a CDN) needs inline
# script, so it is left out of this policy.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def new_supervisor(settings: ServeSettings) -> Supervisor:
    """The prediction workers these ``ServeSettings`` ask for (not started)."""
    return Supervisor(
        settings.db,
        settings.source,
        settings.choice,
        workers=settings.workers,
        threads=settings.threads,
        batch_size=settings.batch_size,
    )


def create_app(settings: ServeSettings, service: Supervisor | None = None) -> FastAPI:
    """The app over ``settings.db``. Its lifespan starts the prediction workers (the model loads once in each)
    before the first request is taken, unless ``service`` is one already started, and stops them at shutdown
    (claimed jobs go back to the queue)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = service or new_supervisor(settings)
        app.state.supervisor = running
        if service is None:
            await run_in_threadpool(running.start, settings.start_timeout_s)
        try:
            yield
        finally:
            await run_in_threadpool(running.stop)

    app = FastAPIOffline(
        title="dogbreed",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        static_url="/static/docs",
    )
    app.state.settings = settings
    app.include_router(original.router)
    app.include_router(calls.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.add_exception_handler(DogbreedError, _user_error)
    app.add_exception_handler(sqlite3.OperationalError, _store_busy)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(Gate, token=settings.token)  # the outermost: nothing runs for a request it refuses
    return app


async def _user_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=getattr(exc, "status_code", 422))


async def _store_busy(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"the store cannot be used right now: {exc}"}, status_code=503)


class SecurityHeaders:
    """ASGI middleware: no content sniffing anywhere; the page policy (own scripts only, no framing) on HTML."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "").startswith("/docs")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
                html = dict(headers).get(b"content-type", b"").startswith(b"text/html")
                if html and not docs:
                    extra += [(b"content-security-policy", PAGE_POLICY.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers + [(k, v) for k, v in extra if k not in names]}
            await send(message)

        await self.app(scope, receive, with_headers)
