"""The outbox: what happened to each job, written by the store in the transaction that made it happen.

Every state move (``JobStore._move``), every submit, cancel request and progress step adds one ``job_events`` row
inside the same transaction as the change itself, so an event exists exactly when its change was committed: a
worker SIGKILLed right after a move loses nothing, and a rolled-back move leaves no event. Webhook deliveries and
metrics read these rows; nothing else writes them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, select

from pixgen.jobs.db import Database
from pixgen.jobs.schema import job_events
from pixgen.jobs.states import JobStatus


class EventKind(StrEnum):
    CREATED = "created"  # submitted and charged (status pending)
    STARTED = "started"  # pending → processing: a worker claimed it
    PROGRESS = "progress"  # a new stage, or the next tenth of the progress bar
    PREVIEW = "preview"  # the early draft of the video is stored (jobs.preview_file)
    REQUEUED = "requeued"  # processing → pending: its worker stopped or died
    CANCEL_REQUESTED = "cancel_requested"  # a cancel asked while it runs; its worker stops within a step
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def of_move(cls, to: JobStatus) -> EventKind:
        """The event a move to ``to`` records."""
        if to is JobStatus.PROCESSING:
            return cls.STARTED
        if to is JobStatus.PENDING:
            return cls.REQUEUED
        return cls(to.value)


@dataclass(frozen=True)
class Event:
    seq: int
    id: str
    job_id: str
    key_id: str
    kind: EventKind
    status: JobStatus
    data: dict[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(seq=int(row["seq"]), id=row["id"], job_id=row["job_id"], key_id=row["key_id"],
                   kind=EventKind(row["kind"]), status=JobStatus(row["status"]), data=json.loads(row["data"] or "{}"),
                   created_at=float(row["created_at"]))


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def record(conn: Connection, *, job_id: str, key_id: str, kind: EventKind, status: JobStatus, now: float,
           data: dict[str, Any] | None = None) -> str:
    """Add one event inside the caller's transaction; returns its id."""
    event_id = new_event_id()
    conn.execute(job_events.insert().values(id=event_id, job_id=job_id, key_id=key_id, kind=kind.value,
                                            status=status.value, data=json.dumps(data or {}, sort_keys=True),
                                            created_at=now))
    return event_id


def job_history(db: Database, job_id: str) -> list[Event]:
    """A job's events, oldest first."""
    with db.read() as conn:
        rows = conn.execute(select(job_events).where(job_events.c.job_id == job_id)
                            .order_by(job_events.c.seq)).mappings().all()
    return [Event.from_row(r) for r in rows]


def get(db: Database, event_id: str) -> Event | None:
    with db.read() as conn:
        row = conn.execute(select(job_events).where(job_events.c.id == event_id)).mappings().first()
    return Event.from_row(row) if row is not None else None


def prune(db: Database, before: float) -> int:
    """Remove events older than ``before`` (UNIX seconds); returns how many."""
    with db.write() as conn:
        return conn.execute(delete(job_events).where(job_events.c.created_at < before)).rowcount
