"""Estimate before paying: what a prepared request would make, cost, and when it would finish if submitted now.

The request has been through ``service.prepare`` (the checks a submit makes, so it refuses what a submit refuses);
nothing here charges, queues or writes. Times come from this fleet's own finished jobs (``jobs.throughput``).
The wait is the work ahead (waiting jobs, and what is left of running ones) shared among the live workers; with no
live worker there is no finish time to promise (``expectedFinishAt`` null).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pixgen.api.context import AppContext
from pixgen.core.sizes import num_frames
from pixgen.core.spec import MAX_DURATION, VideoRequest
from pixgen.jobs.keys import ApiKey
from pixgen.jobs.throughput import QueueNow, RunTime, measured, queue_now


@dataclass(frozen=True)
class Estimate:
    request: VideoRequest  # as it would be queued (ratio fixed from a start frame)
    credit_cost: int
    credits_remaining: int
    queue: QueueNow
    run: RunTime
    now: float

    @property
    def wait_seconds(self) -> float | None:
        return self.queue.waiting_seconds / self.queue.workers if self.queue.workers else None

    @property
    def finish_at(self) -> float | None:
        wait = self.wait_seconds
        return None if wait is None else self.now + wait + self.run.seconds


def estimate(ctx: AppContext, key: ApiKey, request: VideoRequest) -> Estimate:
    throughput = measured(ctx.db)
    return Estimate(request=request, credit_cost=ctx.settings.price_for(request.quality),
                    credits_remaining=ctx.store.credits(key.id), queue=queue_now(ctx.db, throughput, key.id),
                    run=throughput.run_time(request.quality, longest(request, ctx)), now=time.time())


def longest(request: VideoRequest, ctx: AppContext) -> int:
    """The seconds a request may run to: its duration, or for ``"auto"`` the longest this server offers."""
    return ctx.capabilities.durations[1] if request.auto_duration else request.seconds


def estimate_json(est: Estimate) -> dict[str, Any]:
    req = est.request
    width, height = req.size
    wait = est.wait_seconds
    auto = req.auto_duration
    return {
        "width": width,
        "height": height,
        "aspectRatio": req.ratio,
        "quality": req.quality,
        "duration": req.duration,
        "frames": num_frames(MAX_DURATION) if auto else req.num_frames,  # the longest "auto" may choose
        **({"durationRange": [1.0, float(MAX_DURATION)]} if auto else {}),
        "hasAudio": req.generate_audio,
        "controlType": req.control_type,
        "creditCost": est.credit_cost,
        "creditsRemaining": est.credits_remaining,
        "affordable": est.credits_remaining >= est.credit_cost,
        "queuePosition": est.queue.pending + 1,
        "workers": est.queue.workers,
        "expectedRunSeconds": round(est.run.seconds, 2),
        "expectedWaitSeconds": None if wait is None else round(wait, 2),
        "expectedFinishAt": None if est.finish_at is None else round(est.finish_at, 2),
        "estimateBasis": {"source": est.run.basis, "jobs": est.run.samples},
    }
