"""OpenAI Videos form: ``/v1/videos`` create, list, retrieve, delete and ``/content``.

Works with the official ``openai`` Python SDK (``OpenAI(api_key=KEY, base_url=f"{server}/v1").videos``:
``create``, ``create_and_poll``, ``retrieve``, ``list``, ``delete``, ``download_content``). The SDK sends
``create`` as multipart/form-data (every value a string, ``input_reference`` a file part or
``input_reference[image_url]``); JSON bodies are accepted too. A video is a job: its id is the job id.

How OpenAI's fields map to the canonical request:
- ``model``: ``pixverse-v6`` (the default when absent); any other id is 404 ``model_not_found``.
- ``seconds``: ``"1"``..``"15"`` (string, as the SDK sends it, or integer) → ``duration``; absent → 5; ``"auto"``
  where the model has a duration head: the model chooses (the Video's ``seconds`` is then the chosen length, e.g.
  ``"4.333"``, once made, and ``"auto"`` before).
- ``size``: ``WxH`` from the contract's table → ``aspect_ratio`` + ``quality`` (``1280x720`` = 16:9 720p);
  another size is 400 naming ``size``; absent → 720p, 16:9 or the start image's ratio.
- ``input_reference``: an uploaded PNG/JPEG/WebP file, ``{"image_url": "data:image/...;base64,..."}`` or the
  data URI itself → ``image_input``.
- every other canonical field (``negative_prompt``, ``seed``, ``generate_audio``, ``style``, ``thinking_type``,
  ``camera_movement``, ``multi_clip``, ``end_image_input``) may ride along (the SDK's ``extra_body``).
The Video object carries ``prompt`` as used plus two extra fields: ``original_prompt`` and ``seed``.

Extend and remix (``api.derived``), as the SDK sends them:
- ``POST /v1/videos/extensions`` (``videos.extend(video={"id": ID}, prompt=..., seconds=...)``, multipart with
  ``video[id]``; JSON too, ``video`` as ``{"id": ID}`` or the id itself): a new video continuing a completed one by
  ``seconds`` (1..15, default 5); its ``seconds`` is the whole, stitched length. ``negative_prompt``, ``seed``,
  ``style``, ``thinking_type``, ``camera_movement`` may ride along; ``size`` and ``input_reference`` may not.
- ``POST /v1/videos/{id}/remix`` (``videos.remix(ID, prompt=...)``): same settings and seed, new prompt;
  ``remixed_from_video_id`` names the source.

Layout: schemas, pure mapping functions (tested on ``tests/examples/openai_*.json``), the error body, routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from pixgen.api import derived, mapping, service
from pixgen.api.bodies import (
    NOT_BLANK,
    URL_SCHEMA,
    Body,
    FormOrJsonBody,
    JsonBody,
    body_model,
    canonical_fields,
    not_both,
    prompt_field,
)
from pixgen.api.body import read_json
from pixgen.api.context import AppContext, AuthKey, Ctx
from pixgen.api.errors import error_headers
from pixgen.api.media import stored_response
from pixgen.api.openapi import errors
from pixgen.api.surface import Surface
from pixgen.core.fields import Media, form_value, roles, surface_names
from pixgen.core.models import MODEL_ID
from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES, output_size
from pixgen.core.spec import AUTO, VideoRequest, invalid_from_validation, parse_request
from pixgen.core.text import CheckedStr, parse_digits
from pixgen.engine.base import Capabilities
from pixgen.errors import InvalidRequest, NotFound, PixgenError
from pixgen.jobs.ids import JobId
from pixgen.jobs.origin import ApiSurface, Origin
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job
from pixgen.media.fetch import check_url
from pixgen.media.kinds import kind

PREFIX = "/v1"
POLL_AFTER_MS = 500  # told to the SDK's create_and_poll / poll (header openai-poll-after-ms) while a job runs
DELETE_WAIT = 10.0  # seconds DELETE gives a running job to stop before it answers 409 (which the SDK retries)
SURFACE_NAME = ApiSurface.OPENAI  # how field roles name this surface (``Role.names``)
ORIGIN = Origin(surface=SURFACE_NAME)  # a video made here (extensions and remixes add where they come from)
# Canonical fields that OpenAI's own fields stand for (``seconds``, ``size``, ``input_reference``): giving both is
# ambiguous.
_SAME_AS = surface_names(VideoRequest, SURFACE_NAME)
# Multipart fields that may carry an uploaded file: every media field, by this surface's name for it, and its kind.
FILE_FIELDS: dict[str, Media] = {_SAME_AS.get(name, name): role.media for name, role in roles(VideoRequest).items()
                                 if role.media is not None}

# "WxH" → (aspect_ratio, quality): the contract's size table, read backwards.
SIZES: dict[str, tuple[str, str]] = {
    "{}x{}".format(*output_size(ratio, quality)): (ratio, quality) for ratio in ASPECT_RATIOS for quality in QUALITIES
}
assert len(SIZES) == len(ASPECT_RATIOS) * len(QUALITIES), "two table entries share one size"

OPENAI_FIELDS = ("model", "prompt", *sorted(set(_SAME_AS.values())))  # OpenAI's own; the rest are canonical
# Job status → OpenAI status (a cancelled job reads as failed, with error code "cancelled").
Status = Literal["queued", "in_progress", "completed", "failed"]
STATUS: dict[JobStatus, Status] = {
    JobStatus.PENDING: "queued", JobStatus.PROCESSING: "in_progress", JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed", JobStatus.CANCELLED: "failed"}


# -- schemas ---------------------------------------------------------------------------------------------------
class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str
    object: Literal["video"] = "video"
    model: str = MODEL_ID
    status: Status
    progress: int
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    seconds: str
    size: str
    error: VideoError | None = None
    remixed_from_video_id: str | None = None
    prompt: str | None = None
    # pixgen's own, beside OpenAI's: the prompt as asked, and the seed (drawn when none was given)
    original_prompt: str | None = None
    seed: int | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ListParams(BaseModel):
    """``GET /v1/videos``'s query: any other parameter is refused, naming it."""

    model_config = ConfigDict(extra="forbid")

    after: JobId | None = Field(None, description="the id of the last video of the previous page")
    limit: int = Field(20, ge=1, le=100, description="videos per page")
    order: Literal["asc", "desc"] = Field("desc", description="by creation time")


