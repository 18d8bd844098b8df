"""Graceful drain with real processes: ``pixgen worker`` and ``pixgen serve`` (fake engine) on one PostgreSQL queue.

- A worker told to stop (SIGTERM) claims nothing more and finishes its running job within ``--drain-seconds``.
- Past the drain it hands the job back at once (not after its lease expires); another worker restarts it.
- ``pixgen serve``: readiness answers 503 at once while the other routes still answer, its worker finishes the job,
  then the server stops accepting and exits.

Each ends with the ledger: no job lost, each charged once and never refunded, one ``completed`` event per job (none
ran to completion twice), the interrupted attempt not counted.
"""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from pixgen.jobs.db import connect
from pixgen.jobs.events import EventKind, job_history
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import JobStore
from pixgen.testing import FAKE_ENGINE, fresh_postgres_database, start_server, start_worker, stop_process, wait_for

PRICE = 10
FAKE = {"PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_POLL_INTERVAL": "0.1",
        # The lease is long: a job that comes back quickly came back by hand-back, not by lease expiry.
        "PIXGEN_LEASE_SECONDS": "60"}
REQUEST = {"prompt": "a lighthouse at dusk", "duration": 1, "quality": "360p"}


def fake_model(steps: int, step_seconds: float) -> dict[str, str]:
    return {"PIXGEN_MODEL": f"steps={steps},step_seconds={step_seconds},scale=0.25"}


@pytest.fixture
def queue_url(pg_url):
    """A fresh PostgreSQL database of its own (``pg_url``: the server is there, or the test fails under CI)."""
    with fresh_postgres_database("pixgen_drain") as url:
        yield url


@pytest.fixture
def fleet(tmp_path, queue_url):
    """An API-only ``pixgen serve`` on a fresh PostgreSQL queue, and a store to read it."""
    api = start_server(tmp_path / "data", workers=0, database_url=queue_url, env={**FAKE})
    db = connect(queue_url, pool_size=2)
    yield api, JobStore(db)
    api.stop()
    db.dispose()


def submit(api, key: str) -> str:
    answer = httpx.post(f"{api.url}/api/v1/models/pixverse-v6/run", json=REQUEST,
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobId"]


def worker(api, name: str, env: dict[str, str]) -> subprocess.Popen:
    return start_worker(api.data_dir, api.database_url, env={**FAKE, **env}, log_name=f"{name}.log")


def running_on(store: JobStore, job_id: str) -> str | None:
    job = store.get(job_id)
    return job.worker_id if job.status is JobStatus.PROCESSING and job.progress > 0 else None


def assert_ledger(store: JobStore, api, key_id_credits: tuple[str, int], job_ids: list[str]) -> None:
    """Every job completed once, charged once, never refunded; the key paid exactly for them."""
    for job_id in job_ids:
        job = store.get(job_id)
        assert job.status is JobStatus.COMPLETED and not job.refunded, (job.status, job.error_message)
        kinds = [e.kind for e in job_history(store.db, job_id)]
        assert kinds.count(EventKind.COMPLETED) == 1 and kinds.count(EventKind.CREATED) == 1, kinds
        assert job.attempts == 1, f"{job_id}: {job.attempts} attempts counted"
        assert (api.data_dir / "media" / job.video_file).stat().st_size > 0
    key_id, start = key_id_credits
    assert store.credits(key_id) == start - PRICE * len(job_ids)


def new_key(api, credits: int = 100) -> tuple[str, tuple[str, int]]:
    from pixgen.jobs.keys import authenticate

    secret = api.new_key(credits=credits)
    db = connect(api.database_url, pool_size=1)
    try:
        key_id = authenticate(db, secret).id
    finally:
        db.dispose()
    return secret, (key_id, credits)


def exit_within(proc: subprocess.Popen, seconds: float) -> int:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"pid {proc.pid} still running {seconds} s after SIGTERM") from None


def test_a_draining_worker_finishes_its_job_and_claims_no_other(fleet):
    api, store = fleet
    secret, account = new_key(api)
    first, second = submit(api, secret), submit(api, secret)
    a = worker(api, "a", {**fake_model(steps=20, step_seconds=0.15), "PIXGEN_DRAIN_SECONDS": "60"})
    try:
        worker_a = wait_for(lambda: running_on(store, first), timeout=60, every=0.05)
        a.send_signal(signal.SIGTERM)
        assert exit_within(a, 30) == 0
        done = store.get(first)
        assert done.status is JobStatus.COMPLETED and done.worker_id == worker_a  # finished by the one draining
        assert store.get(second).status is JobStatus.PENDING  # and nothing more was claimed
        b = worker(api, "b", fake_model(steps=2, step_seconds=0.0))
        try:
            wait_for(lambda: store.get(second).status is JobStatus.COMPLETED, timeout=60)
        finally:
            stop_process(b)
        assert store.get(second).worker_id != worker_a
        assert_ledger(store, api, account, [first, second])
    finally:
        stop_process(a, sig=signal.SIGKILL)


