"""Fair queuing on SQLite and PostgreSQL: batches wait instead of being refused, keys take turns, positions are true."""

from __future__ import annotations

import pytest

from pixgen.core.spec import parse_request
from pixgen.errors import RateLimited
from pixgen.jobs.keys import create_key
from pixgen.jobs.store import JobStore
from pixgen.settings import load_settings

REQ = parse_request({"prompt": "a red fox in snow", "duration": 1, "quality": "360p"})


@pytest.fixture
def store(db):
    return JobStore(db, rate_limit_per_minute=0)  # no per-minute limit: these tests queue hundreds of jobs


def submit(store: JobStore, key_id: str, n: int = 1) -> list[str]:
    return [store.submit(key_id, REQ, cost=1).job.id for _ in range(n)]


def positions(store: JobStore, ids: list[str]) -> dict[str, int]:
    """Queue position of each job of ``ids`` that is still pending."""
    found = {job_id: store.get_with_position(job_id)[1] for job_id in ids}
    return {job_id: pos for job_id, pos in found.items() if pos is not None}


def drain(store: JobStore) -> list[str]:
    """Claim until the queue is empty; the ids in claim order."""
    order = []
    while (claim := store.claim("w")) is not None:
        order.append(claim.job.id)
    return order


def test_a_batch_of_13_from_one_key_is_queued_under_the_default_settings(db, tmp_path):
    defaults = load_settings({"data_dir": str(tmp_path)}, environ={}, secret=False)
    assert defaults.max_concurrent_jobs == 0
    store = JobStore.from_settings(db, defaults)
    key, _ = create_key(db, credits=1000)
    ids = submit(store, key.id, 13)
    assert sorted(positions(store, ids).values()) == list(range(1, 14))
    assert store.credits(key.id) == 1000 - 13


def test_the_per_key_cap_still_refuses_with_429_when_an_operator_sets_it(db):
    store = JobStore(db, max_concurrent_jobs=2, rate_limit_per_minute=0)
    key, other = create_key(db, credits=100)[0], create_key(db, credits=100)[0]
    first, _ = submit(store, key.id, 2)
    with pytest.raises(RateLimited) as refused:
        store.submit(key.id, REQ, cost=1)
    assert refused.value.status == 429 and refused.value.retry_after >= 1
    submit(store, other.id)  # the cap is per key
    store.cancel(first)
    submit(store, key.id)  # a slot freed
    assert store.credits(key.id) == 100 - 3 + 1


def test_a_key_with_100_queued_jobs_does_not_starve_a_key_with_one(db, store):
    busy, quiet, late = (create_key(db, credits=1000)[0] for _ in range(3))
    backlog = submit(store, busy.id, 100)
    [single] = submit(store, quiet.id)
    assert store.get_with_position(single)[1] == 2  # behind the busy key's first job only
    claimed = [store.claim("w").job.id for _ in range(2)]
    assert claimed == [backlog[0], single]
    for _ in range(40):
        store.claim("w")
    # A key arriving when the busy key has 58 jobs left waits one turn, not 58.
    [newcomer] = submit(store, late.id)
    assert store.get_with_position(newcomer)[1] == 2
    assert [store.claim("w").job.id for _ in range(2)] == [backlog[41], newcomer]


def test_a_busy_key_gets_every_other_turn_while_two_keys_wait(db, store):
    a, b = create_key(db, credits=100)[0], create_key(db, credits=100)[0]
    a_jobs = submit(store, a.id, 4)
    b_jobs = submit(store, b.id, 4)
    assert drain(store) == [x for pair in zip(a_jobs, b_jobs, strict=True) for x in pair]


def test_queue_positions_are_the_order_in_which_jobs_are_claimed(db, store):
    a, b, c = (create_key(db, credits=100)[0] for _ in range(3))
    ids = submit(store, a.id, 5) + submit(store, b.id, 2)
    store.claim("w")
    ids += submit(store, c.id) + submit(store, b.id, 2) + submit(store, a.id)
    expected = positions(store, ids)
    assert sorted(expected.values()) == list(range(1, len(expected) + 1))  # distinct: one order, no ties
    order = []
    while (claim := store.claim("w")) is not None:
        order.append(claim.job.id)
        # Still true for the jobs left: each moved up by exactly one.
        assert positions(store, ids) == {job_id: expected[job_id] - len(order) for job_id in ids
                                         if job_id in expected and job_id not in order}
    assert order == sorted(expected, key=expected.__getitem__)


def test_a_job_handed_back_by_its_worker_returns_to_the_head_of_the_queue(db, store):
    a, b = create_key(db, credits=100)[0], create_key(db, credits=100)[0]
    first = submit(store, a.id, 3)[0]
    submit(store, b.id, 3)
    claim = store.claim("w")
    assert claim.job.id == first
    assert store.release(first, claim.token)
    assert store.get_with_position(first)[1] == 1
    assert store.claim("w").job.id == first