# -- request bodies: the types the routes take, and the document shows ----------------------------------------
# OpenAI's own fields, checked by the same functions that map them (their refusals name the field).
_SECONDS = Annotated[StrictInt | CheckedStr, AfterValidator(lambda v: parse_seconds(v) and v),
                     WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": 15},
              {"type": "string", "enum": [*(str(n) for n in range(1, 16)), AUTO]}],
    "description": 'length in seconds, or "auto" (the model\'s duration head chooses)'})]
_SIZE = Annotated[CheckedStr, AfterValidator(lambda v: parse_size(v) and v),
                  WithJsonSchema({"type": "string", "enum": list(SIZES)})]
_MODEL = Annotated[CheckedStr, WithJsonSchema({"type": "string", "enum": [MODEL_ID]})]
_REFERENCE_IMAGE = Annotated[CheckedStr, WithJsonSchema(
    {"anyOf": [{"type": "string", "pattern": Media.IMAGE.data_uri_pattern}, URL_SCHEMA]})]


class InputReference(Body):
    image_url: _REFERENCE_IMAGE


_REFERENCE = Annotated[_REFERENCE_IMAGE | InputReference, Field(
    description="the start frame: a data URI, an http(s) URL, or {image_url}; an uploaded file in a form")]


class VideoId(Body):
    id: Annotated[CheckedStr, WithJsonSchema({"type": "string", "pattern": NOT_BLANK})]


