"""Retention (``--keep-jobs``): finished jobs, their events and webhook deliveries are deleted once they ended
longer ago than the setting, with their files; the metrics' counters (``FleetCollector``, what ``/metrics`` serves)
read the same before and after, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from pixgen.api.metrics import FleetCollector, webhook_tally
from pixgen.core.spec import parse_request
from pixgen.jobs import deliveries, retention
from pixgen.jobs.keys import create_key
from pixgen.jobs.schema import job_events, jobs, submit_attempts, webhook_deliveries
from pixgen.jobs.store import JobStore, Outcome
from pixgen.jobs.webhooks import KEY_SIGNER, RetryPolicy, Subscription
from pixgen.settings import load_settings
from pixgen.storage.local import LocalMediaStore

REQ = parse_request({"prompt": "a lighthouse", "duration": 1, "quality": "360p"})
HOOK = Subscription("https://hooks.example.com/pixgen")
DAY = 86400.0


def counters(db) -> dict[tuple[str, tuple], float]:
    """Every counter and histogram sample ``/metrics`` shows from the database (gauges left out: they may fall)."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(db, lease_seconds=60, webhooks=webhook_tally))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text)
            if family.type in ("counter", "histogram") for s in family.samples}


def rows(db, table, **where) -> int:
    with db.read() as conn:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int(conn.execute(query).scalar_one())


def finish(store: JobStore, key: str, media: LocalMediaStore, tmp_path, *, fail: bool = False,
           webhook: Subscription | None = None) -> str:
    """A job submitted, claimed and completed (with a stored video, thumbnail and stage timings) or failed."""
    job = store.submit(key, REQ, cost=10, webhook=webhook).job
    claim = store.claim("w1")
    assert claim is not None and claim.job.id == job.id
    if fail:
        store.fail(job.id, claim.token, "internal_error", "boom")
        return job.id
    names = (f"{job.id}-a.mp4", f"{job.id}-a.jpg")
    for name in names:
        (tmp_path / name).write_bytes(b"media")
        media.put(name, tmp_path / name, "video/mp4")
    store.complete(job.id, claim.token, Outcome(video_file=names[0], thumb_file=names[1], width=640, height=360,
                                                seconds=1.0, has_audio=True, seed=1, prompt="used",
                                                original_prompt="a lighthouse",
                                                timings={"denoise": 3.0, "encode": 0.4}))
    return job.id


@pytest.fixture
def setup(db, clock, tmp_path):
    """The store on the test's clock, a media folder and a key with credits."""
    return JobStore(db, clock=clock), LocalMediaStore(tmp_path / "media"), create_key(db, credits=10_000)[0].id


