"""Cloudflare Workers AI form: ``POST /client/v4/accounts/{account_id}/ai/run[/pixverse/v6]``.

Works with the official ``cloudflare`` Python SDK pointed at the server
(``Cloudflare(api_token=KEY, base_url=f"{server}/client/v4").ai.run("pixverse/v6", account_id=..., prompt=...)``).
The SDK percent-encodes the model id (``.../ai/run/pixverse%2Fv6``); the server decodes the path before routing,
so the ``{model_name:path}`` route sees ``pixverse/v6`` either way.

Like Workers AI, a run is synchronous: the job is submitted and the answer waits for the video. If the client goes
away first the job is cancelled (its credits refunded): nobody could fetch its result. The job id is sent back in
the ``X-Pixgen-Job-Id`` header, the seed in ``X-Pixgen-Seed``; the job API shows the rest of the job.

Layout: schemas, pure mapping functions (tested on ``tests/examples/cloudflare_*.json``), the error body, routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from pixgen.api import mapping, service
from pixgen.api.bodies import JsonBody, body_model, canonical_fields, prompt_field
from pixgen.api.context import AppContext, AuthKey, Ctx
from pixgen.api.errors import error_headers
from pixgen.api.media import media_url
from pixgen.api.openapi import errors
from pixgen.api.surface import Surface
from pixgen.core.models import CLOUDFLARE_MODEL_ID as MODEL_ID
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.core.text import CheckedStr
from pixgen.errors import Conflict, GenerationError, InvalidRequest, PixgenError, error_for_code
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.origin import ApiSurface, Origin
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job

PREFIX = "/client/v4"
ORIGIN = Origin(surface=ApiSurface.CLOUDFLARE)  # every job of this surface is a new video
POLL = (0.1, 0.5)  # seconds between looks at the job while waiting: from the first to the most


# -- schemas ----------------------------------------------------------------------------------------------------
# The model input: the canonical fields, with a prompt always (the job API alone lets a start frame stand without).
WorkersAIInput = body_model("WorkersAIInput", {**canonical_fields(), "prompt": prompt_field(required=True)},
                            schema={"dependentRequired": {"end_image_input": ["image_input"]}})
# ``POST .../ai/run``: the model id and its input in one body (``options`` is accepted and ignored). ``input`` is
# checked as an object here, then as ``WorkersAIInput`` (its errors named ``input.*``).
WorkersAIRunRequest = body_model("WorkersAIRunRequest", {
    "model": (Annotated[CheckedStr, WithJsonSchema({"type": "string", "enum": [MODEL_ID]})], ...),
    "input": (Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/WorkersAIInput"}]})],
              ...),
    "options": (dict[str, Any] | None, Field(None, description="accepted and ignored")),
}, unknown="unknown field {name!r}; expected `model` and `input`")
INPUT_BODY, RUN_BODY = JsonBody(WorkersAIInput), JsonBody(WorkersAIRunRequest)


class RunResult(BaseModel):
    video: str


class RunResponse(BaseModel):
    result: RunResult
    success: bool = True
    errors: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    state: str = "Completed"


class WorkersAIErrorResponse(BaseModel):
    success: bool = False
    errors: list[dict[str, Any]]
    messages: list[dict[str, Any]] = []
    result: None = None


# -- pure mapping ----------------------------------------------------------------------------------------------
def check_model(model_name: str) -> None:
    """Only ``pixverse/v6`` runs here: any other id is 404 ``model_not_found``."""
    mapping.check_model(model_name, MODEL_ID)


def to_video_request(body: Any, *, model_name: str = MODEL_ID) -> VideoRequest:
    """The request of ``POST .../ai/run/{model_name}``: the body is the model input itself."""
    check_model(model_name)
    return _parse(body)


def unwrap_run_body(body: Any) -> tuple[str, dict[str, Any]]:
    """``(model, input)`` of ``POST .../ai/run``; a bad wrapper is 400 naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object with `model` and `input`", field="body")
    run = RUN_BODY.validate(body)
    return run.model, run.input  # type: ignore[attr-defined]  # built by body_model: mypy sees a bare BaseModel


def to_video_request_wrapped(body: Any) -> VideoRequest:
    """The request of ``POST .../ai/run`` (``{"model": "pixverse/v6", "input": {...}}``); fields named ``input.*``."""
    model, model_input = unwrap_run_body(body)
    check_model(model)
    try:
        return _parse(model_input)
    except InvalidRequest as exc:
        raise mapping.renamed(exc, prefix="input.") from None


def _parse(model_input: Any) -> VideoRequest:
    """The model input as ``WorkersAIInput`` (a prompt always, not blank), then the canonical request."""
    if not isinstance(model_input, Mapping):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    fields = INPUT_BODY.validate(model_input).model_dump(exclude_unset=True)
    mapping.require_prompt(fields)
    return parse_request(fields)


