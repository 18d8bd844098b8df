"""Request bodies: a size cap for every request (413) and strict, bounded JSON reading (400 naming the field)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixgen.core.text import parse_digits
from pixgen.errors import InvalidRequest, PayloadTooLarge, PixgenError

# A request body is a few levels deep (``{"input": {"keyframes": [{"image": ...}]}}``) and holds tens of values; these
# bounds leave room for any real body and stop a 2 KB ``[[[[...]]]]`` or a million-item list before pydantic sees it.
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 10_000


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` — at once when Content-Length says so, else while reading.

    The early refusal is shaped by ``respond(path, error)`` (the surface's error body); a chunked body that grows
    too large raises ``PayloadTooLarge`` inside the route's body read, where the normal error handling answers.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, respond: Callable[[str, PixgenError], Response]) -> None:
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
            declared = parse_digits(length)
            if (declared is None and length.isdigit()) or (declared or 0) > self.max_bytes:  # too many digits: over
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
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    return data


def parse_json(raw: bytes | str) -> Any:
    """Strict JSON within bounds (its size is the ``BodyLimit``'s): no ``NaN`` / ``Infinity``, at most
    ``MAX_JSON_DEPTH`` levels of nesting and ``MAX_JSON_VALUES`` values; anything else a 400 naming ``body``."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:  # the parser's own recursion: far deeper than MAX_JSON_DEPTH
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", field="body") from None
    _check_shape(data)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep", field="body")


def _check_shape(data: Any) -> None:
    """Walk the parsed value without recursion, stopping at the first bound crossed."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_JSON_VALUES:
            raise InvalidRequest(f"the request body holds more than {MAX_JSON_VALUES} values", field="body")
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
