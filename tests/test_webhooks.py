"""Signed webhooks, end to end on loopback: real ``pixgen serve`` / ``pixgen worker`` processes (the fake engine,
so jobs take about a second), a real HTTP receiver in a thread, signatures checked with the official ``openai``
SDK (``client.webhooks.unwrap``) and the ``standardwebhooks`` library, unmodified.

- per-job ``webhook_url`` / ``webhook_events`` on the job API, signed with the key's secret; OpenAI-form jobs to the
  server's ``--webhook-url`` as ``video.completed``, signed with ``--webhook-secret``;
- a receiver down, then up: retried with back-off under the same ``webhook-id``; one never up: given up, visible;
- a worker SIGKILLed mid-job and another SIGKILLed right after its final move while no API node runs: nothing lost;
- two API nodes on PostgreSQL: every event delivered once per id;
- bad ``webhook_url`` / ``webhook_events``: 400 naming the field, nothing charged;
- ``pixgen keys create`` prints ``webhook_secret=whsec_…`` before the key, which stays the last line; rotation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import httpx
import pytest
from cli_tools import pixgen
from openai import OpenAI
from sqlalchemy import select
from standardwebhooks import Webhook

from pixgen.jobs import deliveries, keys
from pixgen.jobs.db import connect, migrate
from pixgen.jobs.schema import jobs, webhook_deliveries
from pixgen.jobs.webhooks import new_secret, signed_headers
from pixgen.testing import (
    FAKE_ENGINE,
    WebhookReceiver,
    free_port,
    spawn,
    start_server,
    start_worker,
    stop_process,
    wait_for,
)

RUN = "/api/v1/models/pixverse-v6/run"
SHORT = {"prompt": "a lighthouse at dusk", "duration": 1, "resolution": "360p"}
SERVER_SECRET = new_secret()
FAKE = {"PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_MODEL": "steps=4,step_seconds=0.05,scale=0.25"}
WEBHOOK_ENV = {**FAKE, "PIXGEN_FETCH_ALLOW_HOSTS": "127.0.0.1", "PIXGEN_WEBHOOK_RETRY_BASE": "0.2",
               "PIXGEN_WEBHOOK_RETRY_MAX": "0.5", "PIXGEN_WEBHOOK_GIVE_UP_AFTER": "4",
               "PIXGEN_WEBHOOK_TIMEOUT": "3", "PIXGEN_RATE_LIMIT_PER_MINUTE": "0",
               "PIXGEN_MAX_CONCURRENT_JOBS": "0"}


# -- a receiver ------------------------------------------------------------------------------------------------
class Receiver(WebhookReceiver):
    """``pixgen.testing.WebhookReceiver``, with what these tests read from it."""

    def events(self, secret: str) -> list[dict]:
        """Every body received, each verified with the openai SDK and with standardwebhooks."""
        client = OpenAI(api_key="unused")
        verified = []
        for _, headers, body in list(self.received):
            event = client.webhooks.unwrap(body, headers, secret=secret)
            assert Webhook(secret).verify(body, headers) == json.loads(body)
            assert event.id == headers["webhook-id"] == json.loads(body)["id"]
            verified.append(json.loads(body))
        return verified

    def of_job(self, job_id: str) -> list[tuple[dict[str, str], bytes]]:
        """The requests (headers, raw body) about one job."""
        return [(headers, body) for _, headers, body in list(self.received)
                if json.loads(body)["data"].get("jobId", json.loads(body)["data"].get("id")) == job_id]


@pytest.fixture
def receiver():
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory):
    """``pixgen serve`` with one fake-engine worker, loopback allowed for webhooks, back-off in fractions of a
    second, given up after 4 s; the OpenAI surface's server webhook goes to a receiver of its own."""
    openai_receiver = Receiver().start()
    server = start_server(tmp_path_factory.mktemp("webhooks"), workers=1, ready=True, env={
        **WEBHOOK_ENV, "PIXGEN_WEBHOOK_URL": openai_receiver.url, "PIXGEN_WEBHOOK_SECRET": SERVER_SECRET})
    server.openai_receiver = openai_receiver
    yield server
    server.stop()
    openai_receiver.stop()


