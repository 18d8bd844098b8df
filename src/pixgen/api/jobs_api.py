"""Job API, PixelDojo form: ``POST /api/v1/models/pixverse-v6/run``, ``GET /api/v1/jobs/{id}`` and friends.

Pure mapping first (body → ``VideoRequest``, ``Job`` → JSON), then the short route handlers.
Errors: ``{"code", "message", "field"?}`` with the HTTP status of the ``PixgenError`` (``api.errors``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, AsyncIterator, Mapping

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pixgen.api import derived, mapping, replay, retake, service
from pixgen.api import jobs_schemas as schemas
from pixgen.api.body import read_json
from pixgen.api.context import AppContext, AuthKey, Ctx
from pixgen.api.errors import job_api_error
from pixgen.api.estimate import estimate, estimate_json
from pixgen.api.media import base_url, media_url
from pixgen.api.openapi import body, errors
from pixgen.api.surface import Surface
from pixgen.core.fields import media_values, role_at, roles, surface_names, with_values
from pixgen.core.models import MODEL_ID
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest
from pixgen.jobs import deliveries
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription, parse_subscription
from pixgen.media.fetch import check_url

PREFIX = "/api/v1"
MAX_LIST = 100
SURFACE_NAME = "jobs"  # how field roles name this surface (``Role.names``)
URL_FIELDS = {role.url_field: name for name, role in roles(VideoRequest).items() if role.url_field}  # image_url → ...
ALIASES = surface_names(VideoRequest, SURFACE_NAME)  # canonical → the job API's other name (quality: resolution)

router = APIRouter(prefix=PREFIX, tags=["job API"])


# -- pure mapping ----------------------------------------------------------------------------------------------
def media_urls(body: Mapping[str, Any]) -> dict[str, str]:
    """``{field path: URL}`` of the media this body gives as an http(s) URL, fetched by ``service.submit``: in a
    sibling field (``image_url`` for ``image_input``) or in the field itself (``control_video``,
    ``keyframes[i].image``), as each field's ``Role.url`` says. Checked for form only: no network here."""
    urls: dict[str, str] = {}
    for sibling, name in URL_FIELDS.items():
        if body.get(sibling) is None:
            continue
        if body.get(name) is not None:
            raise InvalidRequest(f"give {sibling} or {name}, not both", field=sibling)
        urls[name] = str(check_url(body[sibling], sibling))
    for path, role, value in media_values(VideoRequest, body):
        if role.url_inline and isinstance(value, str) and value[:8].lower().startswith(("http://", "https://")):
            urls[path] = str(check_url(value, path))
    return urls


def to_video_request(body: Mapping[str, Any]) -> VideoRequest:
    """The job API body as the canonical request: a field's other name (``resolution``) is the field; media given
    by URL (``media_urls``) holds its kind's placeholder until it is fetched."""
    data = {name: value for name, value in body.items() if name not in URL_FIELDS}
    data = with_values(data, {path: role_at(VideoRequest, path).media.placeholder  # type: ignore[union-attr]
                              for path in media_urls(body)})
    for canonical, other in ALIASES.items():
        if other in data:
            value = data.pop(other)
            if canonical in data and data[canonical] != value:
                raise InvalidRequest(f"{other} and {canonical} are the same setting; send one", field=other)
            data[canonical] = value
    try:
        return parse_request(data)
    except InvalidRequest as exc:
        raise mapping.renamed(exc, sent_names(body)) from None


def webhook_subscription(body: Mapping[str, Any]) -> tuple[dict[str, Any], Subscription | None]:
    """The body without ``webhook_url`` / ``webhook_events``, and the webhook they ask for (form checked)."""
    rest = dict(body)
    return rest, parse_subscription(rest.pop("webhook_url", None), rest.pop("webhook_events", None))


def webhook_json(job: Job, sent: list[deliveries.Delivery]) -> dict[str, Any] | None:
    """A job's own webhook and each of its deliveries (pending, delivered, or failed: given up)."""
    if not job.webhook_url or job.surface == "openai":  # the OpenAI surface's webhook is the operator's
        return None
    return {"url": job.webhook_url, "events": (job.webhook_events or "").split(","),
            "deliveries": [d.as_json() for d in sent]}


