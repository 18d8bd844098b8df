"""Job API, PixelDojo form: ``POST /api/v1/models/pixverse-v6/run``, ``GET /api/v1/jobs/{id}`` and friends.

Pure mapping first (body → ``VideoRequest``, ``Job`` → JSON), then the short route handlers.
Errors: ``{"code", "message", "field"?}`` with the HTTP status of the ``PixgenError`` (``api.errors``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, StrictFloat
from starlette.concurrency import run_in_threadpool

from pixgen.api import derived, mapping, replay, retake, service, sound
from pixgen.api import jobs_schemas as schemas
from pixgen.api.bodies import (
    NOT_BLANK,
    JsonBody,
    body_model,
    canonical_fields,
    not_both,
    prompt_field,
    surface_pairs,
    webhook_fields,
)
from pixgen.api.context import AppContext, AuthKey, Ctx
from pixgen.api.errors import job_api_error
from pixgen.api.estimate import estimate, estimate_json
from pixgen.api.media import base_url, media_url
from pixgen.api.openapi import errors
from pixgen.api.surface import Surface
from pixgen.core.fields import media_values, role_at, roles, surface_aliases, with_values
from pixgen.core.models import MODEL_ID
from pixgen.core.sizes import FPS
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest, PixgenError
from pixgen.jobs import deliveries
from pixgen.jobs.ids import JobId
from pixgen.jobs.origin import ApiSurface, JobKind
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription, parse_subscription
from pixgen.media.audio import AUDIO_FORMATS, MAX_AUDIO_SECONDS
from pixgen.media.fetch import check_url

PREFIX = "/api/v1"
MAX_LIST = 100
SURFACE_NAME = ApiSurface.JOBS  # how field roles name this surface (``Role.aliases``)
URL_FIELDS = {role.url_field: name for name, role in roles(VideoRequest).items() if role.url_field}  # image_url → ...
ALIASES = surface_aliases(VideoRequest, SURFACE_NAME)  # canonical → the job API's other name (quality: resolution)

router = APIRouter(prefix=PREFIX, tags=["job API"])

# -- request bodies: the types the routes take, and the document shows ----------------------------------------
_WEBHOOK = webhook_fields()
_NEEDS_URL = {"webhook_events": ["webhook_url"]}
JobRunRequest = body_model(
    "JobRunRequest", {**canonical_fields(surface=SURFACE_NAME, urls=True, prefix="Job"), **_WEBHOOK},
    doc="A video request. prompt is required unless a start frame (image_input or image_url) is given.",
    schema={"anyOf": [{"required": ["prompt"], "properties": {"prompt": {"type": "string", "pattern": NOT_BLANK}}},
                      {"required": ["image_input"], "properties": {"image_input": {"type": "string"}}},
                      {"required": ["image_url"], "properties": {"image_url": {"type": "string"}}}],
            "dependentRequired": {"end_image_input": ["image_input"], **_NEEDS_URL},
            **not_both(*surface_pairs(SURFACE_NAME, urls=True))})
JobExtendRequest = body_model(
    "JobExtendRequest", {**canonical_fields(only=derived.EXTEND_FIELDS, optional=True),
                         "prompt": prompt_field(required=False, description="default: the prompt of the video "
                                                                            "continued"),
                         **_WEBHOOK},
    doc="All optional; the body may be absent. duration: the seconds added (the whole video stays within the "
        "longest duration).",
    unknown=derived.EXTEND_REFUSAL, schema={"dependentRequired": _NEEDS_URL})
JobRemixRequest = body_model(
    "JobRemixRequest", {"prompt": prompt_field(required=True), **_WEBHOOK}, unknown=derived.REMIX_REFUSAL,
    schema={"dependentRequired": _NEEDS_URL})
Seconds = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False, description="seconds on the video's clock")]
RetakeRequest = body_model(
    "RetakeRequest", {
        "start": (Seconds, ...),
        "end": (Seconds, Field(..., description="seconds on the video's clock; end - start from one latent frame "
                                                "to the longest range the model retakes (LTX-2: 15 s)")),
        "prompt": prompt_field(required=False, description="default: the prompt of the source job"),
        **canonical_fields(only=("seed",)), **_WEBHOOK},
    unknown=f"unknown field {{name!r}}; a retake takes {', '.join(retake.RETAKE_FIELDS)}",
    schema={"dependentRequired": _NEEDS_URL})
JobSoundRequest = body_model(
    "JobSoundRequest", {"prompt": prompt_field(required=False, description="the sound to make; default: the prompt "
                                                                          "of the source job"),
                        **canonical_fields(only=("negative_prompt", "seed"), optional=True), **_WEBHOOK},
    doc="All optional; the body may be absent. The result keeps the source's frames bit for bit.",
    unknown=f"unknown field {{name!r}}; new sound takes {', '.join(sound.SOUND_FIELDS)}",
    schema={"dependentRequired": _NEEDS_URL})
JobReplayRequest = body_model(
    "JobReplayRequest", dict(_WEBHOOK), doc="All optional; the body may be absent.",
    unknown="unknown field {name!r}; a replay takes only webhook_url and webhook_events",
    schema={"dependentRequired": _NEEDS_URL})
RUN_BODY, EXTEND_BODY, REMIX_BODY = JsonBody(JobRunRequest), JsonBody(JobExtendRequest, required=False), \
    JsonBody(JobRemixRequest)
RETAKE_BODY, REPLAY_BODY = JsonBody(RetakeRequest), JsonBody(JobReplayRequest, required=False)
SOUND_BODY = JsonBody(JobSoundRequest, required=False)


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
    # a path media_urls names is a media field, so its Role has ``media`` (hence the ignore)
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


def webhook_subscription(body: BaseModel | None) -> tuple[dict[str, Any], Subscription | None]:
    """A typed body as the fields it set, without ``webhook_url`` / ``webhook_events``, and the webhook they ask
    for (checked by ``parse_subscription``)."""
    if body is None:
        return {}, None
    rest = body.model_dump(exclude_unset=True)
    return rest, parse_subscription(rest.pop("webhook_url", None), rest.pop("webhook_events", None))


def webhook_json(job: Job, sent: list[deliveries.Delivery]) -> dict[str, Any] | None:
    """A job's own webhook and each of its deliveries (pending, delivered, or failed: given up)."""
    if not job.webhook_url or job.surface.operator_webhook:  # that surface's webhook is the operator's
        return None
    return {"url": job.webhook_url, "events": (job.webhook_events or "").split(","),
            "deliveries": [d.as_json() for d in sent]}


