"""Errors over HTTP: one exception tree (``pixgen.errors``), one body-shaping function per surface.

Each surface registers ``(url_prefix, error_response)``; every error raised under that prefix — our own
``PixgenError``s, FastAPI's validation errors, unknown routes, crashes — is answered by that surface's function.
Paths under no prefix get the job API's shape ``{"code", "message", "field"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pixgen.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PixgenError,
    RangeNotSatisfiable,
    RateLimited,
    Unauthorized,
)
from pixgen.jobs.ids import NOT_A_JOB_ID

log = logging.getLogger("pixgen.api")

ErrorResponder = Callable[[PixgenError], Response]


def job_api_error_body(exc: PixgenError) -> dict[str, Any]:
    body = {"code": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    return body


AUTH_REALM = "pixgen"


def error_headers(exc: PixgenError) -> dict[str, str]:
    """Headers every surface sends with an error: ``WWW-Authenticate`` on 401 (RFC 9110: a 401 names its scheme),
    ``Retry-After`` on 429, ``Allow`` on 405, ``Content-Range`` on 416."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": f'Bearer realm="{AUTH_REALM}"'}
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        return {"Allow": exc.allow}
    if isinstance(exc, RangeNotSatisfiable):
        return {"Content-Range": f"bytes */{exc.size}", "Accept-Ranges": "bytes"}
    return {}


def job_api_error(exc: PixgenError) -> Response:
    return JSONResponse(job_api_error_body(exc), status_code=exc.status, headers=error_headers(exc))


class ErrorRegistry:
    def __init__(self, default: ErrorResponder = job_api_error) -> None:
        self.default = default
        self._by_prefix: list[tuple[str, ErrorResponder]] = []

    def register(self, prefix: str, responder: ErrorResponder) -> None:
        self._by_prefix.append((prefix.rstrip("/"), responder))
        self._by_prefix.sort(key=lambda item: len(item[0]), reverse=True)  # longest prefix wins

    def for_path(self, path: str) -> ErrorResponder:
        for prefix, responder in self._by_prefix:
            if path == prefix or path.startswith(prefix + "/"):
                return responder
        return self.default

    def respond(self, request_path: str, exc: PixgenError) -> Response:
        return self.for_path(request_path)(exc)


def as_pixgen_error(exc: Exception) -> PixgenError:
    """Any exception as a ``PixgenError``: validation → 400 naming the field, unknown route → 404, crash → 500."""
    if isinstance(exc, PixgenError):
        return exc
    if isinstance(exc, RequestValidationError):  # a typed path, query or header parameter (bodies: api.bodies)
        err = (exc.errors() or [{}])[0]
        where, *loc = [str(p) for p in err.get("loc", ())] or ["body"]
        field = ".".join(loc) or where
        if err.get("type") == NOT_A_JOB_ID:  # a job id's form: no such job in a path, a bad value in a query
            message = str(err.get("msg", f"no job in {field}"))
            return NotFound(message, field=field) if where == "path" else InvalidRequest(message, field=field)
        return InvalidRequest(f"{field}: {err.get('msg', 'invalid value')}", field=field)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return NotFound("no such endpoint")
        if exc.status_code == 405:
            return MethodNotAllowed(f"{exc.detail}: this endpoint does not take that method")
        return PixgenError(str(exc.detail))
    return PixgenError("internal error; the server log has the details")


def allowed_methods(request: Request) -> str:
    """The methods the routes of this path take (Starlette's 405 names only the first route's). Of the routes
    whose template fits, the most literal ones count: ``/v1/videos/extensions`` is not ``/v1/videos/{video_id}``."""
    fits = [r for r in _flat(request.app.router.routes) if r.matches(request.scope)[0] is not Match.NONE]
    if not fits:
        return ""
    fewest = min(getattr(r, "path", "").count("{") for r in fits)
    methods = {m for r in fits if getattr(r, "path", "").count("{") == fewest for m in getattr(r, "methods", ()) or ()}
    return ", ".join(sorted(methods))


def _flat(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes, with those of included routers (FastAPI keeps them as one entry each) taken out."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flat(inner.routes)
        else:
            yield route


def install_error_handlers(app: FastAPI, registry: ErrorRegistry) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        error = as_pixgen_error(exc)
        if isinstance(exc, RequestValidationError) and isinstance(error, NotFound):
            # ``GET /v1/videos/extensions`` fits ``/v1/videos/{video_id}``, whose id it is not; the path itself is
            # ``POST /v1/videos/extensions``'s: that is a method this path does not take.
            allow = allowed_methods(request)
            if allow and request.method not in allow.split(", "):
                error = MethodNotAllowed("Method Not Allowed: this endpoint does not take that method")
        if isinstance(error, MethodNotAllowed):
            error.allow = allowed_methods(request)
        if error.status >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return registry.respond(request.url.path, error)

    for kind in (PixgenError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