def test_old_finished_jobs_go_with_their_events_deliveries_and_files_and_counters_stay(db, clock, setup, tmp_path):
    store, media, key = setup
    store.admit(key, cost=10)  # one submit attempt counted toward the key's rate
    old_done = [finish(store, key, media, tmp_path, webhook=HOOK) for _ in range(3)]
    old_failed = finish(store, key, media, tmp_path, fail=True, webhook=HOOK)
    cancelled = store.submit(key, REQ, cost=10).job.id
    store.cancel(cancelled)
    # Webhooks: the three completed jobs' deliveries sent (one given up after a failed attempt); the failed job's
    # one still waits, so that job is kept until it is sent or given up.
    claimed = deliveries.claim(db, clock.now, lease=30, limit=10, signers=[KEY_SIGNER])
    by_job = {c.delivery.job_id: c for c in claimed}
    for job_id in old_done[:2]:
        deliveries.finish(db, by_job[job_id], clock.now, RetryPolicy(), ok=True, status=200)
    deliveries.finish(db, by_job[old_done[2]], clock.now, RetryPolicy(give_up_after=0), ok=False, status=500)
    deliveries.finish(db, by_job[old_failed], clock.now, RetryPolicy(), ok=False, status=503)
    clock.now += 40 * DAY
    recent = finish(store, key, media, tmp_path)  # finished a moment ago: kept
    running = store.submit(key, REQ, cost=10).job.id  # pending now, never finished: kept
    before = counters(db)
    assert before[("pixgen_jobs_total", (("outcome", "completed"), ("quality", "360p"), ("surface", "jobs")))] == 4
    assert before[("pixgen_webhook_deliveries_total", (("result", "delivered"),))] == 2

    done = retention.prune(db, media, keep=30 * DAY, now=clock.now)

    assert (done.jobs, done.files) == (4, 6)  # 3 completed (video + thumbnail each) and the cancelled one
    assert done.deliveries == 3 and done.events == 3 * 3 + 2  # created, started, completed; created, cancelled
    assert counters(db) == before  # every counter and histogram sample as it was
    for job_id in [*old_done, cancelled]:
        assert rows(db, jobs, id=job_id) == rows(db, job_events, job_id=job_id) == 0
        assert rows(db, webhook_deliveries, job_id=job_id) == 0
        assert media.size(f"{job_id}-a.mp4") is None
    for job_id in (old_failed, running, recent):  # a webhook still to send, not finished, finished lately
        assert rows(db, jobs, id=job_id) == 1 and rows(db, job_events, job_id=job_id) >= 1
    assert media.size(f"{recent}-a.mp4") == 5
    assert rows(db, submit_attempts) == 0  # long past the rate window

    # Pruned totals are not counted twice: nothing more to prune changes nothing; new work adds to the totals.
    assert retention.prune(db, media, keep=30 * DAY, now=clock.now).jobs == 0
    assert counters(db) == before
    store.cancel(running)  # (so the next claim takes the new job) and a new one finished
    later = finish(store, key, media, tmp_path)
    running = store.submit(key, REQ, cost=10).job.id
    after = counters(db)
    completed = ("pixgen_jobs_total", (("outcome", "completed"), ("quality", "360p"), ("surface", "jobs")))
    assert after[completed] == before[completed] + 1
    cancelled_total = ("pixgen_jobs_total", (("outcome", "cancelled"), ("quality", "360p"), ("surface", "jobs")))
    assert after[cancelled_total] == before[cancelled_total] + 1
    assert all(after[k] >= v for k, v in before.items())

    # The failed job goes once its webhook is given up; the delivery counters keep what it did.
    (again,) = deliveries.claim(db, clock.now + DAY, lease=30, limit=10, signers=[KEY_SIGNER])
    deliveries.finish(db, again, clock.now + DAY, RetryPolicy(give_up_after=0), ok=False, status=503)
    tally = counters(db)
    # the failed one, the one finished lately, the cancelled one and the one finished after the first prune
    assert retention.prune(db, media, keep=30 * DAY, now=clock.now + 31 * DAY).jobs == 4
    assert counters(db) == tally
    assert rows(db, jobs) == 1 and rows(db, jobs, id=running) == 1  # only the pending job is left
    assert media.size(f"{later}-a.mp4") is None


def test_sweep_runs_at_most_every_period_and_never_with_keep_zero(db, setup, tmp_path):
    _, media, _ = setup
    sweep = retention.Sweep(db, media, keep=1.0, every=3600)
    assert sweep.maybe_run() is not None  # the first call runs
    assert sweep.maybe_run() is None  # then not before the period
    assert retention.Sweep(db, media, keep=0.0).maybe_run() is None  # 0: keep everything


def test_keep_jobs_takes_a_duration_and_defaults_to_thirty_days():
    assert load_settings(environ={}, secret=False).keep_jobs == 30 * DAY
    for text, seconds in (("12h", 43200.0), ("90m", 5400.0), ("45s", 45.0), ("3600", 3600.0), ("0", 0.0)):
        assert load_settings({"keep_jobs": text}, environ={}, secret=False).keep_jobs == seconds
    assert load_settings(environ={"PIXGEN_KEEP_JOBS": "7d"}, secret=False).keep_jobs == 7 * DAY