def new_key(database_url: str, credits: int = 100) -> tuple[dict[str, str], str, str]:
    """Headers of a new key, its id and its webhook secret."""
    db = connect(database_url, pool_size=1)
    try:
        record, secret = keys.create_key(db, credits=credits, name="webhooks")
        return {"Authorization": f"Bearer {secret}"}, record.id, keys.webhook_secret(db, record.id)
    finally:
        db.dispose()


def submit(url: str, headers: dict, **extra) -> str:
    answer = httpx.post(url + RUN, headers=headers, json={**SHORT, **extra}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobId"]


def job_json(url: str, headers: dict, job_id: str) -> dict:
    return httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()


# -- signing, without a server ---------------------------------------------------------------------------------
def test_signatures_verify_with_the_openai_sdk_and_standardwebhooks_with_either_secret_during_a_rotation():
    old, new = new_secret(), new_secret()
    body = json.dumps({"id": "evt_1", "object": "event", "created_at": 1, "type": "video.completed",
                       "data": {"id": "job_1"}}).encode()
    headers = signed_headers([new, old], "evt_1", int(time.time()), body)
    for secret in (old, new):
        event = OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)
        assert (event.type, event.data.id) == ("video.completed", "job_1")
        assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    with pytest.raises(Exception, match="signature"):
        OpenAI(api_key="unused").webhooks.unwrap(body + b" ", headers, secret=new)


# -- one server: the job API and the OpenAI surface --------------------------------------------------------------
def test_job_webhook_is_signed_with_the_keys_secret_and_sends_the_events_asked_for(hook_server, receiver):
    headers, _, secret = new_key(hook_server.database_url)
    job_id = submit(hook_server.url, headers, webhook_url=receiver.url, webhook_events=["started", "completed"])
    wait_for(lambda: len(receiver.of_job(job_id)) >= 2, timeout=60)
    # delivered by parallel sender threads: one job's events may arrive in either order (README says so)
    events = {e["type"]: e for e in receiver.events(secret)}
    assert sorted(events) == ["job.completed", "job.started"]
    started, completed = events["job.started"], events["job.completed"]
    assert started["data"]["status"] == "processing" and started["data"]["output"] is None
    assert completed["data"]["status"] == "completed" and completed["data"]["jobId"] == job_id
    video = httpx.get(completed["data"]["output"]["video"], timeout=10)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    def all_delivered():
        job = job_json(hook_server.url, headers, job_id)
        return all(d["state"] == "delivered" for d in job["webhook"]["deliveries"]) and job

    shown = wait_for(all_delivered, timeout=30)
    assert shown["webhook"]["url"] == receiver.url and shown["webhook"]["events"] == ["started", "completed"]
    assert sorted(d["id"] for d in shown["webhook"]["deliveries"]) == sorted(e["id"] for e in events.values())
    # another key's secret does not verify them
    with pytest.raises(Exception, match="signature"):
        receiver.events(new_secret())


def test_openai_form_jobs_go_to_the_servers_webhook_as_video_completed(hook_server):
    headers, _, _ = new_key(hook_server.database_url)
    client = OpenAI(api_key=headers["Authorization"][7:], base_url=hook_server.url + "/v1")
    video = client.videos.create(model="pixverse-v6", prompt="a paper boat", seconds="1", size="640x360")
    rec = hook_server.openai_receiver
    wait_for(lambda: rec.of_job(video.id), timeout=60)
    (sent_headers, body), = rec.of_job(video.id)
    event = client.webhooks.unwrap(body, sent_headers, secret=SERVER_SECRET)
    assert (event.type, event.data.id, event.object) == ("video.completed", video.id, "event")
    assert Webhook(SERVER_SECRET).verify(body, sent_headers)["data"] == {"id": video.id}