def sent_names(body: Mapping[str, Any]) -> dict[str, str]:
    """Canonical field → the job API name this body used for it (``resolution``, ``image_url``, ...)."""
    names = {name: sibling for sibling, name in URL_FIELDS.items() if body.get(sibling) is not None}
    names |= {canonical: other for canonical, other in ALIASES.items() if other in body and canonical not in body}
    return names


def job_json(job: Job, *, position: int | None = None, video_url: str | None = None,
             thumbnail_url: str | None = None, status_url: str | None = None,
             preview_url: str | None = None) -> dict[str, Any]:
    """A job as the job API shows it (``output`` appears with the early draft, ``preview``, or the video)."""
    status = job.status
    width, height = mapping.job_size(job)
    ended_badly = status in (JobStatus.FAILED, JobStatus.CANCELLED)
    body: dict[str, Any] = {
        "jobId": job.id,
        "status": status.value,
        "progress": mapping.job_progress(job),
        "stage": job.stage,
        "output": {"video": video_url, "thumbnail": thumbnail_url, "preview": preview_url}
        if video_url or preview_url else None,
        "seed": job.seed,
        "prompt": job.prompt,
        "originalPrompt": job.original_prompt,
        "error": job.error_message if ended_badly else None,
        "errorCode": job.error_code if ended_badly else None,
        "creditCost": job.credit_cost,
        "refunded": job.refunded,
        "model": job.model,
        "duration": job.duration,
        "quality": job.quality,
        "aspectRatio": job.aspect_ratio or "16:9",
        "width": width,
        "height": height,
        "hasAudio": job.has_audio,
        "cancelRequested": job.cancel_requested,
        "createdAt": job.created_at,
        "startedAt": job.started_at,
        "completedAt": job.finished_at,
        "kind": job.kind,
        "sourceJobId": job.source_job_id,
        "remixOf": job.remix_of,
        "retake": {"start": round(job.retake_start, 4), "end": round(job.retake_end, 4)}
        if job.kind == "retake" and job.retake_start is not None and job.retake_end is not None else None,
        "replayOf": job.replay_of,
        "shots": job.shot_list(),
        "timings": job.timing_dict(),
    }
    if status is JobStatus.PENDING:
        body["queuePosition"] = position
    if status_url:
        body["statusUrl"] = status_url
    return body


def progress_json(job: Job, position: int | None) -> dict[str, Any]:
    return {"jobId": job.id, "status": job.status.value, "progress": mapping.job_progress(job), "stage": job.stage,
            "queuePosition": position}


def models_json(capabilities: Capabilities, price: int, prices: Mapping[str, int]) -> dict[str, Any]:
    """``GET /api/v1/models``: the one model, what its backend can do, its sizes and its prices."""
    features = ["text-to-video", "image-to-video", "video-remix"]
    features += [name for name, on in (("video-extend", capabilities.extend), ("end-frame", capabilities.end_frame),
                                       ("multi-clip", capabilities.multi_clip), ("audio", capabilities.audio),
                                       ("keyframes", capabilities.keyframes), ("video-retake", capabilities.retake))
                 if on]
    low, high = capabilities.durations
    if capabilities.control_types:
        features.append("control-video")
    return {"models": [{
        "id": MODEL_ID,
        "name": "Pixverse V6 (self-hosted, LTX-2)",
        "type": "video",
        "creditCost": price,
        "creditCostByResolution": dict(prices),
        "capabilities": features,
        "parameters": {"resolution": list(capabilities.qualities), "aspect_ratio": list(capabilities.aspect_ratios),
                       "duration": {"min": low, "max": high, "default": 5},
                       "control_type": list(capabilities.control_types)},
        "sizes": capabilities.sizes(),
    }]}


