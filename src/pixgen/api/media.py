"""Signed, expiring, absolute media links, and serving stored media (video/mp4 with range requests).

Media lives in the ``MediaStore`` (``pixgen.storage``). When the store signs URLs of its own (S3 presigned URLs,
which serve range requests themselves), those are the links handed out. Otherwise (a local folder) a link is
``{base}/media/{job_id}/{variant}?exp={unix}&sig={hmac}``, the HMAC-SHA256 over ``path + "\n" + exp`` with the
server's signing secret, and the route streams the file from the store. The route never turns request text into a
path: the job id must be a ``JobId`` (``job_`` + 24 hex), the variant is one of three names, and the file name comes
from the job's database row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import sys
import time

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from pixgen.api.context import AppContext, Ctx
from pixgen.core.text import parse_digits
from pixgen.errors import Forbidden, NotFound, RangeNotSatisfiable
from pixgen.jobs.ids import JobId
from pixgen.jobs.store import Job
from pixgen.storage import MediaStore

VARIANTS = {"video.mp4": ("video_file", "video/mp4"), "thumbnail.jpg": ("thumb_file", "image/jpeg"),
            "preview.mp4": ("preview_file", "video/mp4")}

router = APIRouter(tags=["media"])


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
    """Raise ``Forbidden`` (naming the parameter) unless ``sig`` signs ``path`` until ``expires`` and that time is
    still ahead. ``exp`` is read by the one bounded number reader: ``"²"`` or 5,000 digits are no time."""
    if not expires or not sig:
        raise Forbidden("this media link is not signed", field="sig" if expires else "exp")
    when = parse_digits(expires, max_digits=MAX_EXP_DIGITS)
    if when is None:
        raise Forbidden(f"exp must be a UNIX time of 1 to {MAX_EXP_DIGITS} digits (0-9)", field="exp")
    if not hmac.compare_digest(_signature(secret, path, when).encode(), sig.encode("utf-8", "replace")):
        raise Forbidden("this media link's signature is not valid", field="sig")
    if when < (now if now is not None else time.time()):
        raise Forbidden("this media link has expired; fetch the job again for a fresh one", field="exp")


def base_url(ctx: AppContext, request: Request) -> str:
    """The server's public address: ``public_base_url`` when set, else the address the request came to."""
    return (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")


def media_url(ctx: AppContext, request: Request, job: Job, variant: str = "video.mp4", *,
              base: str | None = None) -> str | None:
    """The absolute signed link to a finished job's video (or ``thumbnail.jpg``); None when there is none.

    ``base``: ``base_url(ctx, request)`` when the caller already has it."""
    name, media_type = stored_name(job, variant), VARIANTS[variant][1]
    if name is None:
        return None
    direct = ctx.media.url(name, ttl=ctx.settings.media_url_ttl, content_type=media_type)
    if direct is not None:
        return direct
    signed, _ = sign_path(ctx.settings.signing_secret, media_path(job.id, variant), ctx.settings.media_url_ttl)
    return (base if base is not None else base_url(ctx, request)) + signed


def stored_name(job: Job, variant: str) -> str | None:
    """The name of a job's stored file for ``variant``, or None (none made, or deleted)."""
    field, _ = VARIANTS[variant]
    name = getattr(job, field)
    return None if not name or job.media_deleted else name


def stored_response(store: MediaStore, job: Job, variant: str, range_header: str | None) -> Response:
    """The job's stored file, whole (200) or one byte range (206; 416 when the range is past the end)."""
    name = stored_name(job, variant)
    size = store.size(name) if name else None
    if name is None or size is None:
        raise NotFound(f"job {job.id} has no {variant.split('.')[0]}")
    media_type = VARIANTS[variant][1]
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    wanted = parse_range(range_header, size)
    if wanted is None:
        return StreamingResponse(store.open(name), media_type=media_type,
                                 headers={**headers, "Content-Length": str(size)})
    if isinstance(wanted, str):  # "unsatisfiable"
        raise RangeNotSatisfiable(f"Range {range_header!r} is past the end of the file ({size} bytes)", size=size)
    start, end = wanted
    return StreamingResponse(store.open(name, start, end), status_code=206, media_type=media_type,
                             headers={**headers, "Content-Length": str(end - start + 1),
                                      "Content-Range": f"bytes {start}-{end}/{size}"})


_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")  # ASCII digits: ``\d`` also takes other scripts' digits
MAX_EXP_DIGITS = 12  # a UNIX time in seconds: 12 digits reach the year 33658
MAX_RANGE_DIGITS = 18  # a byte position past any file: more digits are read as "past the end"


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range as (first, last) inclusive; None to send the whole
    file (no range, several ranges or a malformed one, as RFC 9110 allows); ``"unsatisfiable"`` past the end.

    Positions are read by the bounded number reader; one of more than ``MAX_RANGE_DIGITS`` digits is larger than any
    file: a first byte there is past the end, a last byte or a suffix there is the end."""
    match = _RANGE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = (_position(g) for g in match.groups())
    if first is None:  # the last n bytes
        assert last is not None
        return (max(0, size - last), size - 1) if last and size else "unsatisfiable"
    end = min(last, size - 1) if last is not None else size - 1
    if first >= size or (last is not None and last < first):
        return "unsatisfiable"
    return first, end


def _position(digits: str) -> int | None:
    """A range's byte position (None where the group is empty); too many digits for a file: ``sys.maxsize``."""
    if not digits:
        return None
    value = parse_digits(digits, max_digits=MAX_RANGE_DIGITS)
    return sys.maxsize if value is None else value


@router.get("/media/{job_id}/{variant}", include_in_schema=False)
def serve_media(job_id: str, variant: str, request: Request, ctx: Ctx) -> Response:
    if not JobId.is_valid(job_id) or variant not in VARIANTS:
        raise NotFound("no such media")
    verify(ctx.settings.signing_secret, media_path(job_id, variant), request.query_params.get("exp"),
           request.query_params.get("sig"))
    job = ctx.store.get(job_id)
    name = stored_name(job, variant)
    direct = ctx.media.url(name, ttl=ctx.settings.media_url_ttl, content_type=VARIANTS[variant][1]) if name else None
    if direct is not None:  # a link made before the store signed its own: send the client there
        return RedirectResponse(direct, status_code=307)
    return stored_response(ctx.media, job, variant, request.headers.get("range"))
