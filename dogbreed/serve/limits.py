"""Bounded requests: a body over the size cap is refused (413) as soon as its declared length or its bytes so far
exceed it, before any handler reads it whole; a client that stops sending its body mid-way is cut off (408)."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException

from dogbreed.serve.auth import send_json

CHUNK_TIMEOUT_S = 60.0  # the longest wait for the next piece of a body


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"Upload too large: requests are limited to {limit / 2**20:g} MB (--max-upload-mb).")


class BodyTimeout(HTTPException):
    def __init__(self):
        super().__init__(408, f"The request body stopped arriving for {CHUNK_TIMEOUT_S:.0f} s.")


class BodyLimit:
    """ASGI middleware: counts body bytes as they arrive."""

    def __init__(self, app, max_bytes: int, chunk_timeout_s: float = CHUNK_TIMEOUT_S):
        self.app, self.max_bytes, self.chunk_timeout_s = app, max_bytes, chunk_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, BodyTooLarge(self.max_bytes).detail)
            return
        state = {"received": 0, "complete": False, "started": False}

        async def limited_receive():
            if state["complete"]:  # the body is in: later receives only wait for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.chunk_timeout_s)
            except asyncio.TimeoutError:
                raise BodyTimeout() from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["complete"] = not message.get("more_body", False)
                if state["received"] > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:  # raised where no handler turned it into a response
            if not state["started"]:
                await send_json(send, exc.status_code, exc.detail)