def test_past_the_drain_the_job_is_handed_back_at_once_and_another_worker_restarts_it(fleet):
    api, store = fleet
    secret, account = new_key(api)
    job_id = submit(api, secret)
    slow = {**fake_model(steps=60, step_seconds=0.1), "PIXGEN_DRAIN_SECONDS": "1"}  # a 6 s job, 1 s of drain
    a = worker(api, "a", slow)
    b = None
    try:
        worker_a = wait_for(lambda: running_on(store, job_id), timeout=60, every=0.05)
        b = worker(api, "b", fake_model(steps=5, step_seconds=0.05))  # idle, polling the queue
        wait_for(lambda: (api.data_dir / "b.log").exists() and "ready" in (api.data_dir / "b.log").read_text(),
                 timeout=60)
        signalled = time.monotonic()
        a.send_signal(signal.SIGTERM)
        taken = wait_for(lambda: (w := store.get(job_id).worker_id) not in (None, worker_a) and w, timeout=20,
                         every=0.05)
        handed_back_after = time.monotonic() - signalled
        # drain 1 s + a lease-thread tick + B's poll; the lease (60 s) had nothing to do with it
        assert handed_back_after < 5, f"the job reached worker B {handed_back_after:.1f} s after SIGTERM"
        assert exit_within(a, 15) == 0
        wait_for(lambda: store.get(job_id).status is JobStatus.COMPLETED, timeout=60)
        assert store.get(job_id).worker_id == taken
        kinds = [e.kind for e in job_history(store.db, job_id)]
        assert kinds.count(EventKind.STARTED) == 2 and kinds.count(EventKind.REQUEUED) == 1, kinds
        assert "handed back to the queue" in (api.data_dir / "a.log").read_text()
        assert_ledger(store, api, account, [job_id])
    finally:
        stop_process(a, sig=signal.SIGKILL)
        if b is not None:
            stop_process(b)


def test_a_second_sigterm_hands_the_job_back_without_waiting_out_the_drain(fleet):
    api, store = fleet
    secret, account = new_key(api)
    job_id = submit(api, secret)
    a = worker(api, "a", {**fake_model(steps=200, step_seconds=0.1), "PIXGEN_DRAIN_SECONDS": "600"})
    try:
        wait_for(lambda: running_on(store, job_id), timeout=60, every=0.05)
        a.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert store.get(job_id).status is JobStatus.PROCESSING  # draining: still running it
        a.send_signal(signal.SIGTERM)
        assert exit_within(a, 15) == 0
        job = store.get(job_id)
        assert job.status is JobStatus.PENDING and job.attempts == 0 and not job.refunded
        assert store.credits(account[0]) == account[1] - PRICE
    finally:
        stop_process(a, sig=signal.SIGKILL)


def test_serve_turns_readiness_off_keeps_answering_while_its_worker_finishes_then_stops(tmp_path, queue_url):
    server = start_server(tmp_path / "data", workers=1, database_url=queue_url, ready=True, env={
        **FAKE, **fake_model(steps=30, step_seconds=0.1), "PIXGEN_DRAIN_SECONDS": "60"})
    store = JobStore(connect(queue_url, pool_size=1))
    try:
        secret, account = new_key(server)
        job_id = submit(server, secret)
        wait_for(lambda: running_on(store, job_id), timeout=60, every=0.05)
        assert httpx.get(f"{server.url}/health/ready").status_code == 200  # a prober is watching
        server.proc.send_signal(signal.SIGTERM)
        ready = wait_for(lambda: (r := httpx.get(f"{server.url}/health/ready")).status_code == 503 and r, timeout=5,
                         every=0.05)
        assert ready.json()["reason"] == "shutting down"
        assert httpx.get(f"{server.url}/health").status_code == 200  # everything else still answers
        headers = {"Authorization": f"Bearer {secret}"}
        # the client follows its job to the end through the draining server
        final = wait_for(lambda: (r := httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=headers)).json()
                         ["status"] == "completed" and r, timeout=30, every=0.1)
        assert final.json()["output"]["video"]
        assert exit_within(server.proc, 30) == 128 + signal.SIGTERM  # the conventional exit of a SIGTERMed process
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
        log = server.log(tail=20000)
        assert "Traceback" not in log and "workers stopped; no longer accepting connections" in log, log
        assert_ledger(store, server, account, [job_id])
    finally:
        server.stop()
        store.db.dispose()


def test_readiness_can_leave_out_the_workers_for_a_fleet_that_scales_to_zero(api_server):
    """``/health/ready?workers=0``: the API alone (Kubernetes' probe of API pods when workers scale to zero)."""
    assert httpx.get(f"{api_server.url}/health/ready").status_code == 503  # no worker in this fleet
    alone = httpx.get(f"{api_server.url}/health/ready", params={"workers": 0})
    assert alone.status_code == 200 and alone.json() == {"status": "ready", "workers": 0}
    bad = httpx.get(f"{api_server.url}/health/ready", params={"workers": "2"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request" and "workers" in bad.json()["message"]

