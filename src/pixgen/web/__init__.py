"""The web page at ``/``: plain HTML, CSS and JavaScript, no build step; it uses only the public job API.

The API app includes ``router``; the files are read from this folder on each request (they are package data).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from pixgen.errors import NotFound

WEB_DIR = Path(__file__).resolve().parent
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "keyframes.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}
# Revalidate on each load (the ETag makes that cheap), so an upgraded server never runs a stale page.
_HEADERS = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.api_route("/web/{name}", methods=["GET", "HEAD"])
def asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise NotFound(f"no file {name!r} in the web page")
    return FileResponse(WEB_DIR / name, media_type=_ASSETS[name], headers=_HEADERS)
