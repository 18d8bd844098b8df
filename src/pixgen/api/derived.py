"""Jobs made from a finished job, shared by the job API and the OpenAI form: extend and remix.

- **extend**: continue the source's video by ``duration`` seconds from its last frames (the worker calls
  ``engine.extend``); the result is the whole video. The extension keeps the source's size, ratio, quality and
  audio; it takes its own ``prompt`` (default: the source's prompt as asked), ``duration`` (1..15, default 5),
  ``seed``, ``negative_prompt``, ``style``, ``thinking_type`` and ``camera_movement``. The job's ``duration``
  is the whole video's, at most ``MAX_TOTAL_SECONDS``.
- **remix**: the source's request again — every setting and the seed — with a new ``prompt``. A remix of an
  extension is an extension of the same video with the new prompt.

The source must be a completed job of the same key whose video is still kept. Both charge like any job.
Pure mapping first (``extension``, ``remix``), then the submit helpers the routes call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pixgen.api import mapping, service
from pixgen.api.context import AppContext
from pixgen.core.sizes import nearest_aspect_ratio
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.errors import InvalidRequest, NotFound
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.origin import ApiSurface, JobKind, Origin
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription

MAX_TOTAL_SECONDS = 60  # an extended video (extensions of extensions included) is at most this long
DEFAULT_EXTENSION = 5
EXTEND_FIELDS = ("prompt", "duration", "negative_prompt", "seed", "style", "thinking_type", "camera_movement")
# How a field an extension or a remix does not take is refused (``{name}``: the field).
EXTEND_REFUSAL = ("{name} cannot be set on an extension: it takes only " + ", ".join(EXTEND_FIELDS)
                  + " (the size, quality and audio stay those of the video it continues)")
REMIX_REFUSAL = ("{name} cannot be set on a remix: it keeps every setting and the seed of its source; give only "
                 "prompt")


@dataclass(frozen=True)
class Derived:
    """A new job's request and where it came from (the extra columns of ``JobStore.submit``)."""

    request: VideoRequest
    kind: JobKind  # generate, or extend (a remix of an extension extends the same video again)
    source_job_id: str | None  # extend: the video continued
    remix_of: str | None
    duration: int  # the whole output's length in seconds

    def origin(self, surface: ApiSurface) -> Origin:
        return Origin(surface=surface, kind=self.kind, source_job_id=self.source_job_id, remix_of=self.remix_of,
                      duration=self.duration)


# -- pure mapping ----------------------------------------------------------------------------------------------
def check_source(source: Job, field: str, action: str) -> None:
    """A source must be completed with its video still kept (400 naming ``field`` otherwise)."""
    if source.status is not JobStatus.COMPLETED:
        raise InvalidRequest(f"job {source.id} is {source.status.value}; only a completed video can be {action}",
                             field=field)
    if source.media_deleted or not source.video_file:
        raise InvalidRequest(f"the video of job {source.id} is no longer kept, so it cannot be {action}",
                             field=field)


def extension(source: Job, fields: Mapping[str, Any], *, source_field: str = "jobId") -> Derived:
    """The request that continues ``source``'s video; ``fields`` use the canonical names (``duration``...)."""
    check_source(source, source_field, "extended")
    for name in fields:
        if name not in EXTEND_FIELDS:
            raise InvalidRequest(EXTEND_REFUSAL.format(name=name), field=name)
    base = source.request_dict()
    spec: dict[str, Any] = {
        "prompt": fields["prompt"] if "prompt" in fields else (source.original_prompt or ""),
        "duration": fields.get("duration", DEFAULT_EXTENSION),
        "seed": fields.get("seed"),
        "style": fields.get("style", base.get("style", "none")),
        "thinking_type": fields.get("thinking_type", base.get("thinking_type", "auto")),
        "camera_movement": fields.get("camera_movement"),
        "quality": source.quality,
        "generate_audio": bool(source.has_audio) if source.has_audio is not None else base.get("generate_audio", True),
    }
    negative = fields.get("negative_prompt", base.get("negative_prompt"))
    if negative or "negative_prompt" in fields:
        spec["negative_prompt"] = negative
    if source.width and source.height:
        spec["aspect_ratio"] = nearest_aspect_ratio(source.width, source.height)
    request = parse_request(spec)
    total = source.duration + request.seconds
    if total > MAX_TOTAL_SECONDS:
        raise InvalidRequest(f"the extended video would be {total} s long; at most {MAX_TOTAL_SECONDS} s "
                             f"(the source is {source.duration} s)", field="duration")
    return Derived(request, JobKind.EXTEND, source.id, None, total)


