"""How an HTTP surface plugs into ``create_app``: its router, and the error shape for its URL prefix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from pixgen.api.errors import ErrorResponder
from pixgen.engine.base import Capabilities


@dataclass(frozen=True)
class Surface:
    router: APIRouter
    prefix: str | None = None  # errors under this URL prefix are answered by ``error_response``
    error_response: ErrorResponder | None = None
    # the document's request bodies narrowed to the capabilities, for fields of the surface's own (OpenAI's size)
    narrow: Callable[[dict[str, dict[str, Any]], Capabilities], None] | None = None
