"""PostgreSQL fleet with two API nodes and separate worker processes, all real processes on loopback.

One fleet per module: nodes A and B (``pixgen serve --workers 0``, same database, same data folder as the shared
media store) and two ``pixgen worker`` processes. The tests run in order and share it:

1. the same Idempotency-Key and body sent to both nodes at once → one job, named by every answer, charged once;
   the same key with another body → 400 on either node (also when the two bodies race);
2. a cancel sent to node B stops a job submitted through node A on whichever worker runs it, within about one
   denoising step, refunded once; node B's SSE stream of node A's jobs ends with ``done``;
3. ``pixgen keys create`` / ``pixgen status`` with ``--database-url`` against PostgreSQL;
4. ``/health/ready`` on each node: 200 while a worker beats, 503 once none does (a stopped one at once, a
   SIGKILLed one when its heartbeat goes stale — a few seconds with a 3 s lease);
5. at the end: every accepted job completed exactly once (or cancelled where a test cancelled it), and the
   credits taken equal the cost of the completed jobs.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from test_service_api import parse_sse

from pixgen.jobs.db import connect
from pixgen.jobs.keys import create_key
from pixgen.jobs.schema import api_keys, jobs, workers
from pixgen.testing import free_port, fresh_postgres_database, spawn, stop_process, stop_server, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
RUN = "/api/v1/models/pixverse-v6/run"
SHORT = {"prompt": "rain on a tin roof", "duration": 1, "resolution": "360p"}
PRICE = 10  # credits per video at every quality (the default price)
LEASE = 3.0  # seconds; the worker heartbeat then beats every 0.75 s and goes stale after 2.25 s
ENV = {"PIXGEN_LEASE_SECONDS": str(LEASE), "PIXGEN_RATE_LIMIT_PER_MINUTE": "0", "PIXGEN_MAX_CONCURRENT_JOBS": "0"}
TERMINAL = ("completed", "failed", "cancelled")


def pixgen(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pixgen", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**os.environ, **ENV})
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Fleet:
    database_url: str
    data_dir: Path
    logs: Path
    nodes: list[str]  # base URLs of node A and node B
    node_procs: list[subprocess.Popen]
    worker_procs: list[subprocess.Popen]
    db: object
    initial_credits: dict[str, int] = field(default_factory=dict)  # key id → credits it was created with
    accepted: set[str] = field(default_factory=set)  # every job id an API answer named
    cancelled: set[str] = field(default_factory=set)  # the jobs the tests cancelled

    @property
    def a(self) -> str:
        return self.nodes[0]

    @property
    def b(self) -> str:
        return self.nodes[1]

    def new_key(self, credits: int) -> tuple[str, dict[str, str]]:
        """A key's id and the headers that use it."""
        record, secret = create_key(self.db, credits=credits, name="fleet-nodes")
        self.initial_credits[record.id] = credits
        return record.id, {"Authorization": f"Bearer {secret}"}

    def submit(self, node: str, headers: dict, body: dict) -> str:
        answer = httpx.post(node + RUN, headers=headers, json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        self.accepted.add(answer.json()["jobId"])
        return answer.json()["jobId"]

    def job(self, node: str, headers: dict, job_id: str) -> dict:
        return httpx.get(f"{node}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()

    def log(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def fleet(pg_url, tmp_path_factory):
    # A database of this module's own (pg_url's server, fresh name), so the worker and job counts are all ours.
    with fresh_postgres_database("pixgen_test_nodes") as url:
        yield from _run_fleet(url, tmp_path_factory.mktemp("fleet-nodes"))


def _run_fleet(url: str, root: Path):
    data_dir, logs = root / "shared", root / "logs"
    logs.mkdir()
    db = connect(url, pool_size=2)
    ports = [free_port(), free_port()]
    node_procs = [spawn(["serve", "--workers", "0", "--port", str(port), "--data-dir", str(data_dir),
                         "--database-url", url], logs / f"node-{i}.log", ENV) for i, port in enumerate(ports)]
    worker_procs = [spawn(["worker", "--data-dir", str(data_dir), "--database-url", url],
                          logs / f"worker-{i}.log", ENV) for i in range(2)]
    fl = Fleet(database_url=url, data_dir=data_dir, logs=logs, nodes=[f"http://127.0.0.1:{p}" for p in ports],
               node_procs=node_procs, worker_procs=worker_procs, db=db)
    try:
        def ready() -> bool:
            for proc in node_procs + worker_procs:
                assert proc.poll() is None, f"a fleet process exited with {proc.returncode}:\n{fl.log()}"
            try:
                answers = [httpx.get(node + "/health/ready", timeout=5) for node in fl.nodes]
            except httpx.HTTPError:
                return False
            return all(r.status_code == 200 and r.json()["workers"] == 2 for r in answers)

        wait_for(ready, timeout=240, every=0.5)
        yield fl
    finally:
        for proc in worker_procs:
            stop_process(proc)
        # probed, a node would keep accepting 10 s after its SIGTERM for a probe to see its 503; both at once
        stops = [threading.Thread(target=stop_server, args=(proc, node))
                 for proc, node in zip(node_procs, fl.nodes, strict=True)]
        for t in stops:
            t.start()
        for t in stops:
            t.join()
        db.dispose()


def _at_once(calls) -> list[httpx.Response]:
    """Run the zero-argument ``calls`` on threads released together; their responses in order."""
    barrier = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def go(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answers[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    return answers


def _post(node: str, headers: dict, body: dict, idempotency_key: str):
    return lambda: httpx.post(node + RUN, headers={**headers, "Idempotency-Key": idempotency_key}, json=body,
                              timeout=30)


def _watch(node: str, headers: dict, job_id: str, into: list) -> threading.Thread:
    def run() -> None:
        with httpx.stream("GET", f"{node}/api/v1/jobs/{job_id}/events", headers=headers, timeout=300) as stream:
            into.extend(parse_sse(stream.iter_lines()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _terminal(fl: Fleet, node: str, headers: dict, ids) -> dict[str, dict]:
    def check():
        found = {i: fl.job(node, headers, i) for i in ids}
        return all(j["status"] in TERMINAL for j in found.values()) and found

    return wait_for(check, timeout=240, every=0.5)


# -- 1. idempotency across nodes --------------------------------------------------------------------------------
def test_same_idempotency_key_sent_to_both_nodes_at_once_makes_one_job_charged_once(fleet):
    key_id, headers = fleet.new_key(credits=1000)
    named = []
    for rnd in range(4):
        ikey = f"same-{rnd}-{secrets.token_hex(4)}"
        body = {**SHORT, "prompt": f"rain on a tin roof, take {rnd}"}
        answers = _at_once([_post(node, headers, body, ikey) for node in (fleet.a, fleet.b, fleet.a, fleet.b)])
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        ids = {a.json()["jobId"] for a in answers}
        assert len(ids) == 1, f"round {rnd}: one key, one body, two nodes → {ids}"
        assert {a.json()["creditsRemaining"] for a in answers} == {1000 - PRICE * (rnd + 1)}
        named += ids
    fleet.accepted.update(named)
    with fleet.db.read() as conn:
        rows = conn.execute(select(jobs.c.id).where(jobs.c.key_id == key_id)).all()
    assert sorted(r.id for r in rows) == sorted(named)

    # node B streams a job submitted through node A to its end; node A reads what node B's answer named
    events: list = []
    watcher = _watch(fleet.b, headers, named[0], events)
    done = _terminal(fleet, fleet.a, headers, named)
    assert [j["status"] for j in done.values()] == ["completed"] * 4, fleet.log()
    watcher.join(timeout=30)
    assert events and events[-1][0] == "done" and events[-1][1]["status"] == "completed", events
    assert events[-1][1]["output"]["video"].startswith(f"{fleet.b}/media/{named[0]}/video.mp4?exp=")
    listing = httpx.get(f"{fleet.b}/api/v1/jobs", headers=headers).json()
    assert listing["creditsRemaining"] == 1000 - PRICE * 4


def test_same_idempotency_key_with_another_body_is_400_on_either_node(fleet):
    _, headers = fleet.new_key(credits=100)
    ikey = f"body-{secrets.token_hex(4)}"
    first = _post(fleet.a, headers, SHORT, ikey)()
    assert first.status_code == 200, first.text
    fleet.accepted.add(first.json()["jobId"])
    other = {**SHORT, "prompt": "snow on a tin roof"}
    for node in fleet.nodes:
        answer = _post(node, headers, other, ikey)()
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "invalid_request" and answer.json()["field"] == "Idempotency-Key"
        again = _post(node, headers, SHORT, ikey)()  # the original body still replays
        assert again.status_code == 200 and again.json()["jobId"] == first.json()["jobId"]

    # two bodies under one new key, racing on the two nodes: one body wins everywhere, the other is 400
    ikey = f"race-{secrets.token_hex(4)}"
    x, y = {**SHORT, "prompt": "hail on a tin roof"}, {**SHORT, "prompt": "sun on a tin roof"}
    answers = _at_once([_post(fleet.a, headers, x, ikey), _post(fleet.a, headers, x, ikey),
                        _post(fleet.b, headers, y, ikey), _post(fleet.b, headers, y, ikey)])
    codes = [a.status_code for a in answers]
    assert codes in ([200, 200, 400, 400], [400, 400, 200, 200]), [a.text for a in answers]
    won = {a.json()["jobId"] for a in answers if a.status_code == 200}
    assert len(won) == 1
    fleet.accepted.update(won)
    with fleet.db.read() as conn:
        count = conn.execute(select(jobs.c.id).where(jobs.c.idempotency_key == ikey)).all()
    assert len(count) == 1
    assert httpx.get(f"{fleet.b}/api/v1/jobs", headers=headers).json()["creditsRemaining"] == 100 - 2 * PRICE
    _terminal(fleet, fleet.b, headers, [first.json()["jobId"], *won])


# -- 2. cancel and SSE across nodes, status while jobs run ------------------------------------------------------
def test_cancel_on_node_b_stops_a_job_from_node_a_within_about_a_step(fleet, tmp_path):
    _, headers = fleet.new_key(credits=100)
    # long: 3 denoising steps of a few seconds each; medium: runs to the end (at 360p its denoising still lasts
    # seconds, its decoding less than the long one's cancel and the short one after it); short: waits in the queue
    # meanwhile
    long_id = fleet.submit(fleet.a, headers, {**SHORT, "duration": 2, "resolution": "720p"})
    medium_id = fleet.submit(fleet.a, headers, {**SHORT, "duration": 2})
    wait_for(lambda: all(fleet.job(fleet.b, headers, i)["status"] == "processing" for i in (long_id, medium_id)),
             timeout=60, every=0.1)
    short_id = fleet.submit(fleet.a, headers, SHORT)
    streams: dict[str, list] = {long_id: [], medium_id: []}
    watchers = [_watch(fleet.b, headers, i, streams[i]) for i in streams]

    # pixgen status, while both workers are busy and one job waits
    out = pixgen("status", "--database-url", fleet.database_url, cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0] == "queue: 1 pending, 2 running", out
    with fleet.db.read() as conn:
        live = {r.id for r in conn.execute(select(workers.c.id).where(workers.c.stopped.is_(False))).all()}
        on = dict(conn.execute(select(jobs.c.id, jobs.c.worker_id).where(jobs.c.id.in_([long_id, medium_id]))).all())
    running = {line.split()[0]: line.split()[-1] for line in lines[1:3]}
    assert running == on and set(on.values()) == live, out
    worker_lines = [line for line in lines[4:] if line.startswith("  ") and not line.startswith("    ")][:2]
    assert lines[3] == "workers: 2 live" and {line.split()[0] for line in worker_lines} == live, out

    # cancel the long job through node B while its last denoising step (of 3) runs: the worker stops at its next
    # check, before any output is written, and the job is refunded once
    seen: dict[int, float] = {}

    def in_last_step() -> bool:
        job = fleet.job(fleet.b, headers, long_id)
        assert job["status"] == "processing", job
        seen.setdefault(job["progress"], time.monotonic())
        return job["progress"] >= 52  # step 2 of 3 done

    wait_for(in_last_step, timeout=120, every=0.05)
    step = seen[52] - seen[30] if {30, 52} <= set(seen) else float("nan")
    started = time.monotonic()
    answer = httpx.post(f"{fleet.b}/api/v1/jobs/{long_id}/cancel", headers=headers, timeout=60).json()
    final = wait_for(lambda: (j := fleet.job(fleet.b, headers, long_id))["status"] in TERMINAL and j,
                     timeout=60, every=0.05)
    took = time.monotonic() - started
    fleet.cancelled.add(long_id)
    assert final["status"] == "cancelled" and final["refunded"] and final["output"] is None, final
    assert answer["status"] in ("processing", "cancelled")
    # stopped at the next look at the cancel flag: the end of the running step, or (when the worker's heartbeat
    # brings the flag only after that step has ended, as on a loaded CI machine) the first decode tile
    assert final["stage"] in ("denoise", "decode") and final["progress"] < 100, final
    assert took < 30, f"cancel took {took:.1f} s"
    assert not list((fleet.data_dir / "media").glob(f"{long_id}-*"))  # the stopped attempt left no file

    done = _terminal(fleet, fleet.b, headers, [medium_id, short_id])
    assert [j["status"] for j in done.values()] == ["completed"] * 2, fleet.log()
    for w in watchers:
        w.join(timeout=30)
    assert streams[long_id][-1][0] == "done" and streams[long_id][-1][1]["status"] == "cancelled"
    assert streams[medium_id][-1][0] == "done" and streams[medium_id][-1][1]["status"] == "completed"
    stages = [data["stage"] for name, data in streams[medium_id] if name == "progress"]
    assert "denoise" in stages  # node B saw the progress written by a worker
    assert httpx.get(f"{fleet.a}/api/v1/jobs", headers=headers).json()["creditsRemaining"] == 100 - 2 * PRICE
    print(f"\ncancel through node B: stopped in {took:.2f} s (one denoising step: {step:.2f} s)")


# -- 3. keys and status on PostgreSQL -------------------------------------------------------------------------
def test_keys_create_and_list_with_a_database_url(fleet, tmp_path):
    out = pixgen("keys", "create", "--database-url", fleet.database_url, "--credits", "30", "--name", "ops",
                 cwd=tmp_path)
    secret = out.strip().splitlines()[-1]
    key_id = re.search(r"created (key_\w+)", out).group(1)
    fleet.initial_credits[key_id] = 30
    headers = {"Authorization": f"Bearer {secret}"}
    for node in fleet.nodes:  # both API nodes know the key at once
        assert httpx.get(f"{node}/api/v1/jobs", headers=headers).json()["creditsRemaining"] == 30
    job_id = fleet.submit(fleet.b, headers, SHORT)
    listing = pixgen("keys", "list", "--database-url", fleet.database_url, cwd=tmp_path)
    assert re.search(rf"{key_id}\s+\S+\s+20 credits\s+ops", listing), listing
    assert _terminal(fleet, fleet.a, headers, [job_id])[job_id]["status"] == "completed"
    assert not (tmp_path / "data").exists(), "keys/status must not create a data folder where they are run"


# -- 4. readiness on each node ----------------------------------------------------------------------------------
def test_ready_on_each_node_follows_the_worker_heartbeats(fleet, tmp_path):
    for node in fleet.nodes:
        answer = httpx.get(node + "/health/ready")
        assert answer.status_code == 200 and answer.json()["workers"] == 2, answer.text
    with fleet.db.read() as conn:  # nothing is left running on a worker about to be killed
        busy = conn.execute(select(jobs.c.id).where(jobs.c.status.in_(["pending", "processing"]))).all()
    assert not busy

    stopped, killed = fleet.worker_procs
    stop_process(stopped)  # a clean stop marks its row stopped: not counted from then on
    for node in fleet.nodes:
        answer = httpx.get(node + "/health/ready")
        assert answer.status_code == 200 and answer.json()["workers"] == 1, answer.text

    stop_process(killed, signal.SIGKILL)  # its row stays, its heartbeat goes stale
    started = time.monotonic()
    wait_for(lambda: all(httpx.get(node + "/health/ready").status_code == 503 for node in fleet.nodes),
             timeout=20, every=0.1)
    stale = time.monotonic() - started
    assert stale <= 4 * LEASE, f"a dead worker counted as live for {stale:.1f} s with a {LEASE} s lease"
    for node in fleet.nodes:
        answer = httpx.get(node + "/health/ready")
        assert answer.json() == {"status": "unavailable", "reason": "no live worker", "workers": 0}

    # status with no worker: the queue grows, nothing runs; a cancel through the other node empties it
    _, headers = fleet.new_key(credits=10)
    waiting = fleet.submit(fleet.a, headers, SHORT)
    out = pixgen("status", "--database-url", fleet.database_url, cwd=tmp_path)
    assert out.splitlines() == ["queue: 1 pending, 0 running", "workers: 0 live",
                                "webhooks: 0 pending, 0 delivered, 0 given up (pixgen webhooks list)"], out
    assert not (tmp_path / "data").exists()  # status signs nothing: no data folder where it runs
    cancelled = httpx.post(f"{fleet.b}/api/v1/jobs/{waiting}/cancel", headers=headers).json()
    fleet.cancelled.add(waiting)
    assert cancelled["status"] == "cancelled" and cancelled["refunded"]
    print(f"\n/health/ready: 503 on both nodes {stale:.2f} s after the last worker was SIGKILLed")


# -- 5. the books ----------------------------------------------------------------------------------------------
def test_every_accepted_job_ran_once_and_credits_match_completed_jobs(fleet):
    with fleet.db.read() as conn:
        rows = conn.execute(select(jobs)).mappings().all()
        balances = dict(conn.execute(select(api_keys.c.id, api_keys.c.credits)).all())
    assert {r["id"] for r in rows} == fleet.accepted  # every job in the database was answered to someone
    for row in rows:
        if row["id"] in fleet.cancelled:
            assert row["status"] == "cancelled" and row["refunded"] and not row["video_file"], dict(row)
        else:
            assert row["status"] == "completed" and not row["refunded"] and row["video_file"], dict(row)
            files = list((fleet.data_dir / "media").glob(f"{row['id']}-*.mp4"))
            assert [f.name for f in files] == [row["video_file"]]
    assert set(balances) == set(fleet.initial_credits)
    for key_id, initial in fleet.initial_credits.items():
        spent = sum(r["credit_cost"] for r in rows if r["key_id"] == key_id and r["status"] == "completed")
        assert balances[key_id] == initial - spent, key_id
