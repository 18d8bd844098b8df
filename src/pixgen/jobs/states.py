"""The job state machine: pending → processing → completed | failed | cancelled.

A processing job may also go back to pending (its lease expired, or its worker shut down cleanly). Every move is
one guarded UPDATE (``WHERE status = <from>``) inside one transaction, so two actors can never both make it.
"""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in TERMINAL

    def can_become(self, other: "JobStatus") -> bool:
        return other in TRANSITIONS[self]


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# States that refund the charge (exactly once, guarded by the job's ``refunded`` flag).
REFUNDING = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
