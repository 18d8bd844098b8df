"""The job state machine: pending → processing → completed | failed | cancelled.

A processing job may also go back to pending (its lease expired, or its worker shut down cleanly); a pending job
may be cancelled. ``TRANSITIONS`` is the whole table: ``JobStore._move``, the one place a job changes state, refuses
any other move with ``IllegalTransition``.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def can_become(self, other: JobStatus) -> bool:
        return other in TRANSITIONS[self]


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# States that refund the charge (exactly once, guarded by the job's ``refunded`` flag).
REFUNDING = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
