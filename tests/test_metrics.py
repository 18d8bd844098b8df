"""``GET /metrics``: parsed with prometheus_client's own parser; the values move as jobs are queued, run and end.

A real ``pixgen serve --workers 0`` with a metrics token, and real ``pixgen worker`` processes on the fake engine
started and stopped by the test; the fleet collector itself on SQLite and PostgreSQL.
"""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pixgen.api.metrics import FleetCollector, WebhookTally
from pixgen.core.spec import parse_request
from pixgen.jobs.db import connect
from pixgen.jobs.keys import create_key
from pixgen.jobs.origin import ApiSurface, Origin
from pixgen.jobs.store import JobStore, Outcome
from pixgen.testing import FAKE_ENGINE, start_server, start_worker, stop_process, wait_for

TOKEN = "scrape-secret-7f3a"
FAKE = {"PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_LEASE_SECONDS": "10"}
RUN = "/api/v1/models/pixverse-v6/run"
JOB = {"prompt": "a lighthouse at dusk", "duration": 1, "quality": "360p"}
REQ = parse_request(JOB)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metered(tmp_path_factory):
    """An API node (no workers of its own) that asks for a metrics token; default caps."""
    server = start_server(tmp_path_factory.mktemp("metered"), workers=0,
                          env={**FAKE, "PIXGEN_METRICS_TOKEN": TOKEN})
    yield server
    server.stop()


