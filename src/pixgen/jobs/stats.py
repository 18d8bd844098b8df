"""Fleet-wide numbers for the metrics, read from the database when they are asked for.

Every API node reads the same rows, so each reports the same values, and workers (which serve no HTTP) reach the
metrics through the rows they write: a job's status, its engine ``timings``, their heartbeat. The totals are
counts over the jobs table, which only grows (a deleted job keeps its row, hidden), so they never go down.
A scrape costs two scans of the jobs table (counts, stage timings) and an index range for the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, case, cast, distinct, func, select
from sqlalchemy.dialects.postgresql import JSONB

from pixgen.engine.base import Timings
from pixgen.jobs.db import Database
from pixgen.jobs.schema import jobs
from pixgen.jobs.states import JobStatus

STAGES = tuple(sorted(Timings.stages()))
# Upper bounds (seconds) of the stage-duration histogram: a toy job's stages take milliseconds, a 1080p denoise on
# one GPU many minutes.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True)
class JobCount:
    status: str  # a JobStatus value
    surface: str
    quality: str
    count: int


@dataclass(frozen=True)
class StageHistogram:
    """Durations of one engine stage over the completed jobs of one quality."""

    stage: str
    quality: str
    cumulative: tuple[int, ...]  # jobs whose stage took at most each of STAGE_BUCKETS seconds
    count: int
    total_seconds: float


@dataclass(frozen=True)
class QueueNow:
    pending: int
    processing: int
    keys_waiting: int  # distinct API keys with a pending job
    oldest_pending_age: float  # seconds the longest-waiting pending job has waited (0 when none)


def job_counts(db: Database) -> list[JobCount]:
    """Jobs ever submitted, by status, surface and quality."""
    with db.read() as conn:
        rows = conn.execute(select(jobs.c.status, jobs.c.surface, jobs.c.quality, func.count())
                            .group_by(jobs.c.status, jobs.c.surface, jobs.c.quality)).all()
    return [JobCount(status, surface, quality, int(n)) for status, surface, quality, n in rows]


def stage_histograms(db: Database) -> list[StageHistogram]:
    """The engine's seconds per stage (``jobs.timings``) of every completed job, bucketed per stage and quality."""
    timed = (select(jobs.c.quality, cast(jobs.c.timings, JSONB).label("t") if db.is_postgres else jobs.c.timings
                    .label("t"))
             .where(jobs.c.status == JobStatus.COMPLETED.value, jobs.c.timings.is_not(None)).subquery())
    columns: list[Any] = []
    for stage in STAGES:
        seconds = _stage_seconds(timed.c.t, stage, db.is_postgres)
        columns += [func.count(seconds), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.coalesce(func.sum(case((seconds <= le, 1), else_=0)), 0) for le in STAGE_BUCKETS]
    with db.read() as conn:
        rows = conn.execute(select(timed.c.quality, *columns).group_by(timed.c.quality)).all()
    width = 2 + len(STAGE_BUCKETS)
    found = []
    for quality, *values in rows:
        for i, stage in enumerate(STAGES):
            count, total, *cumulative = values[i * width:(i + 1) * width]
            if count:
                found.append(StageHistogram(stage, quality, tuple(int(c) for c in cumulative), int(count),
                                            float(total)))
    return found


def queue_now(db: Database, now: float) -> QueueNow:
    pending = jobs.c.status == JobStatus.PENDING.value
    with db.read() as conn:
        row = conn.execute(select(
            func.count().filter(pending), func.count().filter(jobs.c.status == JobStatus.PROCESSING.value),
            func.count(distinct(case((pending, jobs.c.key_id)))), func.min(case((pending, jobs.c.created_at))))
            .where(jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.PROCESSING.value]))).one()
    n_pending, n_processing, keys, oldest = row
    return QueueNow(pending=int(n_pending), processing=int(n_processing), keys_waiting=int(keys),
                    oldest_pending_age=max(0.0, now - oldest) if oldest is not None else 0.0)


def _stage_seconds(timings: Any, stage: str, postgres: bool) -> Any:
    """SQL: the seconds of ``stage`` in a job's timings JSON (NULL when the stage did not run)."""
    if postgres:
        return cast(timings[stage].astext, Float)
    return func.json_extract(timings, f"$.{stage}")