def test_a_receiver_down_then_up_gets_the_event_under_the_same_webhook_id(hook_server):
    headers, _, secret = new_key(hook_server.database_url)
    late = Receiver()  # not listening yet
    job_id = submit(hook_server.url, headers, webhook_url=late.url)

    def failed_twice():
        # An attempt is counted when it is claimed: two attempts with the next one still ahead have both failed
        # (with the second in flight, the receiver below could take it, and the delivery would show 2 attempts).
        shown = job_json(hook_server.url, headers, job_id)["webhook"]["deliveries"]
        return (shown and shown[0]["attempts"] >= 2 and (shown[0]["nextAttemptAt"] or 0) > time.time()
                and shown[0])

    first = wait_for(failed_twice, timeout=60, every=0.1)
    assert first["state"] == "pending" and first["lastError"]
    late.start()
    try:
        wait_for(lambda: late.received, timeout=40, every=0.1)
        (event,) = late.events(secret)
        assert event["id"] == first["id"] and event["type"] == "job.completed"
        shown = wait_for(lambda: (d := job_json(hook_server.url, headers, job_id)["webhook"]["deliveries"][0])
                         ["state"] == "delivered" and d, timeout=30)
        assert shown["attempts"] >= 3 and shown["lastStatus"] == 200
    finally:
        late.stop()


def test_a_receiver_that_never_comes_up_is_given_up_and_shown(hook_server):
    headers, _, _ = new_key(hook_server.database_url)
    job_id = submit(hook_server.url, headers, webhook_url=Receiver().url)
    gone = wait_for(lambda: (d := job_json(hook_server.url, headers, job_id)["webhook"]["deliveries"])
                    and d[0]["state"] == "failed" and d[0], timeout=60, every=0.2)
    assert gone["attempts"] >= 3 and gone["finishedAt"] and "Connect" in gone["lastError"]
    listed = pixgen("webhooks", "list", "--state", "failed", "--database-url", hook_server.database_url)
    assert listed.returncode == 0 and gone["id"] in listed.stdout


def test_jobs_made_from_a_finished_one_take_a_webhook_too(hook_server, receiver):
    """Extend, remix, retake and replay on the job API take webhook_url / webhook_events like run; a bad one is
    refused naming the field before anything is charged."""
    headers, _, secret = new_key(hook_server.database_url)
    source = submit(hook_server.url, headers)
    wait_for(lambda: job_json(hook_server.url, headers, source)["status"] == "completed", timeout=60)
    refused = httpx.post(f"{hook_server.url}/api/v1/jobs/{source}/remix", headers=headers, timeout=30,
                         json={"prompt": "a red boat", "webhook_url": receiver.url, "webhook_events": ["done"]})
    assert refused.status_code == 400 and refused.json()["field"] == "webhook_events", refused.text
    other = httpx.post(f"{hook_server.url}/api/v1/jobs/{source}/replay", headers=headers, timeout=30,
                       json={"seed": 3, "webhook_url": receiver.url})  # a replay makes the same video: no seed
    assert other.status_code == 400 and other.json()["field"] == "seed", other.text
    made = {}
    for route, body in (("remix", {"prompt": "a red boat"}), ("extend", {"duration": 1}),
                        ("retake", {"start": 0, "end": 1}), ("replay", {})):
        answer = httpx.post(f"{hook_server.url}/api/v1/jobs/{source}/{route}", headers=headers, timeout=30,
                            json={**body, "webhook_url": receiver.url, "webhook_events": ["completed", "failed"]})
        assert answer.status_code == 200, (route, answer.text)
        made[route] = answer.json()["jobId"]
    assert set(made) == {"remix", "extend", "retake", "replay"}  # the fake engine makes every kind of job
    wait_for(lambda: all(receiver.of_job(job_id) for job_id in made.values()), timeout=60)
    by_job = {e["data"]["jobId"]: e["type"] for e in receiver.events(secret)}
    assert {by_job[job_id] for job_id in made.values()} <= {"job.completed", "job.failed"}
    assert source not in by_job  # the source job asked for no webhook


