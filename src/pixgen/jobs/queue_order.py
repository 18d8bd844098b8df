"""The fair claim order: round-robin across API keys, fixed when a job is queued.

Each job gets a *queue round* when it is submitted: one past the latest round of its key's queued or running jobs,
and never below the round at the head of the queue. Workers claim pending jobs by ``(queue_round, seq)``: every
key's next job before any key's job after that. A key with 100 queued jobs therefore takes one turn per round, and
a key that submits one job waits at most one round (one job of each key with jobs waiting).

Nothing is re-ranked at claim time, so the order of the jobs already queued never changes: a pending job's queue
position (the pending jobs ahead of it in this order, plus one) is exactly its turn among them. Only a job
submitted later by a key with fewer jobs waiting can be placed ahead of it; that is the fairness.
A job that goes back to pending (its worker died or stopped) keeps its round and seq, so it returns near the head.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from pixgen.jobs.schema import jobs
from pixgen.jobs.states import JobStatus

CLAIM_ORDER = (jobs.c.queue_round, jobs.c.seq)

_PENDING = JobStatus.PENDING.value
_HEAD = select(func.min(jobs.c.queue_round)).where(jobs.c.status == _PENDING).scalar_subquery()


def next_round(conn: Connection, key_id: str) -> int:
    """The round of a job ``key_id`` submits now (call it with the key's row locked, so its submits are serial)."""
    own = select(func.max(jobs.c.queue_round)).where(
        jobs.c.key_id == key_id,
        jobs.c.status.in_([_PENDING, JobStatus.PROCESSING.value])).scalar_subquery()
    head, latest = conn.execute(select(_HEAD, own)).one()
    return max(int(head or 0), int(latest) + 1 if latest is not None else 0)


def ahead_of(other: Any, queue_round: Any, seq: Any) -> Any:
    """SQL condition: the pending row ``other`` (a ``jobs`` alias) is claimed before a job at (round, seq)."""
    return and_(other.c.status == _PENDING,
                or_(other.c.queue_round < queue_round,
                    and_(other.c.queue_round == queue_round, other.c.seq < seq)))