def sent_names(body: Mapping[str, Any]) -> dict[str, str]:
    """Canonical field → the job API name this body used for it (``resolution``, ``image_url``, ...)."""
    names = {name: sibling for sibling, name in URL_FIELDS.items() if body.get(sibling) is not None}
    names |= {canonical: other for canonical, other in ALIASES.items() if other in body and canonical not in body}
    return names


def job_view(job: Job, *, position: int | None = None, video_url: str | None = None,
             thumbnail_url: str | None = None, status_url: str | None = None,
             preview_url: str | None = None, webhook: dict[str, Any] | None = None) -> schemas.Job:
    """A job as the job API shows it (``output`` appears with the early draft, ``preview``, or the video); the
    fields that only some jobs have (``queuePosition`` while pending, ``statusUrl``, ``webhook``) are set only then,
    and answers leave unset fields out."""
    status = job.status
    width, height = mapping.job_size(job)
    ended_badly = status in (JobStatus.FAILED, JobStatus.CANCELLED)
    some: dict[str, Any] = {}
    if status is JobStatus.PENDING:
        some["queuePosition"] = position
    if status_url:
        some["statusUrl"] = status_url
    if webhook is not None:
        some["webhook"] = webhook
    if job.auto_duration:  # the model's choice, once made (null before)
        some["chosenDuration"] = mapping.chosen_duration(job)
    if job.seconds:
        some["frames"] = round(job.seconds * FPS)
    return schemas.Job(
        jobId=job.id,
        status=status.value,
        progress=mapping.job_progress(job),
        stage=job.stage,
        output=schemas.JobOutput(video=video_url, thumbnail=thumbnail_url, preview=preview_url)
        if video_url or preview_url else None,
        seed=job.seed,
        prompt=job.prompt,
        originalPrompt=job.original_prompt,
        error=job.error_message if ended_badly else None,
        errorCode=job.error_code if ended_badly else None,
        creditCost=job.credit_cost,
        refunded=job.refunded,
        model=job.model,
        duration=mapping.job_duration(job),
        quality=job.quality,
        aspectRatio=job.aspect_ratio or "16:9",
        width=width,
        height=height,
        hasAudio=job.has_audio,
        cancelRequested=job.cancel_requested,
        createdAt=job.created_at,
        startedAt=job.started_at,
        completedAt=job.finished_at,
        kind=job.kind,
        sourceJobId=job.source_job_id,
        remixOf=job.remix_of,
        retake=schemas.RetakeRange(start=round(job.retake_start, 4), end=round(job.retake_end, 4))
        if job.kind is JobKind.RETAKE and job.retake_start is not None and job.retake_end is not None else None,
        replayOf=job.replay_of,
        shots=[schemas.Shot(**shot) for shot in shots] if (shots := job.shot_list()) is not None else None,
        timings=job.timing_dict(),
        soundtrack=soundtrack_view(job.soundtrack_dict()),
        **some,
    )