_VIDEO = Annotated[Annotated[CheckedStr, WithJsonSchema({"type": "string", "minLength": 1,
                                                          "pattern": NOT_BLANK})]
                   | VideoId, Field(description="the completed video to continue: {id} or its id")]
_OWN = {"model": (_MODEL, MODEL_ID), "prompt": prompt_field(required=True)}
VideoCreateRequest = body_model(
    "VideoCreateRequest", {
        **_OWN, "seconds": (_SECONDS, None), "size": (_SIZE, None), "input_reference": (_REFERENCE, None),
        **{k: v for k, v in canonical_fields().items() if k != "prompt"}},
    schema={"dependentRequired": {"end_image_input": ["image_input"]},
            **not_both(*((own, canonical) for canonical, own in _SAME_AS.items()))})
VideoExtensionRequest = body_model(
    "VideoExtensionRequest", {
        **_OWN, "video": (_VIDEO, ...), "seconds": (_SECONDS, None),
        **canonical_fields(only=[f for f in derived.EXTEND_FIELDS if f != "prompt"], optional=True)},
    unknown=derived.EXTEND_REFUSAL, schema=not_both(("seconds", "duration")))
RemixRequest = body_model("RemixRequest", {"prompt": prompt_field(required=True)}, unknown=derived.REMIX_REFUSAL)


def _open_body(body: Mapping[str, Any], typed: JsonBody[Any], *, form: bool) -> dict[str, Any]:
    """The fields of a create / extend body, checked by its type (``typed``: a form's brackets nested and its text
    typed back first), with ``model`` checked and removed."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    fields: dict[str, Any] = typed.validate(_form_fields(body) if form else body).model_dump(exclude_unset=True)
    mapping.check_model(fields.pop("model", MODEL_ID), MODEL_ID)
    return fields


# -- pure mapping: request -------------------------------------------------------------------------------------
def to_video_request(body: Mapping[str, Any], *, form: bool = False) -> VideoRequest:
    """The canonical request of ``POST /v1/videos``; ``form=True`` for multipart bodies (all values strings).

    Raises ``InvalidRequest`` naming the field as the caller spelled it (``seconds``, ``size``, ...), or
    ``ModelNotFound`` for another model id.
    """
    body = _open_body(body, CREATE_BODY, form=form)
    mapping.require_prompt(body)
    prompt = body["prompt"]
    for canonical, own in _SAME_AS.items():
        if canonical in body and own in body:
            raise InvalidRequest(f"give {own} or {canonical}, not both", field=canonical)

    spec: dict[str, Any] = {k: v for k, v in body.items() if k not in OPENAI_FIELDS}
    spec["prompt"] = prompt
    if "seconds" in body:
        spec["duration"] = parse_seconds(body["seconds"])
    if "size" in body:
        spec["aspect_ratio"], spec["quality"] = parse_size(body["size"])
    if body.get("input_reference") is not None:
        reference = parse_input_reference(body["input_reference"])
        spec["image_input"] = reference if reference.startswith("data:") else Media.IMAGE.placeholder
    try:
        return parse_request(spec)
    except InvalidRequest as exc:
        raise mapping.renamed(exc, sent_names(body)) from None


def media_urls(body: Mapping[str, Any], *, form: bool = False) -> dict[str, str]:
    """``{"image_input": URL}`` when ``input_reference`` names its image by an http(s) URL (fetched at submit by
    ``service.submit``), else ``{}``."""
    if not isinstance(body, Mapping):
        return {}
    reference = (_nest_brackets(body) if form else body).get("input_reference")
    if reference is None:
        return {}
    value = parse_input_reference(reference)
    return {} if value.startswith("data:") else {"image_input": value}


def sent_names(body: Mapping[str, Any]) -> dict[str, str]:
    """Canonical field → the OpenAI name this body used for it (``seconds``, ``size``, ``input_reference``)."""
    return {canonical: own for canonical, own in _SAME_AS.items() if own in body}


def to_extension_fields(body: Mapping[str, Any], *, form: bool = False) -> tuple[str, dict[str, Any]]:
    """``(source video id, canonical fields)`` of ``POST /v1/videos/extensions``; errors name OpenAI's fields."""
    body = _open_body(body, EXTEND_BODY, form=form)
    video = body.pop("video", None)
    if isinstance(video, Mapping):
        unknown = sorted(set(video) - {"id"})
        if unknown:
            raise InvalidRequest(f"unknown field {unknown[0]!r} in video", field=f"video.{unknown[0]}")
        video = video.get("id")
    if isinstance(video, str) and video.startswith("data:"):  # an upload, read as media (sound_only's video)
        raise InvalidRequest('video must name a completed video, {"id": "..."}: an uploaded file cannot be '
                             'extended', field="video")
    if not isinstance(video, str) or not video.strip():
        raise InvalidRequest('video is required: {"id": "<the id of a completed video>"}', field="video")
    mapping.require_prompt(body)
    if "duration" in body and "seconds" in body:
        raise InvalidRequest("give seconds or duration, not both", field="duration")
    fields = {k: v for k, v in body.items() if k != "seconds"}
    if "seconds" in body:
        fields["duration"] = parse_seconds(body["seconds"])
    return video.strip(), fields


