"""Webhook deliveries: the durable to-do list of webhooks, read from the outbox and worked off by deliverers.

1. ``enqueue``: the store calls it for every event it records, in the same transaction; an event the job's
   webhook wants becomes one ``webhook_deliveries`` row whose id is the event's id (the ``webhook-id`` of every
   attempt). A worker SIGKILLed right after its move loses nothing: the row was committed with the move.
2. ``claim``: a deliverer (in each API node) takes due rows under a lease, ``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL (BEGIN IMMEDIATE on SQLite), so two nodes never take one row at once; a deliverer that dies mid-send
   loses its lease and the row comes back (at least once, same id).
3. ``finish``: delivered, or rescheduled with exponential back-off, or given up once too old (state ``failed``,
   visible in the job's JSON and ``pixgen webhooks list``; ``retry`` puts it back).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, select, update

from pixgen.errors import NotFound
from pixgen.jobs import totals
from pixgen.jobs.db import Database
from pixgen.jobs.events import EventKind
from pixgen.jobs.schema import webhook_deliveries as table
from pixgen.jobs.webhooks import KEY_SIGNER, SERVER_SIGNER, RetryPolicy, event_type

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Delivery:
    id: str  # the event's id, sent as webhook-id
    job_id: str
    key_id: str
    event_type: str
    url: str
    signer: str
    state: str
    attempts: int
    next_attempt_at: float
    body: str | None
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def as_json(self) -> dict[str, Any]:
        """How the job API shows it."""
        return {"id": self.id, "type": self.event_type, "state": self.state, "attempts": self.attempts,
                "lastStatus": self.last_status, "lastError": self.last_error,
                "nextAttemptAt": self.next_attempt_at if self.state == PENDING else None,
                "finishedAt": self.finished_at}


@dataclass(frozen=True)
class Claimed:
    delivery: Delivery
    token: str  # the lease: ``set_body`` and ``finish`` must present it


def enqueue(conn: Connection, *, event_id: str, job: Any, kind: EventKind, now: float) -> bool:
    """Inside the store's transaction: a delivery for this event when the job's webhook wants it."""
    if not job.webhook_url:
        return False
    name = event_type(job.surface, kind, job.webhook_events)
    if name is None:
        return False
    conn.execute(table.insert().values(
        id=event_id, job_id=job.id, key_id=job.key_id, event_type=name, url=job.webhook_url,
        signer=SERVER_SIGNER if job.surface.operator_webhook else KEY_SIGNER, state=PENDING, attempts=0,
        next_attempt_at=now, created_at=now))
    return True


def due(db: Database, now: float, signers: Iterable[str]) -> bool:
    """A cheap read: is anything due? (so an idle deliverer does not open a write transaction every poll)."""
    with db.read() as conn:
        return conn.execute(_due(now, signers).limit(1)).first() is not None


def claim(db: Database, now: float, *, lease: float, limit: int, signers: Iterable[str]) -> list[Claimed]:
    """Up to ``limit`` due deliveries, each under a fresh lease of ``lease`` seconds (attempt counted)."""
    token = secrets.token_hex(16)
    with db.write() as conn:
        rows = conn.execute(_due(now, signers).order_by(table.c.next_attempt_at).limit(limit)
                            .with_for_update(skip_locked=True)).mappings().all()
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        conn.execute(update(table).where(table.c.id.in_(ids)).values(
            lease_token=token, lease_expires_at=now + lease, attempts=table.c.attempts + 1))
        rows = conn.execute(select(table).where(table.c.id.in_(ids))
                            .order_by(table.c.next_attempt_at)).mappings().all()
    return [Claimed(Delivery.from_row(r), token) for r in rows]


def set_body(db: Database, claimed: Claimed, body: str) -> str:
    """Fix the body at the first attempt; returns the body every attempt sends (the first one written)."""
    with db.write() as conn:
        conn.execute(update(table).where(table.c.id == claimed.delivery.id, table.c.body.is_(None),
                                         table.c.lease_token == claimed.token).values(body=body))
        return conn.execute(select(table.c.body).where(table.c.id == claimed.delivery.id)).scalar_one() or body


def finish(db: Database, claimed: Claimed, now: float, policy: RetryPolicy, *, ok: bool,
           status: int | None = None, error: str | None = None) -> str:
    """Record one attempt's outcome; returns the new state. Nothing is written when the lease was lost."""
    d = claimed.delivery
    values: dict[str, Any] = {"lease_token": None, "lease_expires_at": None, "last_status": status,
                              "last_error": None if ok else (error or f"HTTP {status}")[:500]}
    # A finished delivery keeps no body (it may hold a prompt): ``retry`` builds it again.
    if ok:
        values.update(state=DELIVERED, finished_at=now, body=None)
    elif now + policy.delay(d.attempts) - d.created_at > policy.give_up_after:
        values.update(state=FAILED, finished_at=now, body=None)
    else:
        values.update(next_attempt_at=now + policy.delay(d.attempts))
    with db.write() as conn:
        conn.execute(update(table).where(table.c.id == d.id, table.c.lease_token == claimed.token).values(**values))
    state: str = values.get("state", PENDING)
    return state