def scrape(server, token: str | None = TOKEN) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(server.url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_metrics_need_the_token_when_one_is_set(metered):
    assert httpx.get(metered.url + "/metrics").status_code == 401
    wrong = httpx.get(metered.url + "/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    samples = scrape(metered)
    assert value(samples, "pixgen_database_up") == 1


def test_metrics_are_open_without_a_token(api_server):
    response = httpx.get(api_server.url + "/metrics")
    assert response.status_code == 200
    assert value(parse(response.text), "pixgen_database_up") == 1


def test_values_move_as_a_batch_is_queued_run_and_ended(metered):
    key = metered.new_key(credits=1000)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=metered.url, headers=headers, timeout=30) as client:
        before = scrape(metered)
        assert value(before, "pixgen_queue_pending_jobs") == 0
        # 13 jobs from one key in a loop: all queued under the default settings (no per-key cap).
        answers = [client.post(RUN, json=JOB) for _ in range(13)]
        assert [a.status_code for a in answers] == [200] * 13
        ids = [a.json()["jobId"] for a in answers]
        queued = scrape(metered)
        assert value(queued, "pixgen_queue_pending_jobs") == 13
        assert value(queued, "pixgen_queue_keys_waiting") == 1
        assert value(queued, "pixgen_queue_oldest_pending_age_seconds") >= 0
        assert value(queued, "pixgen_jobs_submitted_total", surface="jobs", quality="360p") == 13
        assert value(queued, "pixgen_http_request_duration_seconds_count", method="POST",
                     route="/api/v1/models/{model_id}/run", status="200") == 13

        client.post(f"/api/v1/jobs/{ids[0]}/cancel")
        client.get(f"/api/v1/jobs/{ids[1]}")
        cancelled = scrape(metered)
        assert value(cancelled, "pixgen_jobs_total", outcome="cancelled", surface="jobs", quality="360p") == 1
        assert value(cancelled, "pixgen_queue_pending_jobs") == 12
        assert value(cancelled, "pixgen_http_request_duration_seconds_count", method="GET",
                     route="/api/v1/jobs/{job_id}", status="200") == 1
        assert not any(ids[1] in str(labels) for _, labels in cancelled)  # routes by template, not by job id

        worker = start_worker(metered.data_dir, metered.database_url,
                              env={**FAKE, "PIXGEN_MODEL": "steps=2,scale=0.25"})
        try:
            def all_completed() -> dict | None:
                samples = scrape(metered)
                completed = value(samples, "pixgen_jobs_total", outcome="completed", surface="jobs", quality="360p")
                return samples if completed == 12 else None

            done = wait_for(all_completed, timeout=120, every=0.5)
            assert value(done, "pixgen_queue_pending_jobs") == 0
            assert value(done, "pixgen_workers_live") == 1
            for stage in ("denoise", "encode"):  # the fake engine's timed stages, from jobs.timings
                assert value(done, "pixgen_job_stage_seconds_count", stage=stage, quality="360p") == 12
                assert value(done, "pixgen_job_stage_seconds_bucket", stage=stage, quality="360p", le="+Inf") == 12
            assert value(done, "pixgen_job_stage_seconds_count", stage="refine", quality="360p") == 0
        finally:
            stop_process(worker, signal.SIGTERM)
        assert value(scrape(metered), "pixgen_workers_live") == 0

        # A worker whose every job fails: the failed outcome moves.
        assert client.post(RUN, json=JOB).status_code == 200
        failing = start_worker(metered.data_dir, metered.database_url, log_name="failing.log",
                               env={**FAKE, "PIXGEN_MODEL": "steps=1,scale=0.25,fail=boom"})
        try:
            wait_for(lambda: value(scrape(metered), "pixgen_jobs_total", outcome="failed", surface="jobs",
                                   quality="360p") == 1, timeout=60, every=0.5)
        finally:
            stop_process(failing, signal.SIGTERM)
        final = scrape(metered)
        assert value(final, "pixgen_jobs_total", outcome="completed", surface="jobs", quality="360p") == 12
        assert value(final, "pixgen_jobs_submitted_total", surface="jobs", quality="360p") == 14


# -- the fleet collector on each database ---------------------------------------------------------------------
def collect(db, **options) -> dict:
    registry = CollectorRegistry()
    registry.register(FleetCollector(db, lease_seconds=60, **options))
    return parse(generate_latest(registry).decode())


def finish(store: JobStore, timings: dict[str, float]) -> None:
    claim = store.claim("w")
    assert store.complete(claim.job.id, claim.token, Outcome(
        video_file="v.mp4", thumb_file=None, width=640, height=360, seconds=1.0, has_audio=True, seed=1,
        prompt="p", original_prompt="p", timings=timings))


def test_stage_durations_are_histograms_of_the_stored_engine_timings(db):
    store = JobStore(db)
    key, _ = create_key(db, credits=100)
    for _ in range(3):
        store.submit(key.id, REQ, cost=1, origin=Origin(surface=ApiSurface.OPENAI))
    finish(store, {"text": 0.2, "denoise": 12.0, "refine": 3.0, "decode": 0.7, "encode": 0.4})
    finish(store, {"text": 0.3, "denoise": 40.0, "decode": 0.9, "encode": 0.6})
    samples = collect(db)
    assert value(samples, "pixgen_job_stage_seconds_count", stage="denoise", quality="360p") == 2
    assert value(samples, "pixgen_job_stage_seconds_sum", stage="denoise", quality="360p") == pytest.approx(52.0)
    assert value(samples, "pixgen_job_stage_seconds_bucket", stage="denoise", quality="360p", le="10.0") == 0
    assert value(samples, "pixgen_job_stage_seconds_bucket", stage="denoise", quality="360p", le="30.0") == 1
    assert value(samples, "pixgen_job_stage_seconds_bucket", stage="denoise", quality="360p", le="60.0") == 2
    assert value(samples, "pixgen_job_stage_seconds_count", stage="refine", quality="360p") == 1
    assert value(samples, "pixgen_job_stage_seconds_bucket", stage="text", quality="360p", le="0.25") == 1
    assert value(samples, "pixgen_jobs_total", outcome="completed", surface="openai", quality="360p") == 2
    assert value(samples, "pixgen_jobs_submitted_total", surface="openai", quality="360p") == 3
    assert value(samples, "pixgen_queue_pending_jobs") == 1


def test_queue_depth_and_oldest_wait_come_from_the_database(db):
    clock = [1_000.0]
    store = JobStore(db, clock=lambda: clock[0])
    a, b = create_key(db, credits=100)[0], create_key(db, credits=100)[0]
    store.submit(a.id, REQ, cost=1)
    store.submit(b.id, REQ, cost=1)
    samples = collect(db)
    assert value(samples, "pixgen_queue_pending_jobs") == 2 and value(samples, "pixgen_queue_keys_waiting") == 2
    assert value(samples, "pixgen_queue_oldest_pending_age_seconds") > 1_000_000  # queued at t=1000 (1970)
    store.claim("w")
    samples = collect(db)
    assert value(samples, "pixgen_queue_pending_jobs") == 1 and value(samples, "pixgen_queue_processing_jobs") == 1
    assert value(samples, "pixgen_queue_keys_waiting") == 1


def test_webhook_deliveries_appear_when_a_source_is_connected(db):
    assert value(collect(db), "pixgen_webhook_deliveries_total", result="delivered") == 0
    tally = WebhookTally(delivered=5, given_up=1, pending=2, failed_attempts=7)
    samples = collect(db, webhooks=lambda _db: tally)
    assert value(samples, "pixgen_webhook_deliveries_total", result="delivered") == 5
    assert value(samples, "pixgen_webhook_deliveries_total", result="given_up") == 1
    assert value(samples, "pixgen_webhook_failed_attempts_total") == 7
    assert value(samples, "pixgen_webhook_deliveries_pending") == 2


def test_a_database_that_does_not_answer_is_a_zero_not_a_failed_scrape(tmp_path):
    db = connect(f"sqlite:///{tmp_path / 'missing' / 'pixgen.db'}", pool_size=1)
    samples = collect(db)
    assert value(samples, "pixgen_database_up") == 0
    assert ("pixgen_queue_pending_jobs", ()) not in samples
    db.dispose()


def test_the_served_metrics_count_the_webhook_deliveries_table(db):
    """create_app connects ``webhook_tally``: rows of ``webhook_deliveries`` in each state become the metrics."""
    from sqlalchemy import insert

    from pixgen.api.metrics import webhook_tally
    from pixgen.jobs.schema import webhook_deliveries

    rows = [("delivered", 1), ("delivered", 3), ("failed", 5), ("pending", 2)]
    with db.write() as conn:
        for i, (state, attempts) in enumerate(rows):
            conn.execute(insert(webhook_deliveries).values(
                id=f"evt_m{i}", job_id=f"job_m{i}", key_id="key_m", event_type="video.completed", url="http://127.0.0.1:9/",
                signer="server", state=state,
                attempts=attempts, next_attempt_at=0.0, created_at=0.0))
    tally = webhook_tally(db)
    assert (tally.delivered, tally.given_up, tally.pending) == (2, 1, 1)
    assert tally.failed_attempts == (1 - 1) + (3 - 1) + 5 + 2
    samples = collect(db, webhooks=webhook_tally)
    assert value(samples, "pixgen_webhook_deliveries_total", result="delivered") == 2