def soundtrack_view(fit: Mapping[str, float] | None) -> schemas.SoundtrackFit | None:
    """The stored fit of a given soundtrack (``SoundtrackFit.as_dict``) in the job API's names."""
    if not fit:
        return None
    return schemas.SoundtrackFit(givenSeconds=fit["given_seconds"], videoSeconds=fit["video_seconds"],
                                 cutSeconds=fit["cut_seconds"], paddedSeconds=fit["padded_seconds"])


def job_json(job: Job, **links: Any) -> dict[str, Any]:
    """``job_view`` as JSON (the event stream's ``done``, webhook bodies)."""
    return job_view(job, **links).model_dump(mode="json", exclude_unset=True)


def progress_json(job: Job, position: int | None) -> dict[str, Any]:
    return {"jobId": job.id, "status": job.status.value, "progress": mapping.job_progress(job), "stage": job.stage,
            "queuePosition": position}


def sound_first(capabilities: Capabilities) -> list[str]:
    """Issue 22's features the model offers, by their ``Capabilities`` flag."""
    offered = (("audio-to-video", capabilities.audio_to_video), ("sound-for-video", capabilities.sound_for_video),
               ("auto-duration", capabilities.auto_duration))
    return [name for name, on in offered if on]


def models_json(capabilities: Capabilities, price: int, prices: Mapping[str, int],
                sound_price: int = 0) -> dict[str, Any]:
    """``GET /api/v1/models``: the one model, what its backend can do, its sizes and its prices."""
    features = ["text-to-video", "image-to-video", "video-remix"]
    features += [name for name, on in (("video-extend", capabilities.extend), ("end-frame", capabilities.end_frame),
                                       ("multi-clip", capabilities.multi_clip), ("audio", capabilities.audio),
                                       ("keyframes", capabilities.keyframes), ("video-retake", capabilities.retake))
                 if on]
    features += sound_first(capabilities)
    low, high = capabilities.durations
    if capabilities.control_types:
        features.append("control-video")
    audio_input = {"formats": list(AUDIO_FORMATS), "max_seconds": MAX_AUDIO_SECONDS} \
        if capabilities.audio_to_video else None
    return {"models": [{
        "id": MODEL_ID,
        "name": "Pixverse V6 (self-hosted, LTX-2)",
        "type": "video",
        "creditCost": price,
        "creditCostByResolution": dict(prices),
        **({"soundCreditCostPerSecond": sound_price} if capabilities.sound_for_video else {}),
        "capabilities": features,
        "parameters": {"resolution": list(capabilities.qualities), "aspect_ratio": list(capabilities.aspect_ratios),
                       "duration": {"min": low, "max": high, "default": 5, "auto": capabilities.auto_duration},
                       "control_type": list(capabilities.control_types),
                       **({"audio": audio_input} if audio_input else {})},
        "sizes": capabilities.sizes(),
    }]}


# -- routes ----------------------------------------------------------------------------------------------------
def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The job API's error body on ``statuses`` (the answer's own type is the route's ``response_model``)."""
    return dict(errors(schemas.JobApiError, *statuses))


async def served_model(model_id: str) -> str:
    """The path's model id: 404 ``model_not_found`` before the body is looked at, unless it is the one served."""
    mapping.check_model(model_id, MODEL_ID)
    return model_id


ModelId = Annotated[str, Depends(served_model)]
JobIdPath = JobId  # a path parameter: anything but job_ + 24 hex is 404 naming it (``api.errors``)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
_SUBMITS: dict[str, Any] = {"response_model": schemas.Submitted,
                             "responses": _responses(400, 401, 402, 404, 409, 413, 429)}
_JOB: dict[str, Any] = {"response_model": schemas.Job, "response_model_exclude_unset": True}


def render(ctx: AppContext, request: Request, job: Job, position: int | None = None,
           webhook: dict[str, Any] | None = None) -> schemas.Job:
    base = base_url(ctx, request)
    return job_view(job, position=position, video_url=media_url(ctx, request, job, base=base),
                    thumbnail_url=media_url(ctx, request, job, "thumbnail.jpg", base=base),
                    preview_url=preview_url(ctx, request, job, base),
                    status_url=f"{base}{PREFIX}/jobs/{job.id}", webhook=webhook)


