"""One state move: every job transition checks the table, guards the row, refunds once and writes its event row
in the same transaction (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from pixgen.core.spec import parse_request
from pixgen.errors import IllegalTransition
from pixgen.jobs.events import EventKind, job_history
from pixgen.jobs.keys import create_key
from pixgen.jobs.states import TRANSITIONS, JobStatus
from pixgen.jobs.store import JobStore, Outcome

REQ = parse_request({"prompt": "a lighthouse at dusk", "duration": 1, "quality": "360p"})


@pytest.fixture
def store(db, clock):
    return JobStore(db, lease_seconds=30, max_attempts=2, clock=clock)


def kinds(db, job_id: str) -> list[str]:
    return [e.kind.value for e in job_history(db, job_id)]


def outcome() -> Outcome:
    return Outcome(video_file="v.mp4", thumb_file=None, width=640, height=360, seconds=1.0, has_audio=True, seed=1,
                   prompt="used", original_prompt="a lighthouse at dusk", timings={"denoise": 1.5})


def test_each_step_of_a_job_leaves_one_event_in_order_with_the_status_it_left(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    store.heartbeat(job.id, claim.token, progress=5, stage="text")
    store.heartbeat(job.id, claim.token, progress=7, stage="text")  # same tenth, same stage: no event
    store.heartbeat(job.id, claim.token, progress=40, stage="denoise")
    store.cancel(job.id, key.id)
    store.cancel(job.id, key.id)  # asked again: already flagged, nothing new
    assert store.finish_cancelled(job.id, claim.token)
    history = job_history(db, job.id)
    assert [e.kind for e in history] == [EventKind.CREATED, EventKind.STARTED, EventKind.PROGRESS,
                                         EventKind.PROGRESS, EventKind.CANCEL_REQUESTED, EventKind.CANCELLED]
    assert [e.status.value for e in history] == ["pending", "processing", "processing", "processing",
                                                 "processing", "cancelled"]
    assert history[3].data["stage"] == "denoise" and history[3].data["progress"] == 40
    assert history[-1].data["refunded"] == 10 and history[-1].data["error_code"] == "cancelled"
    assert len({e.id for e in history}) == len(history) and all(e.id.startswith("evt_") for e in history)


def test_a_move_that_is_not_in_the_table_is_a_real_error_and_changes_nothing(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w1")
    assert store.complete(job.id, claim.token, outcome())
    done = store.get(job.id)
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()
    with pytest.raises(IllegalTransition, match="completed → pending"), db.write() as conn:
        store._move(conn, done, JobStatus.PENDING, 0.0)
    assert store.get(job.id).status is JobStatus.COMPLETED and kinds(db, job.id)[-1] == "completed"


def test_a_move_rolled_back_with_its_transaction_leaves_no_event_and_no_refund(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    with pytest.raises(RuntimeError), db.write() as conn:
        assert store._move(conn, job, JobStatus.CANCELLED, 0.0, error_code="cancelled")
        raise RuntimeError("the transaction fails after the move")
    assert store.get(job.id).status is JobStatus.PENDING and store.credits(key.id) == 0
    assert kinds(db, job.id) == ["created"]


def test_a_worker_that_lost_its_lease_moves_nothing_and_records_nothing(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    stale = store.claim("w1")
    clock.now += 31
    assert store.requeue_expired() == [job.id]
    fresh = store.claim("w2")
    assert not store.complete(job.id, stale.token, outcome())
    assert not store.heartbeat(job.id, stale.token, progress=90, stage="decode").lease_ok
    assert not store.release(job.id, stale.token)
    assert kinds(db, job.id) == ["created", "started", "requeued", "started"]
    assert store.complete(job.id, fresh.token, outcome())
    assert kinds(db, job.id)[-1] == "completed" and store.get(job.id).timing_dict() == {"denoise": 1.5}


def test_expired_leases_requeue_then_fail_with_one_refund_recorded(db, store, clock):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    for _ in range(2):
        store.claim("w")
        clock.now += 31
        store.requeue_expired()
    assert store.get(job.id).status is JobStatus.FAILED and store.credits(key.id) == 10
    history = job_history(db, job.id)
    assert [e.kind.value for e in history] == ["created", "started", "requeued", "started", "failed"]
    assert history[-1].data["refunded"] == 10 and history[-1].data["error_code"] == "internal_error"


def test_release_hands_back_without_counting_the_attempt_and_says_so(db, store):
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, REQ, cost=10).job
    claim = store.claim("w")
    assert store.release(job.id, claim.token)
    back = store.get(job.id)
    assert back.status is JobStatus.PENDING and back.attempts == 0 and back.lease_token is None
    assert kinds(db, job.id) == ["created", "started", "requeued"]