def parse_seconds(value: Any) -> int | str:
    """``"4"`` or ``4`` → 4; 1..15 only; ``"auto"`` as it is (refused later where the model has no duration head)."""
    if isinstance(value, str) and value.strip() == AUTO:
        return AUTO
    if isinstance(value, str) and (number := parse_digits(value.strip(), max_digits=2)) is not None:
        value = number
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 15:
        raise InvalidRequest(f"seconds must be a whole number of seconds from 1 to 15, not {value!r}",
                             field="seconds")
    return value


def parse_size(value: Any) -> tuple[str, str]:
    """``"1280x720"`` → ``("16:9", "720p")``; only the sizes of the contract's table."""
    key = value.strip().lower() if isinstance(value, str) else None  # a list or object is not a size either
    if key not in SIZES:
        raise InvalidRequest(f"size {value!r} is not offered; use one of: {', '.join(SIZES)}", field="size")
    return SIZES[key]


def parse_input_reference(value: Any) -> str:
    """The start frame of ``input_reference`` — the data URI itself or ``{"image_url": URI}``, where ``URI`` may
    also be an http(s) URL — as a data URI or a URL checked for form (fetched at submit)."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"image_url", "file_id"}
        if unknown:
            raise InvalidRequest(f"unknown field {sorted(unknown)[0]!r} in input_reference",
                                 field=f"input_reference.{sorted(unknown)[0]}")
        if value.get("file_id") is not None:
            raise InvalidRequest("input_reference.file_id is not supported here; upload the image or give "
                                 "image_url as a data:image/...;base64 URI", field="input_reference.file_id")
        value = value.get("image_url")
    if isinstance(value, str) and value.strip().lower().startswith(("http://", "https://")):
        return str(check_url(value, "input_reference"))
    if not isinstance(value, str) or not value.startswith("data:image/"):
        raise InvalidRequest("input_reference must be an uploaded PNG/JPEG/WebP image, a "
                             "data:image/(png|jpeg|webp);base64,... URI or an http(s) URL of one",
                             field="input_reference")
    return value


def parse_list_params(query: Mapping[str, str]) -> ListParams:
    """``after``, ``limit`` (1..100, default 20) and ``order`` (``asc``|``desc``, default ``desc``); anything else is
    refused naming it (the route takes the same ``ListParams`` as its query)."""
    try:
        return ListParams.model_validate(dict(query))
    except ValidationError as exc:
        raise invalid_from_validation(exc, ListParams) from None


def _nest_brackets(form: Mapping[str, Any]) -> dict[str, Any]:
    """``{"input_reference[image_url]": v}`` → ``{"input_reference": {"image_url": v}}`` (the SDK's form encoding)."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        match = re.fullmatch(r"(\w+)\[(\w+)\]", key)
        name = match[1] if match else key
        if name in out and not (match and isinstance(out[name], dict)):
            raise InvalidRequest(f"{name} is given more than once", field=name)
        if match:
            out.setdefault(name, {})[match[2]] = value
        else:
            out[name] = value
    return out


def _from_form(name: str, value: Any) -> Any:
    """A form value of canonical field ``name`` as the field's own type (multipart sends every value as text)."""
    info = VideoRequest.model_fields.get(name)
    return form_value(info, value) if info is not None else value


# -- pure mapping: response ------------------------------------------------------------------------------------
def from_job(job: Job, *, expires_at: float | None = None) -> dict[str, Any]:
    """A job as OpenAI's Video object."""
    status = job.status
    error = None
    if status is JobStatus.CANCELLED:
        error = VideoError(code="cancelled", message=job.error_message or "the job was cancelled")
    elif status is JobStatus.FAILED:
        error = VideoError(code=job.error_code or "internal_error",
                           message=job.error_message or "the video could not be generated")
    width, height = mapping.job_size(job)
    finished = job.finished_at if status.is_terminal() else None
    return Video(
        id=job.id,
        model=job.model,
        status=STATUS[status],
        progress=mapping.job_progress(job),
        created_at=int(job.created_at),
        completed_at=int(finished) if finished else None,
        expires_at=int(expires_at) if expires_at and status is JobStatus.COMPLETED else None,
        seconds=_seconds(job),
        size=f"{width}x{height}",
        error=error,
        remixed_from_video_id=job.remix_of,
        prompt=job.prompt or job.original_prompt,
        original_prompt=job.original_prompt,
        seed=job.seed,
    ).model_dump()


def _seconds(job: Job) -> str:
    """The Video's ``seconds``: as asked; for ``"auto"`` the chosen length once made (``"4.333"``), else ``"auto"``."""
    chosen = mapping.chosen_duration(job)
    return f"{chosen:g}" if chosen is not None else str(mapping.job_duration(job))


def to_list(videos: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return VideoList(
        data=[Video.model_validate(v) for v in videos],
        first_id=videos[0]["id"] if videos else None,
        last_id=videos[-1]["id"] if videos else None,
        has_more=has_more,
    ).model_dump()


def deleted(video_id: str) -> dict[str, Any]:
    return VideoDeleted(id=video_id).model_dump()


# -- errors ----------------------------------------------------------------------------------------------------
_ERROR_TYPES = {401: "authentication_error", 402: "insufficient_quota", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(exc: PixgenError) -> dict[str, Any]:
    """A ``PixgenError`` as OpenAI's error body; ``param`` names the field."""
    detail = ErrorDetail(message=exc.message, type=error_type(exc.status), param=exc.field, code=exc.code)
    return ErrorResponse(error=detail).model_dump()


def error_response(exc: PixgenError) -> Response:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=error_headers(exc))


# -- routes ----------------------------------------------------------------------------------------------------
router = APIRouter(prefix=PREFIX, tags=["OpenAI Videos"])
_SUBMIT_ERRORS = errors(ErrorResponse, 400, 401, 402, 404, 409, 413, 429)
_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file", "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}},
                                                       "image/jpeg": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}},
    206: {"description": "One byte range of the file (Range: bytes=...)",
          "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}},
                      "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
    416: {"description": "Byte range past the end of the file"},
}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
VideoIdPath = JobId  # a video is a job: anything but job_ + 24 hex is 404 naming video_id (``api.errors``)