def preview_url(ctx: AppContext, request: Request, job: Job, base: str | None = None) -> str | None:
    """The early draft's signed link while the job runs or once it completed (a failed job's draft is gone)."""
    if job.status not in (JobStatus.PROCESSING, JobStatus.COMPLETED):
        return None
    return media_url(ctx, request, job, "preview.mp4", base=base)


@router.post("/models/{model_id}/run", openapi_extra=RUN_BODY.openapi, **_SUBMITS)
async def run_model(ctx: Ctx, key: AuthKey, model_id: ModelId, body: Annotated[BaseModel, Depends(RUN_BODY)],
                    request: Request, idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    fields, webhook = webhook_subscription(body)
    urls = media_urls(fields)
    video_request = to_video_request(fields)  # the whole body is checked before anything is fetched
    submitted = await service.submit(ctx, key, video_request, media_urls=urls, idempotency_key=idempotency_key,
                                     field_names=sent_names(fields), webhook=webhook)
    return submitted_view(ctx, request, submitted)


@router.post("/models/{model_id}/estimate", openapi_extra=RUN_BODY.openapi, response_model=schemas.Estimate,
             responses=_responses(400, 401, 404, 413, 429))
async def estimate_run(ctx: Ctx, key: AuthKey, model_id: ModelId,
                       body: Annotated[BaseModel, Depends(RUN_BODY)]) -> dict[str, Any]:
    """What ``run`` with this body would make, cost and when it would finish; refuses what ``run`` refuses (the
    same checks, in the same order), and charges and queues nothing."""
    fields, webhook = webhook_subscription(body)
    urls = media_urls(fields)
    video_request = to_video_request(fields)
    await service.admit(ctx, key, cost=None)  # counted toward the key's rate: an estimate decodes as a submit does
    prepared = await service.prepare(ctx, video_request, media_urls=urls, field_names=sent_names(fields))
    await service.check_webhook(ctx, webhook, ApiSurface.JOBS)
    return estimate_json(await run_in_threadpool(estimate, ctx, key, prepared))


@router.post("/jobs/{job_id}/extend", openapi_extra=EXTEND_BODY.openapi, **_SUBMITS)
async def extend_job(ctx: Ctx, key: AuthKey, job_id: JobIdPath,
                     body: Annotated[BaseModel | None, Depends(EXTEND_BODY)], request: Request,
                     idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    """A new job continuing this completed job's video by ``duration`` seconds (``{prompt?, duration?, ...}``);
    its result is the whole video."""
    fields, webhook = webhook_subscription(body)
    submitted = await derived.submit_extension(ctx, key, job_id, fields, source_field="jobId",
                                               idempotency_key=idempotency_key, webhook=webhook)
    return submitted_view(ctx, request, submitted)


@router.post("/jobs/{job_id}/retake", openapi_extra=RETAKE_BODY.openapi, **_SUBMITS)
async def retake_job(ctx: Ctx, key: AuthKey, job_id: JobIdPath, body: Annotated[BaseModel, Depends(RETAKE_BODY)],
                     request: Request, idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    """A new job regenerating ``[start, end)`` s of this completed job's video (``{start, end, prompt?, seed?}``),
    keeping the rest frame for frame; its result is the whole video, charged for the retaken seconds."""
    fields, webhook = webhook_subscription(body)
    submitted = await retake.submit_retake(ctx, key, job_id, fields, source_field="jobId",
                                           idempotency_key=idempotency_key, webhook=webhook)
    return submitted_view(ctx, request, submitted)


@router.post("/jobs/{job_id}/sound", openapi_extra=SOUND_BODY.openapi, **_SUBMITS)
async def sound_job(ctx: Ctx, key: AuthKey, job_id: JobIdPath, body: Annotated[BaseModel | None, Depends(SOUND_BODY)],
                    request: Request, idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    """A new job giving this completed job's video new sound (``{prompt?, negative_prompt?, seed?}``): the frames
    kept bit for bit, the sound made anew; charged per second of the video at the sound rate."""
    fields, webhook = webhook_subscription(body)
    submitted = await sound.submit_sound(ctx, key, job_id, fields, source_field="jobId",
                                         idempotency_key=idempotency_key, webhook=webhook)
    return submitted_view(ctx, request, submitted)


@router.post("/jobs/{job_id}/remix", openapi_extra=REMIX_BODY.openapi, **_SUBMITS)
async def remix_job(ctx: Ctx, key: AuthKey, job_id: JobIdPath, body: Annotated[BaseModel, Depends(REMIX_BODY)],
                     request: Request, idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    """A new job with this completed job's settings and seed and a new prompt (``{prompt}``)."""
    fields, webhook = webhook_subscription(body)
    submitted = await derived.submit_remix(ctx, key, job_id, fields, source_field="jobId",
                                           idempotency_key=idempotency_key, webhook=webhook)
    return submitted_view(ctx, request, submitted)


def submitted_view(ctx: AppContext, request: Request, submitted: Submitted) -> schemas.Submitted:
    job = submitted.job
    return schemas.Submitted(jobId=job.id, status=job.status.value,
                             statusUrl=f"{base_url(ctx, request)}{PREFIX}/jobs/{job.id}",
                             creditCost=job.credit_cost, creditsRemaining=submitted.credits_remaining)


@router.get("/jobs/{job_id}/manifest", response_model=schemas.Manifest, responses=_responses(401, 404, 409))
async def job_manifest(job_id: JobIdPath, ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    """What made this completed job's video (``jobs.manifest``); 409 while it has none."""
    job = await service.get_job(ctx, key, job_id)
    return {"jobId": job.id, **replay.manifest_of(job)}


@router.post("/jobs/{job_id}/replay", openapi_extra=REPLAY_BODY.openapi, **_SUBMITS)
async def replay_job(ctx: Ctx, key: AuthKey, job_id: JobIdPath,
                     body: Annotated[BaseModel | None, Depends(REPLAY_BODY)], request: Request,
                     idempotency_key: IdempotencyKey = None) -> schemas.Submitted:
    """A new job making this completed job's video again from its manifest; 409 when the model differs. The body
    (optional) takes only ``webhook_url`` / ``webhook_events``."""
    _, webhook = webhook_subscription(body)
    submitted = await replay.submit_replay(ctx, key, job_id, idempotency_key=idempotency_key, webhook=webhook)
    return submitted_view(ctx, request, submitted)


@router.get("/models", response_model=schemas.ModelList, responses=_responses(401))
def list_models(ctx: Ctx, key: AuthKey) -> dict[str, Any]:
    caps = ctx.capabilities
    return models_json(caps, ctx.settings.price, {q: ctx.settings.price_for(q) for q in caps.qualities},
                       ctx.settings.sound_price)


@router.get("/jobs", response_model=schemas.JobList, response_model_exclude_unset=True,
            responses=_responses(400, 401))
def list_jobs(request: Request, ctx: Ctx, key: AuthKey, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 20,
              after: Annotated[JobId | None, Query(description="the last job id of the previous page")] = None
              ) -> schemas.JobList:
    found = ctx.store.list_jobs(key.id, limit=limit + 1, after=after)
    return schemas.JobList(jobs=[render(ctx, request, j) for j in found[:limit]], hasMore=len(found) > limit,
                           creditsRemaining=ctx.store.credits(key.id))


@router.get("/jobs/{job_id}", responses=_responses(401, 404), **_JOB)
def get_job(job_id: JobIdPath, request: Request, ctx: Ctx, key: AuthKey) -> schemas.Job:
    job, position = ctx.store.get_with_position(job_id, key.id)
    webhook = webhook_json(job, deliveries.for_job(ctx.db, job.id)) if job.webhook_url else None
    return render(ctx, request, job, position, webhook)


@router.post("/jobs/{job_id}/cancel", responses=_responses(401, 404), **_JOB)
async def cancel_job(job_id: JobIdPath, request: Request, ctx: Ctx, key: AuthKey) -> schemas.Job:
    job = await service.cancel(ctx, key, job_id, wait=5.0)
    _, position = await run_in_threadpool(ctx.store.get_with_position, job_id, key.id)
    return render(ctx, request, job, position)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": schemas.SSE}, **_responses(401, 404)})
async def job_events(job_id: JobIdPath, request: Request, ctx: Ctx, key: AuthKey) -> StreamingResponse:
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
                yield _sse("done", render(ctx, request, job).model_dump(mode="json", exclude_unset=True))
                return
            if await request.is_disconnected():
                return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def error_response(exc: PixgenError) -> Response:
    """The job API's error body (``{"code", "message", "field"}``); a job id in the path is named as this API names
    a job id everywhere else, ``jobId``."""
    if exc.field == "job_id":
        exc.field = "jobId"
    return job_api_error(exc)


SURFACE = Surface(router=router, prefix=PREFIX, error_response=error_response)
