"""New sound for a finished video: a new job that keeps the source's frames bit for bit and makes its sound anew.

``POST /api/v1/jobs/{id}/sound {prompt?, negative_prompt?, seed?}``. The prompt describes the sound (default: the
source's prompt as asked); the source must be a completed job of the same key whose video is still kept and at most
the model's longest duration (15 s) long. The job's ``duration`` is the source's; it is charged ``--sound-price``
credits per second of it (``service.price``). The source job is not touched: the result is a new video file.

The same job is asked on the run route with ``video`` (an MP4 data URI or URL) and ``sound_only: true``
(``service.submit`` gives it this kind); the worker hands either to ``Engine.sound``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pixgen.api import service
from pixgen.api.context import AppContext
from pixgen.api.derived import check_source
from pixgen.core.sizes import nearest_aspect_ratio
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.errors import InvalidRequest, NotFound
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.origin import ApiSurface, JobKind, Origin
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription

SOUND_FIELDS = ("prompt", "negative_prompt", "seed")


def sound_request(source: Job, fields: Mapping[str, Any], *, max_seconds: int,
                  source_field: str = "jobId") -> VideoRequest:
    """The request that gives ``source``'s video new sound; ``InvalidRequest`` naming the field otherwise."""
    check_source(source, source_field, "given new sound")
    for name in fields:
        if name not in SOUND_FIELDS:
            raise InvalidRequest(f"unknown field {name!r}; new sound takes {', '.join(SOUND_FIELDS)}", field=name)
    seconds = (source.seconds - 1 / 24) if source.seconds else float(source.duration)  # first frame to last
    if seconds > max_seconds + 1e-6:
        raise InvalidRequest(f"the video of job {source.id} is {seconds:.2f} s long; new sound is made for at most "
                             f"{max_seconds} s", field=source_field)
    prompt = fields.get("prompt", source.original_prompt)
    if not prompt:  # zero data retention scrubbed the source's prompt (or it had none: a start frame alone)
        raise InvalidRequest(f"the prompt of job {source.id} was not kept; give one describing the sound",
                             field="prompt")
    spec: dict[str, Any] = {"prompt": prompt, "seed": fields.get("seed"), "duration": source.duration,
                            "quality": source.quality}
    if "negative_prompt" in fields:
        spec["negative_prompt"] = fields["negative_prompt"]
    if source.width and source.height:
        spec["aspect_ratio"] = nearest_aspect_ratio(source.width, source.height)
    return parse_request(spec)


async def submit_sound(ctx: AppContext, key: ApiKey, source_id: str, fields: Mapping[str, Any], *,
                       source_field: str = "jobId", idempotency_key: str | None = None,
                       surface: ApiSurface = ApiSurface.JOBS, webhook: Subscription | None = None) -> Submitted:
    if not ctx.capabilities.sound_for_video:
        raise InvalidRequest("this server's model cannot make new sound for a video", field=source_field)
    try:
        source = await service.get_job(ctx, key, source_id)
    except NotFound:
        raise NotFound(f"no job {source_id!r}", field=source_field) from None
    request = sound_request(source, fields, max_seconds=ctx.capabilities.durations[1], source_field=source_field)
    origin = Origin(surface=surface, kind=JobKind.SOUND, source_job_id=source.id, duration=source.duration)
    return await service.submit(ctx, key, request, origin=origin, idempotency_key=idempotency_key,
                                cost=service.sound_cost(ctx.settings.sound_price, request.seconds), webhook=webhook)
