"""Request bodies: a size cap for every request (413) and strict JSON reading (400 naming the field)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixgen.errors import InvalidRequest, PayloadTooLarge


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` — at once when Content-Length says so, else while reading.

    The early refusal is shaped by ``respond(path, error)`` (the surface's error body); a chunked body that grows
    too large raises ``PayloadTooLarge`` inside the route's body read, where the normal error handling answers.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, respond) -> None:  # noqa: ANN001
        self.app = app
        self.max_bytes = max_bytes
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"request body is over the {self.max_bytes}-byte limit", field="body")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared > self.max_bytes:
                response = self.respond(scope["path"], too_large)
                await response(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        await self.app(scope, limited, send)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; wrong content type, bad JSON or a non-object are 400 ``invalid_request``."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() not in ("application/json", ""):
        raise InvalidRequest(f"send the request as JSON (Content-Type: application/json), not {ctype!r}",
                             field="Content-Type")
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", field="body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    return data