def from_job(job: Job | None, video_url: str) -> dict[str, Any]:
    """The answer for a completed job: Workers AI's envelope around ``{"video": URL}`` (the job's signed link;
    the job itself adds nothing more to Workers AI's documented output)."""
    return RunResponse(result=RunResult(video=video_url)).model_dump()


def job_error(job: Job) -> PixgenError | None:
    """The error to answer for a job that ended without a video (failed or cancelled); None if it has one."""
    if job.status is JobStatus.COMPLETED:
        return None
    if job.status is JobStatus.CANCELLED:
        return Conflict(job.error_message or "the job was cancelled before it finished")
    return error_for_code(job.error_code, job.error_message or "the video could not be generated")


def error_body(exc: PixgenError) -> dict[str, Any]:
    """A ``PixgenError`` as Workers AI's error envelope; the field is named in the message and ``source.pointer``."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.field:
        error["source"] = {"pointer": "/" + exc.field.replace(".", "/")}
    return WorkersAIErrorResponse(errors=[error]).model_dump()


def error_response(exc: PixgenError, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(error_body(exc), status_code=exc.status, headers={**error_headers(exc), **(headers or {})})


# -- routes ----------------------------------------------------------------------------------------------------
router = APIRouter(prefix=PREFIX, tags=["Cloudflare Workers AI"])
_RESPONSES = errors(WorkersAIErrorResponse, 400, 401, 402, 404, 409, 413, 429, 500)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


async def served_model(model_name: str) -> str:
    """The path's model id: 404 ``model_not_found`` before the body is looked at, unless it is ``pixverse/v6``."""
    check_model(model_name)
    return model_name


@router.post("/accounts/{account_id}/ai/run", response_model=RunResponse, responses=_RESPONSES,
             openapi_extra=RUN_BODY.openapi)
async def run_wrapped(account_id: str, ctx: Ctx, key: AuthKey, body: Annotated[BaseModel, Depends(RUN_BODY)],
                      request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Workers AI's ``{"model": "pixverse/v6", "input": {...}}`` form; waits for the video."""
    video_request = to_video_request_wrapped(body.model_dump(exclude_unset=True))
    names = {name: f"input.{name}" for name in VideoRequest.model_fields}  # errors found at submit, too
    return await _run(ctx, key, request, video_request, idempotency_key, field_names=names)


@router.post("/accounts/{account_id}/ai/run/{model_name:path}", response_model=RunResponse, responses=_RESPONSES,
             openapi_extra=INPUT_BODY.openapi)
async def run_model(account_id: str, ctx: Ctx, key: AuthKey, model_name: Annotated[str, Depends(served_model)],
                    body: Annotated[BaseModel, Depends(INPUT_BODY)], request: Request,
                    idempotency_key: IdempotencyKey = None) -> Response:
    """The model input as the body (what ``client.ai.run("pixverse/v6", ...)`` sends); waits for the video."""
    video_request = to_video_request(body.model_dump(exclude_unset=True), model_name=model_name)
    return await _run(ctx, key, request, video_request, idempotency_key)


async def _run(ctx: AppContext, key: ApiKey, request: Request, video_request: VideoRequest,
               idempotency_key: str | None, field_names: Mapping[str, str] | None = None) -> Response:
    submitted = await service.submit(ctx, key, video_request, origin=ORIGIN, idempotency_key=idempotency_key,
                                     field_names=field_names)
    job = await _wait(ctx, request, submitted.job.id)
    if job is None:  # the client went away; nothing more to say to it
        return Response(status_code=499)
    headers = {"X-Pixgen-Job-Id": job.id, "X-Pixgen-Seed": str(job.seed)}
    error = job_error(job)
    url = media_url(ctx, request, job) if error is None else None
    if error is None and url is None:
        error = GenerationError("the video of this job is no longer stored")
    if error is not None or url is None:
        # A generation that failed would fail again: tell the SDK not to retry it (it does on 409 and 5xx).
        return error_response(error or GenerationError("no video"), {**headers, "x-should-retry": "false"})
    return JSONResponse(from_job(job, url), headers=headers)


async def _wait(ctx: AppContext, request: Request, job_id: str) -> Job | None:
    """The job once it has ended; None (and the job cancelled, its credits refunded) if the client left first."""
    delay = POLL[0]
    while True:
        job = await run_in_threadpool(ctx.store.get, job_id)
        if job.status.is_terminal():
            return job
        if await request.is_disconnected():
            await run_in_threadpool(ctx.store.cancel, job_id)
            return None
        await asyncio.sleep(delay)
        delay = min(POLL[1], delay * 1.5)


SURFACE = Surface(router=router, prefix=PREFIX, error_response=error_response)