async def _read_body(request: Request) -> tuple[dict[str, Any], bool]:
    return await _read_create_body(request, request.app.state.ctx.settings.max_body_bytes)


def _form_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    """A form's fields in the JSON body's shape: ``a[b]`` nested, canonical fields' text typed back."""
    return {name: _from_form(name, value) for name, value in _nest_brackets(form).items()}


CREATE_BODY = FormOrJsonBody(VideoCreateRequest, _read_body, _form_fields)
EXTEND_BODY = FormOrJsonBody(VideoExtensionRequest, _read_body, _form_fields)
REMIX_BODY = FormOrJsonBody(RemixRequest, _read_body, _form_fields)


@router.post("/videos", response_model=Video, responses=_SUBMIT_ERRORS, openapi_extra=CREATE_BODY.openapi)
async def create_video(ctx: Ctx, key: AuthKey, body: Annotated[BaseModel, Depends(CREATE_BODY)],
                       idempotency_key: IdempotencyKey = None) -> Response:
    """Queue a video (multipart/form-data as the SDK sends it, or JSON); answers the queued Video object."""
    fields = body.model_dump(exclude_unset=True)
    video_request = to_video_request(fields)
    submitted = await service.submit(ctx, key, video_request, media_urls=media_urls(fields),
                                     origin=ORIGIN, idempotency_key=idempotency_key,
                                     field_names=sent_names(fields))
    return _video_response(ctx, submitted.job)