def for_job(db: Database, job_id: str) -> list[Delivery]:
    with db.read() as conn:
        rows = conn.execute(select(table).where(table.c.job_id == job_id)
                            .order_by(table.c.created_at, table.c.id)).mappings().all()
    return [Delivery.from_row(r) for r in rows]


def recent(db: Database, *, state: str | None = None, limit: int = 50) -> list[Delivery]:
    """The newest deliveries (of one ``state`` when given), newest first."""
    query = select(table).order_by(table.c.created_at.desc()).limit(limit)
    if state is not None:
        query = query.where(table.c.state == state)
    with db.read() as conn:
        return [Delivery.from_row(r) for r in conn.execute(query).mappings().all()]


def counts(db: Database) -> dict[str, int]:
    """How many deliveries are in each state: those kept, plus the delivered and given-up ones retention deleted."""
    with db.read() as conn:
        rows = conn.execute(select(table.c.state, func.count()).group_by(table.c.state)).all()
        pruned = totals.read(conn, totals.WEBHOOKS)
    found = {PENDING: 0, DELIVERED: 0, FAILED: 0, **{state: int(n) for state, n in rows}}
    found[DELIVERED] += int(pruned.get(("delivered",), 0))
    found[FAILED] += int(pruned.get(("given_up",), 0))
    return found


def failed_attempts(db: Database) -> int:
    """Attempts that got no 2xx answer, retries included: every attempt but a delivered row's last (of the rows
    kept, plus those retention deleted)."""
    with db.read() as conn:
        kept = tally(conn)
        pruned = totals.read(conn, totals.WEBHOOKS)
    return int(kept[("failed_attempts",)] + pruned.get(("failed_attempts",), 0))


def tally(conn: Connection, *where: Any) -> dict[totals.Labels, float]:
    """``{("delivered",): n, ("given_up",): n, ("failed_attempts",): n}`` over the deliveries kept (those that match
    ``where``): what retention adds to ``jobs.totals`` before it deletes them."""
    attempts, delivered, given_up = conn.execute(select(
        func.coalesce(func.sum(table.c.attempts), 0), func.count().filter(table.c.state == DELIVERED),
        func.count().filter(table.c.state == FAILED)).where(*where)).one()
    return {("delivered",): int(delivered), ("given_up",): int(given_up),
            ("failed_attempts",): int(attempts) - int(delivered)}


def retry(db: Database, delivery_id: str, now: float) -> None:
    """Put a given-up delivery back in line (same id; its age counts from now)."""
    with db.write() as conn:
        done = conn.execute(update(table).where(table.c.id == delivery_id, table.c.state == FAILED).values(
            state=PENDING, attempts=0, next_attempt_at=now, created_at=now, finished_at=None))
    if done.rowcount != 1:
        raise NotFound(f"no given-up webhook delivery {delivery_id!r}")


def _due(now: float, signers: Iterable[str]) -> Select[Any]:
    lease_free = (table.c.lease_expires_at.is_(None)) | (table.c.lease_expires_at < now)
    return select(table).where(table.c.state == PENDING, table.c.next_attempt_at <= now, lease_free,
                               table.c.signer.in_(list(signers)))
