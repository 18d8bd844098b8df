"""The job API's answers as types: its routes return these (``response_model``; ``jobs_api.job_view`` builds a
``Job``), so the OpenAPI document shows what is sent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from pixgen.jobs.states import JobStatus

if TYPE_CHECKING:  # mypy cannot read a Literal built at run time; to it a status is a string
    Status = str
else:
    Status = Literal[tuple(s.value for s in JobStatus)]


class JobApiError(BaseModel):
    code: str = Field(description="stable error code: invalid_request, unauthorized, insufficient_credits, "
                                  "not_found, model_not_found, conflict, payload_too_large, rate_limited, ...")
    message: str
    field: str | None = Field(None, description="the request field at fault, as sent")


class JobOutput(BaseModel):
    video: str | None = Field(description="signed link to the MP4 (range requests), valid for --media-url-ttl; "
                                          "null until the job completes")
    thumbnail: str | None
    preview: str | None = Field(None, description="signed link to the early draft (stage 1 at half size, silent) "
                                                  "of a two-stage job, while it runs and once it completed")


class Shot(BaseModel):
    index: int
    prompt: str | None = None
    start: float
    end: float


class WebhookDelivery(BaseModel):
    id: str = Field(description="the webhook-id header: the same on every retry")
    type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    lastStatus: int | None
    lastError: str | None
    nextAttemptAt: float | None
    finishedAt: float | None


class JobWebhook(BaseModel):
    url: str
    events: list[str]
    deliveries: list[WebhookDelivery]


class RetakeRange(BaseModel):
    start: float
    end: float


class SoundtrackFit(BaseModel):
    """How a given soundtrack (``audio``) was fitted to the video: seconds of each, and cut off or padded."""

    givenSeconds: float = Field(description="the soundtrack's own length")
    videoSeconds: float = Field(description="the video's length (its first frame to its last), the track's too")
    cutSeconds: float = Field(description="cut off the soundtrack's end (a shorter duration was asked)")
    paddedSeconds: float = Field(description="silence after it (a longer duration, or up to a whole frame)")


class Job(BaseModel):
    jobId: str
    status: Status
    progress: int = Field(ge=0, le=100)
    stage: str | None
    output: JobOutput | None
    seed: int | None
    prompt: str | None
    originalPrompt: str | None
    error: str | None
    errorCode: str | None
    creditCost: int
    refunded: bool
    model: str
    duration: int | Literal["auto"] = Field(description='seconds as asked, or "auto": the model chose '
                                                        '(chosenDuration)')
    chosenDuration: float | None = Field(None, description='only for duration "auto": the seconds the model\'s '
                                         'duration head chose ((frames - 1) / 24, on the 8k+1 frame grid); null '
                                         'until the video is made')
    frames: int | None = Field(None, description="the video's frame count, once it is made")
    quality: str
    aspectRatio: str
    width: int
    height: int
    hasAudio: bool | None = Field(description="known once the video is made")
    cancelRequested: bool
    createdAt: float
    startedAt: float | None
    completedAt: float | None
    kind: str
    sourceJobId: str | None
    remixOf: str | None
    shots: list[Shot] | None
    timings: dict[str, float] | None
    queuePosition: int | None = Field(None, description="only while pending: jobs ahead of this one")
    statusUrl: str | None = None
    webhook: JobWebhook | None = Field(None, description="only when the job was submitted with a webhook_url")
    retake: RetakeRange | None = Field(None, description="a retake's range of its source, as regenerated")
    soundtrack: SoundtrackFit | None = Field(None, description="a video made to a given soundtrack (audio): how "
                                             "the sound was fitted to it")
    replayOf: str | None = Field(None, description="a replay: the job whose manifest it makes again")


class Submitted(BaseModel):
    jobId: str
    status: Status
    statusUrl: str
    creditCost: int
    creditsRemaining: int


class EstimateBasis(BaseModel):
    source: Literal["shape", "quality", "default"]
    jobs: int


class Estimate(BaseModel):
    width: int
    height: int
    aspectRatio: str
    quality: str
    duration: int | Literal["auto"]
    frames: int = Field(description='for duration "auto": the most the model may choose (the run time, wait and '
                                    'finish time are estimated for it)')
    durationRange: list[float] | None = Field(None, description='only for duration "auto": the shortest and '
                                              'longest length (seconds) the model may choose')
    hasAudio: bool
    controlType: str | None
    soundOnly: bool = False  # new sound for ``video``: charged per second at the sound rate
    creditCost: int
    creditsRemaining: int
    affordable: bool
    queuePosition: int = Field(description="the place a job submitted now would take in the fair order")
    workers: int
    expectedRunSeconds: float
    expectedWaitSeconds: float | None = Field(description="null with no live worker")
    expectedFinishAt: float | None = Field(description="Unix seconds; null with no live worker")
    estimateBasis: EstimateBasis


class Manifest(BaseModel):
    """What made a completed job's video (``jobs.manifest``): versions, the model folder's fingerprint, the recipe,
    seeds, prompts as used and sigmas per shot, LoRAs, dtype and device, and the request."""

    model_config = {"extra": "allow"}
    jobId: str


class JobList(BaseModel):
    jobs: list[Job]
    hasMore: bool
    creditsRemaining: int


class ModelInfo(BaseModel):
    id: str
    name: str
    type: str
    creditCost: int
    creditCostByResolution: dict[str, int]
    soundCreditCostPerSecond: int | None = None  # new sound for a video (sound-for-video): credits a second
    capabilities: list[str]
    parameters: dict[str, Any]
    sizes: dict[str, dict[str, str]]


class ModelList(BaseModel):
    models: list[ModelInfo]


SSE = {"text/event-stream": {"schema": {
    "type": "object", "required": ["event", "data"],
    "properties": {"event": {"type": "string", "enum": ["progress", "preview", "done"]},
                   "data": {"type": "string", "contentMediaType": "application/json",
                            "description": "progress: {jobId, status, progress, stage, queuePosition}; preview: "
                                           "{jobId, preview}; done: the job as GET /api/v1/jobs/{job_id} shows "
                                           "it"}},
    "description": "server-sent events: progress on each change, then done, then the stream ends"}}}