@router.post("/videos/extensions", response_model=Video, responses=_SUBMIT_ERRORS,
             openapi_extra=EXTEND_BODY.openapi)
async def extend_video(ctx: Ctx, key: AuthKey, body: Annotated[BaseModel, Depends(EXTEND_BODY)],
                       idempotency_key: IdempotencyKey = None) -> Response:
    """Continue a completed video by ``seconds``; the new video is the whole, longer one."""
    sent = body.model_dump(exclude_unset=True)
    source_id, fields = to_extension_fields(sent)
    try:
        submitted = await derived.submit_extension(ctx, key, source_id, fields, source_field="video",
                                                   idempotency_key=idempotency_key, surface=ORIGIN.surface)
    except InvalidRequest as exc:
        raise mapping.renamed(exc, {"duration": "seconds"} if "seconds" in sent else {}) from None
    return _video_response(ctx, submitted.job)


@router.post("/videos/{video_id}/remix", response_model=Video, responses=_SUBMIT_ERRORS,
             openapi_extra=REMIX_BODY.openapi)
async def remix_video(ctx: Ctx, key: AuthKey, video_id: VideoIdPath, body: Annotated[BaseModel, Depends(REMIX_BODY)],
                      idempotency_key: IdempotencyKey = None) -> Response:
    """A new video with the settings and seed of a completed one and a new ``prompt``."""
    submitted = await derived.submit_remix(ctx, key, video_id, body.model_dump(exclude_unset=True),
                                           source_field="video_id", idempotency_key=idempotency_key,
                                           surface=ORIGIN.surface)
    return _video_response(ctx, submitted.job)


@router.get("/videos", response_model=VideoList, responses=errors(ErrorResponse, 400, 401))
async def list_videos(ctx: Ctx, key: AuthKey, params: Annotated[ListParams, Query()]) -> dict[str, Any]:
    """The key's videos (made through any surface), newest first unless ``order=asc``; cursor ``after``."""
    found = await run_in_threadpool(ctx.store.list_jobs, key.id, limit=params.limit + 1, after=params.after,
                                    order=params.order)
    page = found[: params.limit]
    return to_list([from_job(job, expires_at=_expires_at(ctx, job)) for job in page],
                   has_more=len(found) > params.limit)


@router.get("/videos/{video_id}", response_model=Video, responses=errors(ErrorResponse, 401, 404))
async def retrieve_video(ctx: Ctx, key: AuthKey, video_id: VideoIdPath) -> Response:
    return _video_response(ctx, await service.get_job(ctx, key, video_id))


@router.delete("/videos/{video_id}", response_model=VideoDeleted, responses=errors(ErrorResponse, 401, 404, 409))
async def delete_video(ctx: Ctx, key: AuthKey, video_id: VideoIdPath) -> dict[str, Any]:
    """Cancel the job if it is still queued or running (credits refunded), then delete it and its files."""
    await service.cancel(ctx, key, video_id, wait=DELETE_WAIT)
    job = await run_in_threadpool(ctx.store.delete, video_id, key.id)  # 409 while it is still stopping
    for name in (job.video_file, job.thumb_file, job.preview_file):
        if name and not job.media_deleted:
            await run_in_threadpool(ctx.media.delete, name)
    return deleted(job.id)


