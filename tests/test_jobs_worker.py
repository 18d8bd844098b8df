"""The worker loop against the Engine protocol: results, cancel within a step, lost leases, failures, shutdown.

The engine is ``pixgen.testing.FakeEngine``, the whole protocol without a model (progress per step,
``should_cancel`` checked each step, a real MP4 written); the real toy model runs in ``test_service_e2e.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from pixgen.core.progress import Progress
from pixgen.core.spec import parse_request
from pixgen.jobs.db import connect, migrate
from pixgen.jobs.keys import create_key
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import JobStore
from pixgen.jobs.worker import Worker
from pixgen.settings import Settings
from pixgen.testing import FakeEngine, wait_for

REQ = parse_request({"prompt": "a paper boat", "duration": 1, "quality": "360p"})


@pytest.fixture
def settings(tmp_path, db_url):
    return Settings(data_dir=tmp_path, database_url=db_url, lease_seconds=2, poll_interval=0.05)


@pytest.fixture
def store(settings):
    db = connect(settings.database_url, pool_size=2)
    migrate(db)
    yield JobStore.from_settings(db, settings)
    db.dispose()


def submit(store: JobStore) -> tuple[str, str]:
    key, _ = create_key(store.db, credits=10)
    return key.id, store.submit(key.id, REQ, cost=10).job.id


@pytest.fixture
def run_in_thread():
    """Start a worker on a thread; every one is stopped and joined when the test ends."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> threading.Thread:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return thread

    yield start
    for worker, thread in started:
        worker.stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive()


def files_of(settings: Settings, job_id: str) -> list:
    """The job's files anywhere a worker writes them: the media store (a folder here) and the work folder."""
    return [*settings.media_dir.glob(f"{job_id}*"), *settings.work_dir.glob(f"{job_id}*")]


def wait_until(predicate, timeout: float = 20):
    return wait_for(predicate, timeout, every=0.05)


def test_worker_runs_a_job_to_completed_with_video_and_thumbnail(settings, store):
    key_id, job_id = submit(store)
    worker = Worker(settings, engine_factory=lambda: FakeEngine())
    assert worker.run(max_jobs=1) == 1
    job = store.get(job_id)
    assert job.status is JobStatus.COMPLETED and job.progress == 100
    assert job.prompt == "a paper boat (fake)" and job.original_prompt == "a paper boat"
    assert (job.width, job.height) == (640, 360) and set(job.timing_dict()) == {"prepare", "denoise", "encode"}
    assert (settings.media_dir / job.video_file).stat().st_size > 0
    assert (settings.media_dir / job.thumb_file).read_bytes()[:3] == b"\xff\xd8\xff"
    assert store.credits(key_id) == 0


def test_progress_is_written_while_the_job_runs(settings, store, run_in_thread):
    _, job_id = submit(store)
    engine = FakeEngine(steps=8, step_seconds=0.3)
    run_in_thread(Worker(settings, engine_factory=lambda: engine))
    seen = set()
    while store.get(job_id).status is not JobStatus.COMPLETED:
        job = store.get(job_id)
        if job.status is JobStatus.PROCESSING:
            seen.add(job.progress)
        time.sleep(0.05)
    assert len(seen - {0}) >= 2  # several distinct progress values were visible


def test_cancel_stops_a_running_job_within_one_step_and_refunds(settings, store, run_in_thread):
    key_id, job_id = submit(store)
    engine = FakeEngine(steps=100, step_seconds=0.25)
    run_in_thread(Worker(settings, engine_factory=lambda: engine))
    wait_until(lambda: engine.steps_run >= 2)
    store.cancel(job_id, key_id)
    at_cancel = engine.steps_run
    wait_until(lambda: store.get(job_id).status is JobStatus.CANCELLED, timeout=5)
    assert engine.steps_run - at_cancel <= 1
    assert store.credits(key_id) == 10
    assert not files_of(settings, job_id)


def test_worker_that_lost_its_lease_writes_nothing(settings, store):
    _key_id, job_id = submit(store)
    taken = threading.Event()

    def take_over(step: int) -> None:
        if step == 1:  # the lease "expires" and another worker takes the job
            later = JobStore(store.db, lease_seconds=2, clock=lambda: time.time() + 100)
            # On PostgreSQL the sweep and the claim skip a row locked by the worker's heartbeat at that moment
            # (SKIP LOCKED): sweep again until it puts the job back, as the next housekeeping round would, and claim
            # again until the other worker gets it, as its next look at the queue would.
            deadline = time.monotonic() + 10
            while job_id not in later.requeue_expired():
                assert time.monotonic() < deadline, "the expired lease was never swept"
                time.sleep(0.05)
            while store.claim("other-worker") is None:
                assert time.monotonic() < deadline, "the job put back was never claimed"
                time.sleep(0.05)
            taken.set()

    # 20 s of steps: the worker's heartbeat (a fraction of the 2 s lease) notices long before the end, even on a
    # loaded machine, and the job stops there
    engine = FakeEngine(steps=200, step_seconds=0.1, on_step=take_over)
    worker = Worker(settings, engine_factory=lambda: engine)
    worker.run(max_jobs=1)
    assert taken.is_set()
    job = store.get(job_id)
    assert job.status is JobStatus.PROCESSING and job.worker_id == "other-worker" and job.attempts == 2
    assert job.video_file is None and not files_of(settings, job_id)
    assert engine.steps_run < 200  # it noticed and stopped early


