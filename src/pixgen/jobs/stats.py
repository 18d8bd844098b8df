"""Fleet-wide numbers for the metrics, read from the database when they are asked for.

Every API node reads the same rows, so each reports the same values, and workers (which serve no HTTP) reach the
metrics through the rows they write: a job's status, its engine ``timings``, their heartbeat. The totals are
counts over the jobs table plus what retention has deleted from it (``jobs.totals``, added in the transaction that
deletes the rows), so they never go down.
A scrape costs two scans of the jobs table (counts, stage timings) and an index range for the queue.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, case, cast, distinct, func, select
from sqlalchemy.dialects.postgresql import JSONB

from pixgen.engine.base import Timings
from pixgen.jobs import totals
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
    """Jobs ever submitted, by status, surface and quality: those kept, plus those retention has deleted."""
    with db.read() as conn:
        counts = Counter(job_tally(conn))
        counts.update(totals.read(conn, totals.JOBS))
    return [JobCount(status, surface, quality, int(n)) for (status, surface, quality), n in counts.items()]


def job_tally(conn: Connection, *where: Any) -> dict[totals.Labels, float]:
    """``{(status, surface, quality): jobs}`` of the jobs kept (those that match ``where``)."""
    rows = conn.execute(select(jobs.c.status, jobs.c.surface, jobs.c.quality, func.count()).where(*where)
                        .group_by(jobs.c.status, jobs.c.surface, jobs.c.quality)).all()
    return {(status, surface, quality): int(n) for status, surface, quality, n in rows}


def stage_histograms(db: Database) -> list[StageHistogram]:
    """The engine's seconds per stage (``jobs.timings``) of every completed job, bucketed per stage and quality:
    the jobs kept, plus those retention has deleted."""
    with db.read() as conn:
        tally = Counter(stage_tally(conn, db.is_postgres))
        tally.update(totals.read(conn, totals.STAGES))
    found = []
    for stage, quality in sorted({(stage, quality) for stage, quality, _ in tally}):
        count = int(tally[stage, quality, "count"])
        if count:
            found.append(StageHistogram(stage, quality, tuple(int(tally[stage, quality, _bound(le)])
                                                              for le in STAGE_BUCKETS),
                                        count, float(tally[stage, quality, "sum"])))
    return found


def stage_tally(conn: Connection, postgres: bool, *where: Any) -> dict[totals.Labels, float]:
    """``{(stage, quality, bucket): jobs}`` (a bucket's upper bound, cumulative), ``(stage, quality, "count")`` and
    ``(stage, quality, "sum")`` (seconds) over the completed jobs kept (those that match ``where``)."""
    timed = (select(jobs.c.quality, cast(jobs.c.timings, JSONB).label("t") if postgres else jobs.c.timings
                    .label("t"))
             .where(jobs.c.status == JobStatus.COMPLETED.value, jobs.c.timings.is_not(None), *where).subquery())
    columns: list[Any] = []
    for stage in STAGES:
        seconds = _stage_seconds(timed.c.t, stage, postgres)
        columns += [func.count(seconds), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.coalesce(func.sum(case((seconds <= le, 1), else_=0)), 0) for le in STAGE_BUCKETS]
    rows = conn.execute(select(timed.c.quality, *columns).group_by(timed.c.quality)).all()
    width = 2 + len(STAGE_BUCKETS)
    tally: dict[totals.Labels, float] = {}
    for quality, *values in rows:
        for i, stage in enumerate(STAGES):
            count, total, *cumulative = values[i * width:(i + 1) * width]
            if count:
                tally[stage, quality, "count"], tally[stage, quality, "sum"] = int(count), float(total)
                tally.update({(stage, quality, _bound(le)): int(c)
                              for le, c in zip(STAGE_BUCKETS, cumulative, strict=True)})
    return tally


def _bound(le: float) -> str:
    return f"{le:g}"


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
