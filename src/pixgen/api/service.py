"""The job operations every surface shares: prepare (image and video URLs, images, control video, capabilities),
submit (prepare, then price, caps, idempotency), read, cancel, watch.

Route handlers of every surface (job API, Cloudflare, OpenAI) call these; the store does the transactions.
The async helpers poll the database, so they see changes made by any worker on any node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

from starlette.concurrency import run_in_threadpool

from pixgen.api.context import AppContext
from pixgen.api.mapping import check_capabilities, renamed
from pixgen.core.fields import media_values, role_at, with_values
from pixgen.core.models import MODEL_ID
from pixgen.core.sizes import frames_for_audio, nearest_aspect_ratio, num_frames, whole_seconds
from pixgen.core.spec import VideoRequest
from pixgen.errors import InvalidRequest
from pixgen.host_memory import release_freed_memory
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.origin import DIRECT, ApiSurface, JobKind, Origin
from pixgen.jobs.store import Job, Submitted
from pixgen.jobs.webhooks import Subscription
from pixgen.media.audio import check_audio
from pixgen.media.fetch import FetchPolicy, check_destination
from pixgen.media.kinds import kind
from pixgen.media.remux import check_sound_video

POLL = 0.25  # seconds between database looks while waiting on a job
KEEPALIVE = 15.0  # a watcher hears from us at least this often, so proxies keep an idle stream open


async def submit(
    ctx: AppContext,
    key: ApiKey,
    request: VideoRequest,
    *,
    origin: Origin = DIRECT,
    media_urls: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    model: str = MODEL_ID,
    field_names: Mapping[str, str] | None = None,
    webhook: Subscription | None = None,
    cost: int | None = None,
) -> Submitted:
    """Queue a parsed request for ``key``, charging the price of its quality (402 / 429 / 400 as ``PixgenError``).

    The request is first made ready by ``prepare`` (the same path ``estimate`` runs); then the store charges and
    queues it in one transaction. ``webhook``'s URL must resolve to addresses the SSRF guard
    allows (checked again at every delivery); a surface whose webhook is the operator's (OpenAI's) gets the
    ``--webhook-url`` instead, when one is set. Any refusal is a 400 naming the field as the surface calls it
    (``field_names``: canonical → sent), and nothing is queued or charged.
    ``origin``: the surface, the kind and the jobs it is made from (``jobs.origin.Origin``: ``api.derived`` for
    extensions and remixes, ``api.retake``, ``api.replay``); ``cost``: the charge when it is not the price of the
    quality.
    """
    if request.sound_only:  # new sound for the request's video: a job of its own kind, charged by its length
        origin = replace(origin, kind=JobKind.SOUND) if origin.kind is JobKind.GENERATE else origin
    # The price is the quality's, known before any decode; new sound's is per second of the video, known once it
    # is read: the key is admitted for one second, and charged for them all (or refused: 402) when it is queued.
    admitted = cost if cost is not None else price(ctx, request)
    await admit(ctx, key, cost=admitted, idempotency_key=idempotency_key)
    request = await prepare(ctx, request, media_urls=media_urls, field_names=field_names)
    if request.follows_audio and origin.duration is None:  # the job's length is its soundtrack's
        origin = replace(origin, duration=whole_seconds(await run_in_threadpool(planned_frames, request)))
    if cost is None:
        cost = price(ctx, request)
    webhook = await check_webhook(ctx, webhook, origin.surface)
    return await run_in_threadpool(ctx.store.submit, key.id, request, cost=cost, origin=origin,
                                   idempotency_key=idempotency_key, model=model, webhook=webhook)


def price(ctx: AppContext, request: VideoRequest) -> int:
    """What ``request`` costs: its quality's price, or for new sound (``sound_only``) ``--sound-price`` per second of
    the video (``duration``: the video's length rounded up, once ``prepare`` has read it; 1 before)."""
    if request.sound_only:
        return sound_cost(ctx.settings.sound_price, request.seconds)
    return ctx.settings.price_for(request.quality)


def sound_cost(per_second: int, seconds: int | None) -> int:
    """New sound for a video of ``seconds`` (whole, rounded up; None: not read yet, 1) at ``per_second`` credits a
    second."""
    return per_second * max(1, seconds or 1)


async def admit(ctx: AppContext, key: ApiKey, *, cost: int | None, idempotency_key: str | None = None) -> None:
    """The attempt counted toward the key's rate, then its cap and credits (``JobStore.admit``; ``cost`` None for an
    estimate): a key that cannot pay is refused here, before a URL is fetched or an image decoded."""
    await run_in_threadpool(ctx.store.admit, key.id, cost=cost, idempotency_key=idempotency_key)


async def check_webhook(ctx: AppContext, webhook: Subscription | None,
                        surface: ApiSurface) -> Subscription | None:
    """The job's webhook: the operator's ``--webhook-url`` for a surface whose webhook is the operator's (OpenAI's);
    else the caller's, whose URL must resolve to addresses the SSRF guard allows (400 naming ``webhook_url``)."""
    if surface.operator_webhook:
        return Subscription(ctx.settings.webhook_url) if ctx.settings.webhook_url else None
    if webhook is not None:
        policy = FetchPolicy.from_settings(ctx.settings.fetch_allow_hosts, ctx.settings.fetch_timeout)
        await run_in_threadpool(check_destination, webhook.url, policy, field="webhook_url")
    return webhook


async def prepare(
    ctx: AppContext,
    request: VideoRequest,
    *,
    media_urls: Mapping[str, str] | None = None,
    field_names: Mapping[str, str] | None = None,
) -> VideoRequest:
    """Everything a submit checks before it charges, in order; the request as it will be queued. The caller has
    admitted the attempt first (``admit``: rate, cap, credits), so none of this work is done for a key that cannot
    pay.

    1. what the backend and its model folder can do (``Capabilities``), before any work;
    2. ``media_urls`` (field path → http(s) URL; the request holds its kind's placeholder there) fetched through the
       SSRF guard and put in place;
    3. every media value's header looked at (``peek``: type, bytes, pixels), all of them before any is decoded;
    4. every media value decoded once, by its kind (``media.kinds``), at most ``--decode-concurrency`` requests'
       media at a time in this process, and with no ``aspect_ratio`` the start frame's nearest ratio fixed
       (``first_frame_ratio``), so every answer reports the real size;
    5. the capabilities again, on the request as it will run (the ratio now known).
    """
    names = field_names or {}
    check_capabilities(request, ctx.capabilities, names)
    try:
        if media_urls:
            request = VideoRequest.model_validate(with_values(request.model_dump(), await fetch_media(ctx, media_urls)))
        await run_in_threadpool(peek_media, request)
        async with ctx.decodes:
            try:
                request = await run_in_threadpool(check_media, request, ctx.capabilities.durations[1])
            finally:
                await run_in_threadpool(release_freed_memory)
    except InvalidRequest as exc:
        raise renamed(exc, names) from None
    check_capabilities(request, ctx.capabilities, names)
    return request


def planned_frames(request: VideoRequest) -> int:
    """The frames a request's video will have, as far as the API can know: a soundtrack's length for one that
    follows it (``VideoRequest.follows_audio``, measured as the engine measures it: ``core.sizes.frames_for_audio``),
    else the request's own, the longest for ``duration: "auto"`` (``VideoRequest.longest_seconds``: an upper bound)."""
    if not request.follows_audio:
        return num_frames(request.longest_seconds)
    assert request.audio is not None
    return frames_for_audio(check_audio(request.audio))


def peek_media(request: VideoRequest) -> None:
    """The cheap look at every media value of ``request`` (its header: type, bytes, pixels; 400 naming its field),
    so a request whose second image is too large is refused before its first is decoded."""
    for path, role, value in media_values(VideoRequest, request.model_dump()):
        assert role.media is not None
        peek = kind(role.media, path).peek
        if peek is not None:
            peek(value, path)


def check_media(request: VideoRequest, max_seconds: int = 15) -> VideoRequest:
    """Decode every media value of ``request`` by its kind (400 naming its field), and fix the ratio from the start
    frame when none was asked."""
    sizes = {path: kind(role.media, path).check(value, path)
             for path, role, value in media_values(VideoRequest, request.model_dump()) if role.media is not None}
    if request.sound_only and request.video is not None:
        return sound_video(request, max_seconds)
    ratio = first_frame_ratio(request, sizes)
    return request.model_copy(update={"aspect_ratio": ratio}) if ratio is not None else request


def sound_video(request: VideoRequest, max_seconds: int) -> VideoRequest:
    """A sound-only request with its video read (400 naming ``video``: not H.264, longer than ``max_seconds``):
    its ``duration`` the video's length rounded up, its ratio the video's nearest (the result is the video's size
    whatever they say; they are what the job reports and is charged for)."""
    assert request.video is not None
    facts = check_sound_video(request.video, field="video")
    if facts.seconds > max_seconds + 1e-6:
        raise InvalidRequest(f"video is {facts.seconds:.2f} s long; new sound is made for at most {max_seconds} s",
                             field="video")
    return request.model_copy(update={"duration": facts.whole_seconds,
                                      "aspect_ratio": nearest_aspect_ratio(facts.width, facts.height)})


def first_frame_ratio(request: VideoRequest, sizes: Mapping[str, tuple[int, int] | None]) -> str | None:
    """With no ``aspect_ratio``, the listed ratio nearest the first frame's: the start frame's, or else a keyframe's
    at 0 s (the same first frame); None when the request sets one or has no first frame."""
    if request.aspect_ratio is not None:
        return None
    first = sizes.get("image_input") or next(
        (sizes.get(f"keyframes[{i}].image") for i, k in enumerate(request.keyframes or ()) if k.time == 0), None)
    return nearest_aspect_ratio(*first) if first else None


async def fetch_media(ctx: AppContext, urls: Mapping[str, str]) -> dict[str, str]:
    """Each URL's media as a data URI of its field's kind, fetched through the SSRF guard (400 naming the canonical
    field path)."""
    policy = FetchPolicy.from_settings(ctx.settings.fetch_allow_hosts, ctx.settings.fetch_timeout)
    fetched = {}
    for path, url in urls.items():
        media = role_at(VideoRequest, path).media
        assert media is not None, path
        fetched[path] = await run_in_threadpool(kind(media, path).fetch, url, policy, path)
    return fetched


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