def remix(source: Job, fields: Mapping[str, Any], *, source_field: str = "jobId") -> Derived:
    """``source``'s request (settings and seed) with ``fields["prompt"]``; nothing else may be given."""
    check_source(source, source_field, "remixed")
    if source.kind is JobKind.RETAKE:
        raise InvalidRequest(f"job {source.id} is a retake; retake its source again with the new prompt instead",
                             field=source_field)
    if source.kind is JobKind.SOUND and source.source_job_id is not None:
        raise InvalidRequest(f"job {source.id} is new sound for job {source.source_job_id}; ask that job for new "
                             f"sound again with the new prompt instead", field=source_field)
    for name in fields:
        if name != "prompt":
            raise InvalidRequest(REMIX_REFUSAL.format(name=name), field=name)
    mapping.require_prompt(fields, what=" for a remix")
    prompt = fields["prompt"]
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", field="prompt")
    if source.prompt is None:  # zero data retention scrubbed it, and the rest of its request with it
        raise InvalidRequest(f"the settings of job {source.id} were not kept (zero data retention), so it cannot "
                             f"be remixed", field=source_field)
    request = parse_request({**source.request_dict(), "prompt": prompt})
    return Derived(request, source.kind, source.source_job_id, source.id, source.duration)


# -- submitting ------------------------------------------------------------------------------------------------
async def submit_extension(ctx: AppContext, key: ApiKey, source_id: str, fields: Mapping[str, Any], *,
                           source_field: str, idempotency_key: str | None = None,
                           surface: ApiSurface = ApiSurface.JOBS, webhook: Subscription | None = None) -> Submitted:
    if not ctx.capabilities.extend:
        raise InvalidRequest("this server's model cannot extend videos", field=source_field)
    source = await _source(ctx, key, source_id, source_field)
    derived = extension(source, fields, source_field=source_field)
    return await service.submit(ctx, key, derived.request, origin=derived.origin(surface),
                                idempotency_key=idempotency_key, webhook=webhook)


async def submit_remix(ctx: AppContext, key: ApiKey, source_id: str, fields: Mapping[str, Any], *,
                       source_field: str, idempotency_key: str | None = None,
                       surface: ApiSurface = ApiSurface.JOBS, webhook: Subscription | None = None) -> Submitted:
    source = await _source(ctx, key, source_id, source_field)
    derived = remix(source, fields, source_field=source_field)
    if derived.source_job_id is not None and not ctx.capabilities.extend:
        raise InvalidRequest("this server's model cannot extend videos, so an extension cannot be remixed",
                             field=source_field)
    if derived.source_job_id is not None:  # a remixed extension continues the same video again: still there?
        check_source(await _source(ctx, key, derived.source_job_id, source_field), source_field, "remixed")
    return await service.submit(ctx, key, derived.request, origin=derived.origin(surface),
                                idempotency_key=idempotency_key, webhook=webhook)


async def _source(ctx: AppContext, key: ApiKey, job_id: str, field: str) -> Job:
    try:
        return await service.get_job(ctx, key, job_id)
    except NotFound:
        raise NotFound(f"no job {job_id!r}", field=field) from None
