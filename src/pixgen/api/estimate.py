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
from pixgen.api.service import planned_frames, price
from pixgen.core.sizes import whole_seconds
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
    frames: int  # the video's (a soundtrack's length when the request follows it; the longest for "auto")

    @property
    def wait_seconds(self) -> float | None:
        return self.queue.waiting_seconds / self.queue.workers if self.queue.workers else None

    @property
    def finish_at(self) -> float | None:
        wait = self.wait_seconds
        return None if wait is None else self.now + wait + self.run.seconds


def estimate(ctx: AppContext, key: ApiKey, request: VideoRequest) -> Estimate:
    throughput = measured(ctx.db)
    frames = planned_frames(request)  # a soundtrack's length, or for "auto" the longest
    return Estimate(request=request, credit_cost=price(ctx, request),
                    credits_remaining=ctx.store.credits(key.id), queue=queue_now(ctx.db, throughput, key.id),
                    run=throughput.run_time(request.quality, whole_seconds(frames)), now=time.time(), frames=frames)


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
        "duration": req.duration if auto else whole_seconds(est.frames),
        "frames": est.frames,  # for "auto" the longest the duration head may choose
        **({"durationRange": [1.0, float(MAX_DURATION)]} if auto else {}),
        "hasAudio": req.generate_audio,
        "controlType": req.control_type,
        "soundOnly": req.sound_only,
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