@pytest.mark.parametrize("extra, field", [
    ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ({"webhook_url": "not a url"}, "webhook_url"),
    ({"webhook_url": "http://user:pw@example.com/hook"}, "webhook_url"),
    ({"webhook_url": "http://10.1.2.3/hook"}, "webhook_url"),  # private: the SSRF guard
    ({"webhook_url": "http://169.254.169.254/latest"}, "webhook_url"),
    ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_events": ["finished"]}, "webhook_events"),
    ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_events": "completed"}, "webhook_events"),
    ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_events": []}, "webhook_events"),
    ({"webhook_events": ["completed"]}, "webhook_events"),
])
def test_bad_webhook_url_or_events_is_400_naming_the_field_and_charges_nothing(api_server, extra, field):
    key = api_server.new_key(credits=50)
    headers = {"Authorization": f"Bearer {key}"}
    answer = httpx.post(api_server.url + RUN, headers=headers, json={**SHORT, **extra}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_request" and answer.json()["field"] == field
    listing = httpx.get(api_server.url + "/api/v1/jobs", headers=headers, timeout=10).json()
    assert listing["jobs"] == [] and listing["creditsRemaining"] == 50


# -- the CLI: secrets ----------------------------------------------------------------------------------------------
def pixgen_cli(*args: str) -> str:
    done = pixgen(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_create_prints_the_webhook_secret_before_the_key_which_stays_last_and_rotation_signs_with_both(
        tmp_path):
    url = f"sqlite:///{tmp_path / 'pixgen.db'}"
    lines = pixgen_cli("keys", "create", "--database-url", url, "--credits", "5").strip().splitlines()
    assert lines[-1].startswith("pxg_")
    (secret_line,) = [line for line in lines[:-1] if line.startswith("webhook_secret=")]
    first = secret_line.removeprefix("webhook_secret=")
    assert first.startswith("whsec_") and Webhook(first)  # base64 of 24 bytes: both libraries take it
    db = connect(url, pool_size=1)
    try:
        key_id = keys.list_keys(db)[0].id
        assert keys.webhook_secret(db, key_id) == first
        rotated = pixgen_cli("keys", "rotate-webhook-secret", key_id, "--database-url", url)
        second = rotated.strip().splitlines()[-1].removeprefix("webhook_secret=")
        assert second != first and pixgen_cli("keys", "webhook-secret", key_id, "--database-url", url).strip() == second
        assert keys.signing_secrets(db, key_id, time.time()) == [second, first]  # the grace period
        assert keys.signing_secrets(db, key_id, time.time() + 86401) == [second]
        pixgen_cli("keys", "rotate-webhook-secret", key_id, "--grace", "0", "--database-url", url)
        assert len(keys.signing_secrets(db, key_id, time.time())) == 1
    finally:
        db.dispose()


# -- crashes: a worker SIGKILLed mid-job, another right after its final move, no API node up meanwhile ---------
@pytest.mark.slow
def test_no_event_is_lost_when_workers_are_killed_and_no_api_node_runs_at_the_moves(tmp_path, receiver):
    env = {**WEBHOOK_ENV, "PIXGEN_LEASE_SECONDS": "2", "PIXGEN_MODEL": "steps=30,step_seconds=0.05,scale=0.25"}
    node = start_server(tmp_path, workers=0, env=env)
    db = connect(node.database_url, pool_size=1)
    procs: list[subprocess.Popen] = []
    try:
        headers, _, secret = new_key(node.database_url)
        first = start_worker(tmp_path, node.database_url, env=env, log_name="worker-1.log")
        procs.append(first)
        job_id = submit(node.url, headers, webhook_url=receiver.url, webhook_events=["started", "completed"])
        wait_for(lambda: job_json(node.url, headers, job_id)["progress"] > 0, timeout=60, every=0.05)
        os.kill(first.pid, signal.SIGKILL)  # mid-job: the lease runs out, the job is queued again
        node.stop()  # and no deliverer runs while the job starts again and ends
        sent_before = len(receiver.received)  # the first job.started, if the node sent it in time
        port = int(node.url.rsplit(":", 1)[1])

        def status() -> str:
            with db.read() as conn:
                return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one()

        second = start_worker(tmp_path, node.database_url, env=env, log_name="worker-2.log")
        procs.append(second)
        wait_for(lambda: status() == "completed", timeout=60, every=0.02)
        os.kill(second.pid, signal.SIGKILL)  # right after its final move
        assert len(receiver.received) == sent_before  # nothing sent meanwhile: the events wait in the outbox
        node = start_server(tmp_path, workers=0, env=env, port=port)
        wait_for(lambda: len(receiver.of_job(job_id)) >= 3, timeout=30)
        time.sleep(1)  # nothing more comes
        types = Counter(e["type"] for e in receiver.events(secret))
        assert types == {"job.started": 2, "job.completed": 1}  # one per attempt, each under its own id
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 3
    finally:
        for proc in procs:
            stop_process(proc)
        node.stop()
        db.dispose()


# -- two API nodes on PostgreSQL ---------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.slow
def test_two_api_nodes_on_postgres_deliver_each_event_once_per_id(pg_url, tmp_path, receiver):
    from pixgen.testing import fresh_postgres_database

    with fresh_postgres_database("pixgen_test_hooks") as url:
        procs = [spawn(["serve", "--workers", "0", "--port", str(free_port()), "--data-dir", str(tmp_path),
                        "--database-url", url], tmp_path / f"node-{i}.log", WEBHOOK_ENV) for i in range(2)]
        nodes = []
        db = connect(url, pool_size=2)
        try:
            for proc in procs:
                nodes.append(f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}")
            wait_for(lambda: all(_up(n) for n in nodes), timeout=60)
            procs.append(start_worker(tmp_path, url, env=WEBHOOK_ENV))
            headers, _, secret = new_key(url, credits=1000)
            every = ["started", "progress", "completed", "failed", "cancelled"]
            ids = [submit(nodes[i % 2], headers, webhook_url=receiver.url, webhook_events=every) for i in range(6)]

            def all_sent() -> bool:
                with db.read() as conn:
                    states = conn.execute(select(webhook_deliveries.c.state)
                                          .where(webhook_deliveries.c.job_id.in_(ids))).scalars().all()
                    done = conn.execute(select(jobs.c.status).where(jobs.c.id.in_(ids))).scalars().all()
                return done.count("completed") == 6 and states and all(s == "delivered" for s in states)

            wait_for(all_sent, timeout=120, every=0.3)
            with db.read() as conn:
                expected = set(conn.execute(select(webhook_deliveries.c.id)).scalars().all())
            received = Counter(r.headers["webhook-id"] for r in receiver.received)
            assert set(received) == expected and set(received.values()) == {1}
            assert Counter(e["type"] for e in receiver.events(secret))["job.completed"] == 6
            assert len(expected) > 12  # started + progress + completed of six jobs
        finally:
            for proc in procs:
                stop_process(proc)
            db.dispose()


def _up(node: str) -> bool:
    try:
        return httpx.get(node + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_delivery_is_written_with_the_event_it_announces_for_the_events_asked_only(db_url):
    """The store's side, on SQLite and PostgreSQL: one delivery row per wanted event, in the move's transaction,
    named by the event's id; OpenAI-form jobs get OpenAI's names (a cancelled video is video.failed)."""
    from pixgen.core.spec import parse_request
    from pixgen.jobs.events import job_history
    from pixgen.jobs.origin import ApiSurface, Origin
    from pixgen.jobs.store import JobStore, Outcome
    from pixgen.jobs.webhooks import Subscription

    db = connect(db_url, pool_size=2)
    try:
        store = JobStore(db, rate_limit_per_minute=0, max_concurrent_jobs=0)
        key, _ = keys.create_key(db, credits=100)
        request = parse_request({"prompt": "a kite", "duration": 1, "quality": "360p"})
        hook = Subscription("http://hooks.example.com/x", ("progress", "completed"))
        job = store.submit(key.id, request, cost=10, webhook=hook).job
        claim = store.claim("w1")
        store.heartbeat(job.id, claim.token, progress=50, stage="denoise")
        store.complete(job.id, claim.token, Outcome(video_file="v.mp4", thumb_file=None, width=640, height=360,
                                                    seconds=1.0, has_audio=False, seed=1, prompt="a kite",
                                                    original_prompt="a kite"))
        sent = deliveries.for_job(db, job.id)
        history = {e.id: e.kind.value for e in job_history(db, job.id)}
        assert [(history[d.id], d.event_type, d.signer, d.state) for d in sent] == [
            ("progress", "job.progress", "key", "pending"), ("completed", "job.completed", "key", "pending")]
        assert all(d.url == hook.url for d in sent)
        video = store.submit(key.id, request, cost=10, origin=Origin(surface=ApiSurface.OPENAI),
                             webhook=Subscription("http://ops/x")).job
        store.cancel(video.id, key.id)
        (cancelled,) = deliveries.for_job(db, video.id)
        assert (cancelled.event_type, cancelled.signer) == ("video.failed", "server")
        assert deliveries.for_job(db, store.submit(key.id, request, cost=10).job.id) == []  # no webhook
    finally:
        db.dispose()


def test_an_idempotency_key_reused_with_another_webhook_is_refused_and_charges_nothing(db):
    """The subscription is part of what an Idempotency-Key stands for: the same body with the same webhook is the
    same job; with another webhook (or none) it is 400 naming the header, and nothing more is charged."""
    from pixgen.core.spec import parse_request
    from pixgen.errors import InvalidRequest
    from pixgen.jobs.store import JobStore
    from pixgen.jobs.webhooks import Subscription

    store = JobStore(db, rate_limit_per_minute=0, max_concurrent_jobs=0)
    key, _ = keys.create_key(db, credits=100)
    request = parse_request({"prompt": "a kite", "duration": 1, "quality": "360p"})
    hook = Subscription("http://hooks.example.com/a", ("completed",))
    first = store.submit(key.id, request, cost=10, idempotency_key="k1", webhook=hook)
    again = store.submit(key.id, request, cost=10, idempotency_key="k1",
                         webhook=Subscription("http://hooks.example.com/a", ("completed",)))
    assert again.replayed and again.job.id == first.job.id
    for other in (Subscription("http://hooks.example.com/b", ("completed",)),
                  Subscription("http://hooks.example.com/a", ("failed",)), None):
        with pytest.raises(InvalidRequest) as info:
            store.submit(key.id, request, cost=10, idempotency_key="k1", webhook=other)
        assert info.value.field == "Idempotency-Key"
    assert store.credits(key.id) == 90


def test_claims_of_two_deliverers_never_overlap(db_url):
    """The claim itself, on SQLite and PostgreSQL: two deliverers claiming at once get disjoint rows."""
    db = connect(db_url, pool_size=4)
    migrate(db)
    try:
        now = time.time()
        with db.write() as conn:
            for i in range(40):
                conn.execute(webhook_deliveries.insert().values(
                    id=f"evt_{i:04d}", job_id="job_x", key_id="key_x", event_type="job.completed",
                    url="http://127.0.0.1:9/", signer="key", state="pending", attempts=0, next_attempt_at=now,
                    created_at=now))
        got: list[list[str]] = [[], []]
        barrier = threading.Barrier(2)

        def take(slot: int) -> None:
            barrier.wait()
            while claimed := deliveries.claim(db, time.time(), lease=60, limit=3, signers=("key",)):
                got[slot] += [c.delivery.id for c in claimed]

        threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not set(got[0]) & set(got[1]) and len(got[0]) + len(got[1]) == 40
    finally:
        with db.write() as conn:
            conn.execute(webhook_deliveries.delete())
        db.dispose()