@router.get("/videos/{video_id}/content", responses={**_CONTENT, **errors(ErrorResponse, 400, 401, 404)},
            response_class=Response)
async def download_content(ctx: Ctx, key: AuthKey, video_id: VideoIdPath,
                           variant: Literal["video", "thumbnail"] = "video",
                           byte_range: Annotated[str | None, Header(alias="Range", description="one byte range, e.g. "
                                                                    "bytes=0-1023")] = None) -> Response:
    """The finished video (``video/mp4``, range requests) or its first-frame thumbnail (``image/jpeg``), streamed
    from the media store."""
    files = {"video": "video.mp4", "thumbnail": "thumbnail.jpg"}
    job = await service.get_job(ctx, key, video_id)
    if job.status is not JobStatus.COMPLETED:
        raise NotFound(f"video {video_id} has no content: it is {STATUS[job.status]}", field="video_id")
    return await run_in_threadpool(stored_response, ctx.media, job, files[variant], byte_range)


def _video_response(ctx: AppContext, job: Job) -> Response:
    headers = {} if job.status.is_terminal() else {"openai-poll-after-ms": str(POLL_AFTER_MS)}
    return JSONResponse(from_job(job, expires_at=_expires_at(ctx, job)), headers=headers)


def _expires_at(ctx: AppContext, job: Job) -> float | None:
    """Outputs are kept until deleted, except in zero-data-retention mode (deleted ``output_ttl`` after the end)."""
    if ctx.settings.zero_data_retention and job.finished_at:
        return job.finished_at + ctx.settings.output_ttl
    return None


async def _read_create_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], bool]:
    """``(body, is_form)``: multipart or urlencoded form (uploaded images as data URIs), else strict JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await read_json(request), False
    body: dict[str, Any] = {}
    try:
        async with request.form(max_part_size=max_bytes) as form:
            for name, value in form.multi_items():
                if name in body:
                    raise InvalidRequest(f"{name} is given more than once", field=name)
                if isinstance(value, UploadFile):
                    if name not in FILE_FIELDS:
                        raise InvalidRequest(f"{name} cannot be a file upload", field=name)
                    data = await value.read()
                    value = await run_in_threadpool(kind(FILE_FIELDS[name], name).from_bytes, data, name, None)
                body[name] = value
    except HTTPException as exc:  # the multipart parser's own refusals
        raise InvalidRequest(f"the form body could not be read: {exc.detail}", field="body") from None
    return body, True


def narrow_document(schemas: dict[str, dict[str, Any]], caps: Capabilities) -> None:
    """OpenAI's own fields in the document held to what ``caps`` offers: ``seconds`` to its durations, ``size`` to
    the sizes of its ratios and qualities (the canonical fields are narrowed by their roles)."""
    low, high = caps.durations
    sizes = ["{}x{}".format(*output_size(r, q)) for r in caps.aspect_ratios for q in caps.qualities]
    for name in (VideoCreateRequest.__name__, VideoExtensionRequest.__name__):
        props = schemas[name]["properties"]
        if "seconds" in props:
            number, text = props["seconds"]["anyOf"]
            number.update(minimum=max(low, number["minimum"]), maximum=min(high, number["maximum"]))
            text["enum"] = [n for n in text["enum"] if (n == AUTO and caps.auto_duration)
                            or (n != AUTO and low <= int(n) <= high)]
        if "size" in props:
            for option in props["size"].get("anyOf", [props["size"]]):
                if "enum" in option:
                    option["enum"] = [size for size in option["enum"] if size in sizes]


SURFACE = Surface(router=router, prefix=PREFIX, error_response=error_response, narrow=narrow_document)
