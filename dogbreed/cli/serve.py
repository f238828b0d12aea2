"""serve: the store over HTTP (the original service's API, the richer calls, a web page)."""

from __future__ import annotations

import socket
from typing import Any

import typer

from dogbreed.cli import app
from dogbreed.cli.common import (
    BatchSizeOpt,
    CheckpointOpt,
    DeviceOpt,
    EngineOpt,
    ModelOpt,
    PrecisionOpt,
    RunOpt,
    WeightsOpt,
    db_path,
    err,
    examples,
    open_db,
    out,
    safe,
    warn,
)
from dogbreed.errors import DogbreedError

NEEDS = "fastapi, uvicorn, jinja2, python-multipart and fastapi-offline"


@app.command(
    "serve",
    epilog=examples(
        "dogbreed serve",
        "dogbreed serve --port 9000 --checkpoint checkpoints/demo-run1.pt --workers 2",
        "DOGBREED_TOKEN=$(openssl rand -hex 16) dogbreed serve --host 0.0.0.0",
    ),
)
def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free one, printed when ready)."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        max=256,
        help="Prediction worker processes (default: the engine's, one per core).",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="DOGBREED_TOKEN",
        help="Require 'Authorization: Bearer TOKEN' on every request ($DOGBREED_TOKEN keeps it out of 'ps').",
    ),
    checkpoint: CheckpointOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    run: RunOpt = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    precision: PrecisionOpt = "auto",
    threads: int | None = typer.Option(None, "--threads", min=1, max=1024, help="Compute threads per worker."),
    batch_size: BatchSizeOpt = 16,
    max_upload_mb: float = typer.Option(
        100, "--max-upload-mb", min=0.01, max=4096, help="Largest request body (a photo, or all of a classify call)."
    ),
    wait: float = typer.Option(
        60, "--wait", min=0, max=3600, help="Seconds /api/classify waits for predictions before answering 202."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Print one line per request."),
) -> None:
    """Serve the store over HTTP: the original service's API, /api/classify and a web page at /.

    Predictions run in worker processes that load the model once, through the same job queue as 'predict', so
    several servers and CLI commands can share one store. Ctrl-C or SIGTERM stops it; jobs in flight go back to
    the queue. API docs at /docs.
    """
    from dogbreed.cli.predict import describe_model, resolve_model

    _check_installed()
    from dogbreed.serve.auth import check_exposure

    check_exposure(host, token)
    if token is not None and len(token) < 16:
        warn("a token shorter than 16 characters is easy to guess; 'openssl rand -hex 16' makes a good one")
    sock = _listen(host, port)  # a taken port or a bad address is one line before anything is loaded
    conn = open_db(ctx)
    try:
        source = resolve_model(conn, checkpoint, model, weights, run)
        choice = _choose(conn, source, device, engine, precision)
    finally:
        conn.close()
    if choice.warning:
        warn(choice.warning)
    err.print(safe(describe_model(source, choice)), soft_wrap=True)
    err.print("starting the prediction workers (each loads the model once)...", soft_wrap=True)
    from dogbreed.serve.context import MB, ServeSettings

    settings = ServeSettings(
        db=db_path(ctx),
        source=source,
        choice=choice,
        workers=workers,
        threads=threads,
        batch_size=batch_size,
        host=host,
        token=token,
        max_upload_bytes=int(max_upload_mb * MB),
        wait_s=wait,
    )
    _run(settings, sock, access_log)


def _check_installed() -> None:
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import jinja2  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise DogbreedError(f"'dogbreed serve' needs {NEEDS} ({exc.name} is missing): pip install dogbreed") from None


def _choose(conn: Any, source: Any, device: str, engine: str, precision: str) -> Any:
    from dogbreed.engines import choose_for

    return choose_for(conn, source, device, engine, precision)


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen before the workers start, so a taken port is one line and not a minute of model loading;
    connections that arrive while the workers load wait in the backlog."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise DogbreedError(f"--host {host}: {exc.strerror}; use an address such as 127.0.0.1") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise DogbreedError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _run(settings: Any, sock: socket.socket, access_log: bool) -> None:
    import uvicorn

    from dogbreed.serve.app import create_app, new_supervisor

    service = new_supervisor(settings)
    try:
        service.start(settings.start_timeout_s)
    except KeyboardInterrupt:
        service.stop()
        raise typer.Exit(130) from None
    url = _url(sock)
    out.print(
        f"serving {safe(settings.db)} on {url} (model {safe(settings.source.name)}, {service.workers} worker(s)); "
        f"API docs at {url}/docs; Ctrl-C stops",
        soft_wrap=True,
        highlight=False,
    )
    out.file.flush()
    config = uvicorn.Config(
        create_app(settings, service),
        log_level="warning",
        access_log=access_log,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=15,
        limit_concurrency=512,
        server_header=False,
    )
    server = _Server(config, service)
    try:
        server.run(sockets=[sock])
    finally:
        released = service.stop()
        sock.close()
    if not server.started:
        raise DogbreedError(f"the server on {url} could not start; see the messages above")
    again = f"; they stay queued ({released} handed back)" if released else ""
    err.print(f"stopped{safe(again)}", soft_wrap=True)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """Ctrl-C / SIGTERM: the prediction service stops first (jobs in flight go back to the queue, waiting
        requests are answered 503 at once), then uvicorn closes the connections. The signal is not raised
        again afterwards: stopping is this command's normal end."""

        def __init__(self, config: Any, service: Any):
            super().__init__(config)
            self.service = service

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.service.request_stop()
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

    return Server


def _Server(config: Any, service: Any) -> Any:  # noqa: N802 - a class made on demand (uvicorn loads lazily)
    return _server_class()(config, service)
