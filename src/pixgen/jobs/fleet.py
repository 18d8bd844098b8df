"""Worker registry and queue statistics: what ``/health/ready`` and ``pixgen status`` report."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from pixgen.jobs.db import Database
from pixgen.jobs.schema import jobs, workers
from pixgen.jobs.states import JobStatus


def beat_period(lease_seconds: float) -> float:
    """How often a worker refreshes its own heartbeat row (and sweeps expired leases): 5 s with the default lease."""
    return max(0.5, min(5.0, lease_seconds / 4))


def live_after(lease_seconds: float) -> float:
    """A worker whose heartbeat is older than three of its beat periods is not counted as live (15 s by default)."""
    return 3 * beat_period(lease_seconds)


LIVE_AFTER = live_after(60.0)  # seconds, with the default lease
FORGET_AFTER = 7 * 24 * 3600.0  # stopped or silent worker rows are removed after a week


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    model: str
    started_at: float
    heartbeat_at: float
    job_id: str | None
    warmup: str | None = None  # JSON of its WarmupState (``pixgen.engine.warmup``), once it has loaded


@dataclass(frozen=True)
class QueueStats:
    pending: int
    processing: int
    workers: list[WorkerInfo]
    running: list[tuple[str, str | None, int, str | None]]  # (job id, worker id, progress, stage)


def register_worker(db: Database, worker_id: str, model: str) -> None:
    now = time.time()
    with db.write() as conn:
        conn.execute(delete(workers).where(workers.c.heartbeat_at < now - FORGET_AFTER))
        conn.execute(workers.insert().values(id=worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                                             model=model, started_at=now, heartbeat_at=now, stopped=False))


def beat_worker(db: Database, worker_id: str, job_id: str | None) -> None:
    with db.write() as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id).values(heartbeat_at=time.time(),
                                                                             job_id=job_id))


def set_warmup(db: Database, worker_id: str, state: str) -> None:
    """Record where the worker's warm-up stands (``WarmupState.to_json()``): ``pixgen status`` shows it."""
    with db.write() as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id).values(warmup=state))


def stop_worker(db: Database, worker_id: str) -> None:
    with db.write() as conn:
        conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped=True, job_id=None))


def live_workers(db: Database, *, within: float = LIVE_AFTER) -> list[WorkerInfo]:
    with db.read() as conn:
        rows = conn.execute(select(workers).where(workers.c.stopped.is_(False),
                                                  workers.c.heartbeat_at >= time.time() - within)
                            .order_by(workers.c.started_at)).mappings().all()
    return [WorkerInfo(**{k: r[k] for k in WorkerInfo.__dataclass_fields__}) for r in rows]


def queue_stats(db: Database, *, live_within: float = LIVE_AFTER) -> QueueStats:
    with db.read() as conn:
        counts: dict[str, int] = dict(conn.execute(select(jobs.c.status, func.count()).where(
            jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.PROCESSING.value])).group_by(jobs.c.status)).all())
        running = conn.execute(select(jobs.c.id, jobs.c.worker_id, jobs.c.progress, jobs.c.stage)
                               .where(jobs.c.status == JobStatus.PROCESSING.value).order_by(jobs.c.seq)).all()
    return QueueStats(pending=int(counts.get("pending", 0)), processing=int(counts.get("processing", 0)),
                      workers=live_workers(db, within=live_within), running=[tuple(r) for r in running])
