"""Retake: a new job that regenerates ``[start, end)`` seconds of a finished job's video, keeping the rest.

``POST /api/v1/jobs/{id}/retake {start, end, prompt?, seed?}``. The range follows ``pixgen.core.retake`` with the
backend's rule (``Capabilities.retake``; LTX-2: at least one latent frame, at most 15 s, inside the video; a range
inside the video ends where a latent ends, so its end may move up to 7 frames later) and is checked and snapped
here, so the job reports the range actually retaken and is charged for it: the source's price × the retaken seconds
(rounded up) ÷ the source's seconds, rounded up.
The result is the whole video at the source's size, with the source's sound outside the range.
The source must be a completed job of the same key whose video is still kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pixgen.api import service
from pixgen.api.context import AppContext
from pixgen.api.derived import check_source
from pixgen.core.retake import RetakeRule, RetakeWindow, plan_range
from pixgen.core.sizes import FPS, nearest_aspect_ratio
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.errors import InvalidRequest, NotFound
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.origin import ApiSurface, JobKind, Origin
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription

RETAKE_FIELDS = ("start", "end", "prompt", "seed")


@dataclass(frozen=True)
class RetakeJob:
    """A retake's request, the range it regenerates (seconds, snapped) and what it costs."""

    request: VideoRequest
    source: Job
    start: float
    end: float
    seconds: int  # the retaken seconds, rounded up: what is charged for

    def cost(self, price: int) -> int:
        """The source's price for the share of its seconds that is retaken (at least 1 when the price is not 0)."""
        if price <= 0:
            return 0
        return max(1, math.ceil(price * self.seconds / max(1, self.source.duration)))


def source_frames(source: Job) -> int:
    """The source video's frame count (its job keeps ``num_frames / 24`` as ``seconds``)."""
    if source.seconds:
        return round(source.seconds * FPS)
    return source.duration * FPS + 1


def retake(source: Job, fields: Mapping[str, Any], rule: RetakeRule, *, source_field: str = "jobId") -> RetakeJob:
    """The retake of ``source`` that ``fields`` ask for, by the backend's ``rule``; ``InvalidRequest`` naming the
    field otherwise."""
    check_source(source, source_field, "retaken")
    for name in fields:
        if name not in RETAKE_FIELDS:
            raise InvalidRequest(f"unknown field {name!r}; a retake takes {', '.join(RETAKE_FIELDS)}", field=name)
    for name in ("start", "end"):
        if name not in fields:
            raise InvalidRequest(f"{name} is required (seconds on the video's clock)", field=name)
    window: RetakeWindow = plan_range(fields["start"], fields["end"], source_frames(source), rule)
    prompt = fields.get("prompt", source.original_prompt)
    if prompt is None:  # zero data retention scrubbed the source's prompt
        raise InvalidRequest(f"the prompt of job {source.id} was not kept; give one", field="prompt")
    base = source.request_dict()
    retaken = math.ceil(window.end_seconds - window.start_seconds - 1e-9)
    spec: dict[str, Any] = {
        "prompt": prompt,
        "seed": fields.get("seed"),
        "duration": min(max(retaken, 1), 15),
        "quality": source.quality,
        "style": base.get("style", "none"),
        "thinking_type": base.get("thinking_type", "auto"),
        "generate_audio": bool(source.has_audio) if source.has_audio is not None else base.get("generate_audio", True),
    }
    if base.get("negative_prompt"):
        spec["negative_prompt"] = base["negative_prompt"]
    if source.width and source.height:
        spec["aspect_ratio"] = nearest_aspect_ratio(source.width, source.height)
    return RetakeJob(parse_request(spec), source, window.start_seconds, window.end_seconds, max(retaken, 1))


async def submit_retake(ctx: AppContext, key: ApiKey, source_id: str, fields: Mapping[str, Any], *,
                        source_field: str = "jobId", idempotency_key: str | None = None,
                        surface: ApiSurface = ApiSurface.JOBS, webhook: Subscription | None = None) -> Submitted:
    rule = ctx.capabilities.retake
    if rule is None:
        raise InvalidRequest("this server's model cannot retake videos", field=source_field)
    try:
        source = await service.get_job(ctx, key, source_id)
    except NotFound:
        raise NotFound(f"no job {source_id!r}", field=source_field) from None
    job = retake(source, fields, rule, source_field=source_field)
    cost = job.cost(ctx.settings.price_for(source.quality))
    origin = Origin(surface=surface, kind=JobKind.RETAKE, source_job_id=source.id, duration=source.duration,
                    retake=(job.start, job.end))
    return await service.submit(ctx, key, job.request, origin=origin, idempotency_key=idempotency_key, cost=cost,
                                webhook=webhook)
