"""Who may call the server. Loopback by default; any other address needs a token (``Authorization: Bearer
TOKEN``, or the cookie the login page sets for browsers). A request without the right token is answered 401
before anything is read or written. Without a token (loopback only) the Host header must name the loopback, so a
web page cannot reach the server by rebinding its own name to 127.0.0.1, and a state-changing request that a
browser marks as coming from another origin is refused (403)."""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from dogbreed.errors import DogbreedError

COOKIE = "dogbreed_token"
OPEN_PATHS = ("/login", "/static/")  # the login form and the page's own CSS/JS: no store data behind them
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise DogbreedError(
            f"--host {host} lets other machines reach the store: pass --token TOKEN (or set DOGBREED_TOKEN); "
            "clients then send 'Authorization: Bearer TOKEN'"
        )


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _presented_token(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no token
        return None
    return cookie[COOKIE].value if COOKIE in cookie else None


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def refusal(scope: dict, token: str | None) -> tuple[int, str] | None:
    """(status, detail) when this request must be refused, else None."""
    headers = _headers(scope)
    path = scope.get("path", "")
    if token is not None and not path.startswith(OPEN_PATHS):
        if not token_matches(_presented_token(headers), token):
            return 401, "Missing or wrong token: send 'Authorization: Bearer TOKEN' (browsers: sign in at /login)."
    if token is None and not is_loopback(_host_name(headers.get("host", "127.0.0.1"))):
        return 403, "This server answers only to its loopback name (start it with --token to serve other hosts)."
    origin = headers.get("origin")
    if scope.get("method") in UNSAFE and origin and origin != "null":
        if urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
            return 403, "Cross-origin requests that change the store are refused."
    return None


class Gate:
    """ASGI middleware applying ``refusal`` before the app sees the request (and before its body is read)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refused = refusal(scope, self.token)
            if refused is not None:
                await send_json(send, *refused, extra=[(b"www-authenticate", b"Bearer")] if refused[0] == 401 else [])
                return
        await self.app(scope, receive, send)


async def send_json(send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
