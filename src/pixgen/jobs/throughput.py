"""This fleet's own measured speed, from the jobs it finished: what ``estimate`` predicts a new job's time from.

A job's run time is its wall time in a worker (``finished_at − started_at``: model, decode, encode, upload).
For a new job of ``(quality, duration)`` the prediction is, first found:

1. ``shape``: the median run time of the last finished jobs of that quality and duration;
2. ``quality``: that quality's measured wall seconds per second of video (total over its jobs) × duration;
3. ``default``: ``DEFAULT_WALL_PER_VIDEO_SECOND`` × duration, a stated guess for a fleet with no history.

Only the last ``HISTORY`` completed generate/remix jobs count (extensions' durations are their whole output's).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, func, select

from pixgen.jobs import queue_order
from pixgen.jobs.db import Database
from pixgen.jobs.fleet import live_workers
from pixgen.jobs.origin import JobKind
from pixgen.jobs.schema import jobs
from pixgen.jobs.states import JobStatus

HISTORY = 500
QUEUE_LOOK = 10_000  # pending jobs read to price the wait (a longer queue is counted, its tail priced alike)
# Wall seconds per second of video with no history at all: a rough single-GPU guess (H100 class, LTX-2 19B dev).
DEFAULT_WALL_PER_VIDEO_SECOND = {"360p": 4.0, "540p": 8.0, "720p": 15.0, "1080p": 40.0}

Basis = Literal["shape", "quality", "default"]


@dataclass(frozen=True)
class RunTime:
    seconds: float
    basis: Basis
    samples: int  # finished jobs behind it (0 for the default)


@dataclass(frozen=True)
class Throughput:
    by_shape: dict[tuple[str, int], list[float]]  # (quality, duration) → run times, newest first
    per_video_second: dict[str, tuple[float, int]]  # quality → (wall s per video s, jobs)

    def run_time(self, quality: str, duration: int) -> RunTime:
        shape = self.by_shape.get((quality, duration))
        if shape:
            return RunTime(statistics.median(shape), "shape", len(shape))
        if quality in self.per_video_second:
            rate, count = self.per_video_second[quality]
            return RunTime(rate * duration, "quality", count)
        return RunTime(DEFAULT_WALL_PER_VIDEO_SECOND.get(quality, max(DEFAULT_WALL_PER_VIDEO_SECOND.values()))
                       * duration, "default", 0)


@dataclass(frozen=True)
class QueueNow:
    pending: int  # jobs waiting ahead (in the fair order, for the key asking)
    waiting_seconds: float  # predicted run time of the waiting jobs and what is left of the running ones
    workers: int  # live workers


def measured(db: Database, *, history: int = HISTORY) -> Throughput:
    query = (select(jobs.c.quality, jobs.c.duration, jobs.c.started_at, jobs.c.finished_at)
             .where(jobs.c.status == JobStatus.COMPLETED.value,
                    jobs.c.kind.notin_((JobKind.EXTEND.value, JobKind.SOUND.value)),  # not the shape's own time
                    jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))
             .order_by(jobs.c.finished_at.desc()).limit(history))
    with db.read() as conn:
        rows = conn.execute(query).all()
    by_shape: dict[tuple[str, int], list[float]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for quality, duration, started, finished in rows:
        wall = max(0.0, float(finished) - float(started))
        by_shape[(quality, int(duration))].append(wall)
        total = totals[quality]
        total[0] += wall
        total[1] += int(duration)
        total[2] += 1
    per_second = {q: (wall / seconds, int(count)) for q, (wall, seconds, count) in totals.items() if seconds > 0}
    return Throughput(dict(by_shape), per_second)


def queue_now(db: Database, throughput: Throughput, key_id: str | None = None) -> QueueNow:
    """The work ahead of a job submitted now, priced with ``throughput``: by ``key_id``, in the fair order (its
    round, ``queue_order.next_round``, puts it after every pending job of that round or before); without a key,
    every pending job."""
    with db.read() as conn:
        ahead = jobs.c.status == JobStatus.PENDING.value
        if key_id is not None:
            ahead = and_(ahead, jobs.c.queue_round <= queue_order.next_round(conn, key_id))
        pending = conn.execute(select(jobs.c.quality, jobs.c.duration).where(ahead)
                               .order_by(*queue_order.CLAIM_ORDER).limit(QUEUE_LOOK)).all()
        count = len(pending) if len(pending) < QUEUE_LOOK else int(conn.execute(
            select(func.count()).select_from(jobs).where(ahead)).scalar_one())
        running = conn.execute(select(jobs.c.quality, jobs.c.duration, jobs.c.started_at)
                               .where(jobs.c.status == JobStatus.PROCESSING.value)).all()
    now = time.time()
    priced = [throughput.run_time(q, int(d)).seconds for q, d in pending]
    seconds = sum(priced) + (count - len(pending)) * (statistics.mean(priced) if priced else 0.0)
    for quality, duration, started in running:
        expected = throughput.run_time(quality, int(duration)).seconds
        seconds += max(0.0, expected - (now - float(started or now)))
    return QueueNow(count, seconds, len(live_workers(db)))
