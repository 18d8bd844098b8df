"""The job operations every surface shares: prepare (image and video URLs, images, control video, capabilities),
submit (prepare, then price, caps, idempotency), read, cancel, watch.

Route handlers of every surface (job API, Cloudflare, OpenAI) call these; the store does the transactions.
The async helpers poll the database, so they see changes made by any worker on any node.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Mapping

from starlette.concurrency import run_in_threadpool

from pixgen.api.context import AppContext
from pixgen.api.mapping import check_capabilities, renamed
from pixgen.core.keyframes import with_images
from pixgen.core.models import MODEL_ID
from pixgen.core.spec import VideoRequest
from pixgen.errors import InvalidRequest
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription
from pixgen.media.control_video import check_control_video
from pixgen.media.fetch import FetchPolicy, check_destination, fetch_image, fetch_video
from pixgen.media.images import check_request_images

POLL = 0.25  # seconds between database looks while waiting on a job
KEEPALIVE = 15.0  # a watcher hears from us at least this often, so proxies keep an idle stream open


async def submit(
    ctx: AppContext,
    key: ApiKey,
    request: VideoRequest,
    *,
    image_urls: Mapping[str, str] | None = None,
    video_urls: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    surface: str = "jobs",
    model: str = MODEL_ID,
    field_names: Mapping[str, str] | None = None,
    webhook: Subscription | None = None,
    cost: int | None = None,
    **origin: Any,
) -> Submitted:
    """Queue a parsed request for ``key``, charging the price of its quality (402 / 429 / 400 as ``PixgenError``).

    The request is first made ready by ``prepare`` (the same path ``estimate`` runs); then the store charges and
    queues it in one transaction. ``webhook``'s URL must resolve to addresses the SSRF guard
    allows (checked again at every delivery); every job of the OpenAI surface gets the operator's ``--webhook-url``
    instead, when one is set. Any refusal is a 400 naming the field as the surface calls it (``field_names``:
    canonical → sent), and nothing is queued or charged.
    ``origin``: ``kind``, ``source_job_id``, ``remix_of``, ``duration`` of an extension or remix (``api.derived``),
    ``retake`` of a retake (``api.retake``); ``cost``: the charge when it is not the price of the quality.
    """
    request = await prepare(ctx, request, image_urls=image_urls, video_urls=video_urls, field_names=field_names)
    webhook = await check_webhook(ctx, webhook, surface)
    if cost is None:
        cost = ctx.settings.price_for(request.quality)
    return await run_in_threadpool(ctx.store.submit, key.id, request, cost=cost,
                                   idempotency_key=idempotency_key, surface=surface, model=model,
                                   webhook=webhook, **origin)


async def check_webhook(ctx: AppContext, webhook: Subscription | None, surface: str) -> Subscription | None:
    """The job's webhook: the operator's ``--webhook-url`` for the OpenAI surface; else the caller's, whose URL
    must resolve to addresses the SSRF guard allows (400 naming ``webhook_url``)."""
    if surface == "openai":
        return Subscription(ctx.settings.webhook_url) if ctx.settings.webhook_url else None
    if webhook is not None:
        policy = FetchPolicy.from_settings(ctx.settings.fetch_allow_hosts, ctx.settings.fetch_timeout)
        await run_in_threadpool(check_destination, webhook.url, policy, field="webhook_url")
    return webhook


async def prepare(
    ctx: AppContext,
    request: VideoRequest,
    *,
    image_urls: Mapping[str, str] | None = None,
    video_urls: Mapping[str, str] | None = None,
    field_names: Mapping[str, str] | None = None,
) -> VideoRequest:
    """Everything a submit checks before it charges, in order; the request as it will be queued.

    1. ``image_urls`` / ``video_urls`` (canonical field, or ``keyframes[i].image``, → http(s) URL; the request
       holds a placeholder there) are fetched through the SSRF guard and put in place;
    2. the start, end and key frames are decoded (``check_request_images``), the ratio fixed from the start frame, and
       the control video opened (``check_control_video``);
    3. the request is checked against what the backend and its model folder can do (``Capabilities``).
    """
    names = field_names or {}
    try:
        if image_urls:
            request = with_images(request, await fetch_images(ctx, image_urls))
        if video_urls:
            request = request.model_copy(update=await fetch_videos(ctx, video_urls))
        request = await run_in_threadpool(check_request_images, request)
        if request.control_video is not None:
            await run_in_threadpool(check_control_video, request.control_video)
    except InvalidRequest as exc:
        raise renamed(exc, names) from None
    check_capabilities(request, ctx.capabilities, names)
    return request


async def fetch_videos(ctx: AppContext, urls: Mapping[str, str]) -> dict[str, str]:
    """Each URL's MP4 as a data URI, fetched through the SSRF guard (400 naming the canonical field)."""
    policy = FetchPolicy.from_settings(ctx.settings.fetch_allow_hosts, ctx.settings.fetch_timeout)
    return {name: await run_in_threadpool(fetch_video, url, policy, field=name) for name, url in urls.items()}


async def fetch_images(ctx: AppContext, urls: Mapping[str, str]) -> dict[str, str]:
    """Each URL's image as a data URI, fetched through the SSRF guard (400 naming the canonical field)."""
    policy = FetchPolicy.from_settings(ctx.settings.fetch_allow_hosts, ctx.settings.fetch_timeout)
    return {name: await run_in_threadpool(fetch_image, url, policy, field=name) for name, url in urls.items()}


async def get_job(ctx: AppContext, key: ApiKey, job_id: str) -> Job:
    return await run_in_threadpool(ctx.store.get, job_id, key.id)


async def cancel(ctx: AppContext, key: ApiKey, job_id: str, *, wait: float = 0.0) -> Job:
    """Cancel; with ``wait`` > 0, give a running job that long to stop so the answer can say ``cancelled``."""
    job = await run_in_threadpool(ctx.store.cancel, job_id, key.id)
    deadline = time.monotonic() + wait
    while not job.status.is_terminal() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        job = await run_in_threadpool(ctx.store.get, job_id, key.id)
    return job


async def watch(ctx: AppContext, key: ApiKey, job_id: str) -> AsyncIterator[tuple[Job, int | None]]:
    """Yield ``(job, queue position)`` each time status, progress, stage, position or draft change (and at least every
    ``KEEPALIVE`` seconds); ends after the final state."""
    last, last_sent = None, 0.0
    while True:
        job, position = await run_in_threadpool(ctx.store.get_with_position, job_id, key.id)
        snapshot = (job.status, job.progress, job.stage, position, job.preview_file)
        if snapshot != last or time.monotonic() - last_sent >= KEEPALIVE:
            last, last_sent = snapshot, time.monotonic()
            yield job, position
        if job.status.is_terminal():
            return
        await asyncio.sleep(POLL)
