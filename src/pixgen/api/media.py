"""Signed, expiring, absolute media links, and the route that serves them (video/mp4 with range requests).

A link is ``{base}/media/{job_id}/{variant}?exp={unix}&sig={hmac}``, the HMAC-SHA256 over ``path + "\n" + exp``
with the server's signing secret. The route never turns request text into a path: the job id must match
``job_[0-9a-f]{24}``, the variant is one of two names, and the file name comes from the job's database row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from pixgen.api.context import AppContext, Ctx
from pixgen.errors import NotFound, PixgenError
from pixgen.jobs.store import Job

VARIANTS = {"video.mp4": ("video_file", "video/mp4"), "thumbnail.jpg": ("thumb_file", "image/jpeg")}
JOB_ID = re.compile(r"^job_[0-9a-f]{24}$")

router = APIRouter(tags=["media"])


class Forbidden(PixgenError):
    code = "forbidden"
    status = 403


def _signature(secret: str, path: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def media_path(job_id: str, variant: str = "video.mp4") -> str:
    return f"/media/{job_id}/{variant}"


def sign_path(secret: str, path: str, ttl: int, now: float | None = None) -> tuple[str, int]:
    """``path?exp=…&sig=…`` valid for ``ttl`` seconds, and its expiry time."""
    expires = int((now if now is not None else time.time()) + ttl)
    return f"{path}?exp={expires}&sig={_signature(secret, path, expires)}", expires


def verify(secret: str, path: str, expires: str | None, sig: str | None, now: float | None = None) -> None:
    """Raise ``Forbidden`` unless ``sig`` signs ``path`` until ``expires`` and that time is still ahead."""
    if not expires or not sig or not expires.isdigit():
        raise Forbidden("this media link is not signed")
    if not hmac.compare_digest(_signature(secret, path, int(expires)).encode(), sig.encode()):
        raise Forbidden("this media link's signature is not valid")
    if int(expires) < (now if now is not None else time.time()):
        raise Forbidden("this media link has expired; fetch the job again for a fresh one")


def base_url(ctx: AppContext, request: Request) -> str:
    """The server's public address: ``public_base_url`` when set, else the address the request came to."""
    return (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")


def media_url(ctx: AppContext, request: Request, job: Job, variant: str = "video.mp4", *,
              base: str | None = None) -> str | None:
    """The absolute signed link to a finished job's video (or ``thumbnail.jpg``); None when there is none.

    ``base``: ``base_url(ctx, request)`` when the caller already has it."""
    field, _ = VARIANTS[variant]
    if not getattr(job, field) or job.media_deleted:
        return None
    signed, _ = sign_path(ctx.settings.signing_secret, media_path(job.id, variant), ctx.settings.media_url_ttl)
    return (base if base is not None else base_url(ctx, request)) + signed


def media_expiry(ctx: AppContext) -> int:
    """When links made now expire (UNIX seconds), e.g. for OpenAI's ``expires_at``."""
    return int(time.time() + ctx.settings.media_url_ttl)


def media_file(ctx: AppContext, job: Job, variant: str) -> Path:
    """The file behind a job's variant, checked to lie inside the media folder; ``NotFound`` otherwise."""
    field, _ = VARIANTS[variant]
    name = getattr(job, field)
    if not name or job.media_deleted:
        raise NotFound(f"job {job.id} has no {variant.split('.')[0]}")
    root = ctx.settings.media_dir.resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        raise NotFound(f"job {job.id} has no {variant.split('.')[0]}")
    return path


@router.get("/media/{job_id}/{variant}", include_in_schema=False)
def serve_media(job_id: str, variant: str, request: Request, ctx: Ctx) -> FileResponse:
    if not JOB_ID.match(job_id) or variant not in VARIANTS:
        raise NotFound("no such media")
    verify(ctx.settings.signing_secret, media_path(job_id, variant), request.query_params.get("exp"),
           request.query_params.get("sig"))
    job = ctx.store.get(job_id)
    path = media_file(ctx, job, variant)
    _, media_type = VARIANTS[variant]
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})