# -- routes ----------------------------------------------------------------------------------------------------
def _responses(answer: type, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a route: ``answer`` on 200, the job API's error body on ``statuses``."""
    return {200: {"model": answer}, **errors(schemas.JobApiError, *statuses)}


def render(ctx: AppContext, request: Request, job: Job, position: int | None = None) -> dict[str, Any]:
    base = base_url(ctx, request)
    return job_json(job, position=position, video_url=media_url(ctx, request, job, base=base),
                    thumbnail_url=media_url(ctx, request, job, "thumbnail.jpg", base=base),
                    preview_url=preview_url(ctx, request, job, base),
                    status_url=f"{base}{PREFIX}/jobs/{job.id}")


def preview_url(ctx: AppContext, request: Request, job: Job, base: str | None = None) -> str | None:
    """The early draft's signed link while the job runs or once it completed (a failed job's draft is gone)."""
    if job.status not in (JobStatus.PROCESSING, JobStatus.COMPLETED):
        return None
    return media_url(ctx, request, job, "preview.mp4", base=base)


@router.post("/models/{model_id}/run", openapi_extra=body("JobRunRequest"),
             responses=_responses(schemas.Submitted, 400, 401, 402, 404, 409, 413, 429))
async def run_model(model_id: str, request: Request, ctx: Ctx, key: AuthKey,
                    idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    mapping.check_model(model_id, MODEL_ID)
    body, webhook = webhook_subscription(await read_json(request))
    urls = media_urls(body)
    video_request = to_video_request(body)  # the whole body is checked before anything is fetched
    submitted = await service.submit(ctx, key, video_request, media_urls=urls,
                                     idempotency_key=idempotency_key, field_names=sent_names(body),
                                     webhook=webhook)
    return submitted_json(ctx, request, submitted)


@router.post("/models/{model_id}/estimate", openapi_extra=body("JobRunRequest"),
             responses=_responses(schemas.Estimate, 400, 401, 404, 413, 429))
async def estimate_run(model_id: str, request: Request, ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    """What ``run`` with this body would make, cost and when it would finish; refuses what ``run`` refuses (the
    same checks, in the same order), and charges and queues nothing."""
    mapping.check_model(model_id, MODEL_ID)
    body, webhook = webhook_subscription(await read_json(request))
    urls = media_urls(body)
    video_request = to_video_request(body)
    prepared = await service.prepare(ctx, video_request, media_urls=urls,
                                     field_names=sent_names(body))
    await service.check_webhook(ctx, webhook, "jobs")
    return estimate_json(await run_in_threadpool(estimate, ctx, key, prepared))


@router.post("/jobs/{job_id}/extend", openapi_extra=body("JobExtendRequest", required=False),
             responses=_responses(schemas.Submitted, 400, 401, 402, 404, 409, 413, 429))
async def extend_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    """A new job continuing this completed job's video by ``duration`` seconds (``{prompt?, duration?, ...}``);
    its result is the whole video."""
    body, webhook = webhook_subscription(await _optional_json(request))
    submitted = await derived.submit_extension(ctx, key, job_id, body, source_field="jobId",
                                               idempotency_key=idempotency_key, webhook=webhook)
    return submitted_json(ctx, request, submitted)


@router.post("/jobs/{job_id}/retake", openapi_extra=body("RetakeRequest"),
             responses=_responses(schemas.Submitted, 400, 401, 402, 404, 409, 413, 429))
async def retake_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    """A new job regenerating ``[start, end)`` s of this completed job's video (``{start, end, prompt?, seed?}``),
    keeping the rest frame for frame; its result is the whole video, charged for the retaken seconds."""
    body, webhook = webhook_subscription(await read_json(request))
    submitted = await retake.submit_retake(ctx, key, job_id, body, source_field="jobId",
                                           idempotency_key=idempotency_key, webhook=webhook)
    return submitted_json(ctx, request, submitted)


@router.post("/jobs/{job_id}/remix", openapi_extra=body("JobRemixRequest"),
             responses=_responses(schemas.Submitted, 400, 401, 402, 404, 409, 413, 429))
async def remix_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey,
                    idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    """A new job with this completed job's settings and seed and a new prompt (``{prompt}``)."""
    body, webhook = webhook_subscription(await read_json(request))
    submitted = await derived.submit_remix(ctx, key, job_id, body, source_field="jobId",
                                           idempotency_key=idempotency_key, webhook=webhook)
    return submitted_json(ctx, request, submitted)


def submitted_json(ctx: AppContext, request: Request, submitted: Submitted) -> dict[str, Any]:
    job = submitted.job
    return {"jobId": job.id, "status": job.status.value,
            "statusUrl": f"{base_url(ctx, request)}{PREFIX}/jobs/{job.id}",
            "creditCost": job.credit_cost, "creditsRemaining": submitted.credits_remaining}


async def _optional_json(request: Request) -> dict[str, Any]:
    """The JSON object body, or ``{}`` when there is no body at all."""
    return await read_json(request) if (await request.body()).strip() else {}


@router.get("/jobs/{job_id}/manifest", responses=_responses(schemas.Manifest, 401, 404, 409))
async def job_manifest(job_id: str, ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    """What made this completed job's video (``jobs.manifest``); 409 while it has none."""
    job = await service.get_job(ctx, key, job_id)
    return {"jobId": job.id, **replay.manifest_of(job)}


@router.post("/jobs/{job_id}/replay", openapi_extra=body("JobReplayRequest", required=False),
             responses=_responses(schemas.Submitted, 400, 401, 402, 404, 409, 413, 429))
async def replay_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey,
                     idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict[str, Any]:
    """A new job making this completed job's video again from its manifest; 409 when the model differs. The body
    (optional) takes only ``webhook_url`` / ``webhook_events``."""
    fields, webhook = webhook_subscription(await _optional_json(request))
    submitted = await replay.submit_replay(ctx, key, job_id, fields, idempotency_key=idempotency_key,
                                           webhook=webhook)
    return submitted_json(ctx, request, submitted)


@router.get("/models", responses=_responses(schemas.ModelList, 401))
def list_models(ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    caps = ctx.capabilities
    return models_json(caps, ctx.settings.price, {q: ctx.settings.price_for(q) for q in caps.qualities})


@router.get("/jobs", responses=_responses(schemas.JobList, 400, 401))
def list_jobs(request: Request, ctx: Ctx, key: AuthKey, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20,
              after: str | None = None) -> dict[str, Any]:
    found = ctx.store.list_jobs(key.id, limit=limit + 1, after=after)
    return {"jobs": [render(ctx, request, j) for j in found[:limit]], "hasMore": len(found) > limit,
            "creditsRemaining": ctx.store.credits(key.id)}


@router.get("/jobs/{job_id}", responses=_responses(schemas.Job, 401, 404))
def get_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    job, position = ctx.store.get_with_position(job_id, key.id)
    body = render(ctx, request, job, position)
    if job.webhook_url:
        body["webhook"] = webhook_json(job, deliveries.for_job(ctx.db, job.id))
    return body


@router.post("/jobs/{job_id}/cancel", responses=_responses(schemas.Job, 401, 404))
async def cancel_job(job_id: str, request: Request, ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    job = await service.cancel(ctx, key, job_id, wait=5.0)
    _, position = await run_in_threadpool(ctx.store.get_with_position, job_id, key.id)
    return render(ctx, request, job, position)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": schemas.SSE}, **errors(schemas.JobApiError, 401, 404)})
async def job_events(job_id: str, request: Request, ctx: Ctx, key: AuthKey) -> StreamingResponse:
    """Server-sent events: ``progress`` on each change, ``preview`` once the early draft exists (``{jobId,
    preview}``: its signed link), then ``done`` with the full job, then the stream ends."""
    await service.get_job(ctx, key, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        previewed = None
        async for job, position in service.watch(ctx, key, job_id):
            if job.preview_file and job.preview_file != previewed:
                url = preview_url(ctx, request, job)
                if url:
                    previewed = job.preview_file
                    yield _sse("preview", {"jobId": job.id, "preview": url})
            yield _sse("progress", progress_json(job, position))
            if job.status.is_terminal():
                yield _sse("done", render(ctx, request, job))
                return
            if await request.is_disconnected():
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


SURFACE = Surface(router=router, prefix=PREFIX, error_response=job_api_error)
