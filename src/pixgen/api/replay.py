"""Replay: a finished job's manifest (``jobs.manifest``) submitted again as a new job, to make the same video.

The same frames need the same model: the fingerprint of the model folder this server is configured with is checked
against the manifest's, and a difference is refused with 409 ``conflict`` naming both (nothing charged). The same
software matters too; the manifest lists its versions, and the replay's own manifest shows whether they moved.
The new job runs the original's stored request (its seed drawn, its images kept) and is charged as a submit of
that request is.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from pixgen.api import service
from pixgen.api.context import AppContext
from pixgen.core.spec import VideoRequest
from pixgen.errors import Conflict
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.manifest import model_identity, with_request
from pixgen.jobs.origin import JobKind, Origin
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription


def manifest_of(job: Job) -> dict[str, Any]:
    """The job's manifest with the request it ran, or ``Conflict`` saying why it has none."""
    if job.status is not JobStatus.COMPLETED:
        raise Conflict(f"job {job.id} is {job.status.value}; a manifest is kept when a job completes")
    manifest = job.manifest_dict()
    if manifest is None:
        raise Conflict(f"job {job.id} has no manifest (it finished before manifests were kept, or under zero data "
                       f"retention)")
    return with_request(manifest, job.request_dict())


async def submit_replay(ctx: AppContext, key: ApiKey, job_id: str, *, idempotency_key: str | None = None,
                        webhook: Subscription | None = None) -> Submitted:
    """The replay of ``job_id`` as a new job (of the same surface), charged as a submit of its request is."""
    job = await service.get_job(ctx, key, job_id)
    manifest = manifest_of(job)
    if job.kind is not JobKind.GENERATE:
        raise Conflict(f"job {job.id} is a {job.kind.value} job; only generated videos can be replayed")
    settings = ctx.settings
    current = await run_in_threadpool(model_identity, settings.engine, settings.model, settings.cache_dir)
    recorded = (manifest.get("model") or {}).get("fingerprint")
    if current.fingerprint is None or current.fingerprint != recorded:
        raise Conflict(f"the model this server runs ({current.setting}, fingerprint {current.fingerprint}) is not "
                       f"the one that made job {job.id} (fingerprint {recorded}); a replay would not give the same "
                       f"frames")
    request = VideoRequest.model_validate(manifest["request"])
    return await service.submit(ctx, key, request, origin=Origin(surface=job.surface, replay_of=job.id),
                                idempotency_key=idempotency_key, webhook=webhook)
