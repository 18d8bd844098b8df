"""How an HTTP surface plugs into ``create_app``: its router, and the error shape for its URL prefix."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from pixgen.api.errors import ErrorResponder


@dataclass(frozen=True)
class Surface:
    router: APIRouter
    prefix: str | None = None  # errors under this URL prefix are answered by ``error_response``
    error_response: ErrorResponder | None = None