def test_engine_error_fails_the_job_with_its_message_and_refunds(settings, store):
    key_id, job_id = submit(store)
    worker = Worker(settings, engine_factory=lambda: FakeEngine(fail="decoder ran out of memory"))
    worker.run(max_jobs=1)
    job = store.get(job_id)
    assert job.status is JobStatus.FAILED and job.error_message == "decoder ran out of memory"
    assert store.credits(key_id) == 10


def test_unexpected_exception_fails_the_job_and_the_worker_goes_on(settings, store):
    _, first = submit(store)
    _, second = submit(store)
    def boom(step: int) -> None:
        raise RuntimeError("boom")

    worker = Worker(settings, engine_factory=lambda: FakeEngine(on_step=boom))
    worker.run(max_jobs=2)
    assert store.get(first).status is JobStatus.FAILED and "boom" in store.get(first).error_message
    assert store.get(second).status is JobStatus.FAILED  # same engine, same failure; the loop went on


def test_stopping_worker_hands_its_job_back_without_counting_the_attempt(settings, store, run_in_thread):
    _, job_id = submit(store)
    engine = FakeEngine(steps=100, step_seconds=0.1)
    worker = Worker(settings, engine_factory=lambda: engine)
    thread = run_in_thread(worker)
    wait_until(lambda: engine.steps_run >= 1)
    worker.stop.set()
    thread.join(timeout=10)
    job = store.get(job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0


def _crashing_worker(settings: Settings) -> None:
    def die(step: int) -> None:
        os._exit(17)  # the process dies mid-job, as on an OOM kill

    Worker(settings, engine_factory=lambda: FakeEngine(on_step=die)).run()


def test_job_that_kills_its_worker_fails_after_max_attempts(settings, store):
    settings = settings.model_copy(update={"lease_seconds": 0.5})
    key_id, job_id = submit(store)
    ctx = multiprocessing.get_context("fork")
    for attempt in range(1, settings.max_attempts + 1):
        proc = ctx.Process(target=_crashing_worker, args=(settings,))
        proc.start()
        proc.join(timeout=30)
        assert proc.exitcode == 17
        assert store.get(job_id).attempts == attempt
        time.sleep(settings.lease_seconds + 0.1)
        store.requeue_expired()  # what any live worker's housekeeping does
    job = store.get(job_id)
    assert job.status is JobStatus.FAILED and job.refunded
    assert store.credits(key_id) == 10


def test_zero_data_retention_deletes_outputs_after_their_ttl(settings, store, run_in_thread):
    settings = settings.model_copy(update={"zero_data_retention": True, "output_ttl": 0.2, "lease_seconds": 1})
    _, job_id = submit(store)
    run_in_thread(Worker(settings, engine_factory=lambda: FakeEngine()))
    done = wait_until(lambda: (j := store.get(job_id)).status is JobStatus.COMPLETED and j)
    assert done.prompt is None and "paper boat" not in done.request
    wait_until(lambda: store.get(job_id).media_deleted, timeout=10)
    assert not files_of(settings, job_id)


def test_a_new_stage_is_written_at_once_and_progress_within_a_stage_is_throttled(settings, store, monkeypatch):
    from pixgen.jobs import worker as worker_module

    monkeypatch.setattr(worker_module, "PROGRESS_EVERY", 30.0)  # within a stage: nothing more during this test
    _, job_id = submit(store)
    claim = store.claim("w")
    lease = worker_module._Lease(store, job_id, claim.token, 60.0, lambda: False)  # no renewal, no hand-back
    lease.start()
    try:
        lease.on_progress(Progress("text", 0, 1))
        wait_until(lambda: store.get(job_id).stage == "text")
        first_step = Progress("denoise", 1, 10)
        lease.on_progress(first_step)
        wait_until(lambda: store.get(job_id).stage == "denoise")  # a watcher sees denoising start at once
        assert store.get(job_id).progress == first_step.percent
        lease.on_progress(Progress("denoise", 2, 10))
        time.sleep(0.5)
        assert store.get(job_id).progress == first_step.percent  # same stage: throttled
    finally:
        lease.close()


def test_a_starting_worker_takes_over_an_expired_lease_at_once(settings, store, run_in_thread, monkeypatch):
    from pixgen.jobs import fleet

    monkeypatch.setattr(fleet, "beat_period", lambda lease_seconds: 3600.0)  # no periodic sweep in this test
    _, job_id = submit(store)
    dead = JobStore(store.db, lease_seconds=0.01).claim("dead-worker")  # its worker died at once
    assert dead is not None
    time.sleep(0.05)
    worker = Worker(settings, engine_factory=lambda: FakeEngine(steps=3, step_seconds=0.05), worker_id="fresh")
    run_in_thread(worker)
    wait_until(lambda: store.get(job_id).status is JobStatus.COMPLETED)
    job = store.get(job_id)
    assert job.worker_id == "fresh" and job.attempts == 2
