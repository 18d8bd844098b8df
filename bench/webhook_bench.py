"""Webhook and fair-queue benchmarks (issue 11), against a real ``pixgen serve`` on loopback with the fake engine
(jobs take a fraction of a second, so what is timed is the service, not the model):

- ``--latency``: ``--jobs`` jobs with ``webhook_url``, one after another; for each, the seconds from the job's
  ``completedAt`` to the receiver getting ``job.completed`` (deliverer poll: 0.5 s while idle).
- ``--outage``: the receiver is down while ``--jobs`` jobs complete and for ``--down`` seconds more; then it comes
  up. Seconds from its start to the last event, how many events arrived, and how many arrived twice (at-least-once:
  a retry under the same ``webhook-id``). Retries back off from 1 s here (``PIXGEN_WEBHOOK_RETRY_BASE``).
- ``--fair``: key A queues ``--batch`` jobs, then key B submits one: B's queue position at once, and how many of
  A's jobs still waiting then were started ahead of it (fair order: at most one round, one job; first-come order
  would be all of them).

No part flag runs them all. ::

    .venv/bin/python bench/webhook_bench.py [--latency] [--outage] [--fair] [--jobs 20] [--postgres]
                                            [--json bench/results/webhooks.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RUN, machine, median, new_key, postgres_database, start_server, write_results

from pixgen.testing import WebhookReceiver, wait_for

SHORT = {"prompt": "a lighthouse at dusk", "duration": 1, "resolution": "360p"}
ENV = {"PIXGEN_ENGINE": "pixgen.testing:FAKE_BACKEND", "PIXGEN_MODEL": "steps=2,step_seconds=0.02,scale=0.1",
       "PIXGEN_FETCH_ALLOW_HOSTS": "127.0.0.1", "PIXGEN_WEBHOOK_RETRY_BASE": "1", "PIXGEN_WEBHOOK_RETRY_MAX": "2",
       "PIXGEN_RATE_LIMIT_PER_MINUTE": "0", "PIXGEN_MAX_CONCURRENT_JOBS": "0"}


def arrivals(receiver: WebhookReceiver) -> list[tuple[float, str, str]]:
    """(arrival time, webhook-id, job id) of everything the receiver got."""
    return [(r.at, r.headers["webhook-id"], json.loads(r.body)["data"]["jobId"]) for r in list(receiver.received)]


def submit(client: httpx.Client, url: str, headers: dict[str, str], **extra: Any) -> str:
    answer = client.post(url + RUN, headers=headers, json={**SHORT, **extra})
    answer.raise_for_status()
    return answer.json()["jobId"]


def job(client: httpx.Client, url: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return client.get(f"{url}/api/v1/jobs/{job_id}", headers=headers).json()


def completed(client: httpx.Client, url: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return wait_for(lambda: (j := job(client, url, headers, job_id))["status"] == "completed" and j,
                    timeout=120, every=0.02)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_latency(server, client: httpx.Client, jobs: int) -> dict[str, Any]:
    receiver = WebhookReceiver().start()
    headers = {"Authorization": f"Bearer {new_key(server)}"}
    try:
        done = {}
        for _ in range(jobs):
            job_id = submit(client, server.url, headers, webhook_url=receiver.url, webhook_events=["completed"])
            done[job_id] = completed(client, server.url, headers, job_id)["completedAt"]
        wait_for(lambda: len({job_id for _, _, job_id in arrivals(receiver)}) >= jobs, timeout=60, every=0.05)
        first = {}
        for at, _, job_id in arrivals(receiver):
            first.setdefault(job_id, at)
        lags = [first[j] - done[j] for j in done]
    finally:
        receiver.stop()
    return {"jobs": jobs, "median_s": round(median(lags), 3), "p95_s": round(percentile(lags, 0.95), 3),
            "max_s": round(max(lags), 3)}


def bench_outage(server, client: httpx.Client, jobs: int, down: float) -> dict[str, Any]:
    receiver = WebhookReceiver()  # not started: connections are refused
    headers = {"Authorization": f"Bearer {new_key(server)}"}
    ids = [submit(client, server.url, headers, webhook_url=receiver.url, webhook_events=["completed"])
           for _ in range(jobs)]
    for job_id in ids:
        completed(client, server.url, headers, job_id)
    time.sleep(down)
    up = time.time()
    receiver.start()
    try:
        wait_for(lambda: {job_id for _, _, job_id in arrivals(receiver)} >= set(ids), timeout=120, every=0.05)
        last = max(min(at for at, _, j in arrivals(receiver) if j == job_id) for job_id in ids)
        time.sleep(1.0)  # anything sent twice arrives now
        hook_ids = [hook_id for _, hook_id, _ in arrivals(receiver)]
    finally:
        receiver.stop()
    return {"jobs": jobs, "down_s": down, "all_delivered_after_up_s": round(last - up, 3),
            "received": len(hook_ids), "distinct_webhook_ids": len(set(hook_ids)),
            "duplicates": len(hook_ids) - len(set(hook_ids))}


def bench_fair(server, client: httpx.Client, batch: int) -> dict[str, Any]:
    a = {"Authorization": f"Bearer {new_key(server)}"}
    b = {"Authorization": f"Bearer {new_key(server)}"}
    batch_ids = [submit(client, server.url, a) for _ in range(batch)]
    single = submit(client, server.url, b)
    position = job(client, server.url, b, single).get("queuePosition")
    mine = completed(client, server.url, b, single)
    batch_jobs = [completed(client, server.url, a, job_id) for job_id in batch_ids]
    # A's jobs a worker started after B's job was queued and before it started: the turns B waited
    ahead = sum(mine["createdAt"] < j["startedAt"] < mine["startedAt"] for j in batch_jobs)
    waiting = sum(j["startedAt"] > mine["createdAt"] for j in batch_jobs)
    return {"batch": batch, "batch_jobs_not_started_when_it_came": waiting,
            "single_job_queue_position": position, "batch_jobs_started_ahead_of_it": ahead}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--outage", action="store_true")
    parser.add_argument("--fair", action="store_true")
    parser.add_argument("--jobs", type=int, default=20, help="jobs for --latency (and a quarter for --outage)")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the receiver stays down after the jobs")
    parser.add_argument("--batch", type=int, default=30, help="jobs key A queues in --fair")
    parser.add_argument("--postgres", action="store_true", help="on a fresh PostgreSQL database, not SQLite")
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/webhooks.json")
    args = parser.parse_args(argv)
    parts = {name for name in ("latency", "outage", "fair") if getattr(args, name)} or {"latency", "outage", "fair"}

    results: dict[str, Any] = {"machine": machine(), "database": "postgresql" if args.postgres else "sqlite"}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_database()) if args.postgres else None
        if args.postgres and database_url is None:
            parser.error("--postgres: no PostgreSQL server on 127.0.0.1:5432")
        server = start_server(Path(tmp), workers=1, ready=True, env=ENV, database_url=database_url)
        try:
            with httpx.Client(timeout=30) as client:
                if "latency" in parts:
                    results["latency"] = bench_latency(server, client, args.jobs)
                    print("latency", results["latency"], flush=True)
                if "outage" in parts:
                    results["outage"] = bench_outage(server, client, max(1, args.jobs // 4), args.down)
                    print("outage", results["outage"], flush=True)
                if "fair" in parts:
                    results["fair"] = bench_fair(server, client, args.batch)
                    print("fair", results["fair"], flush=True)
        finally:
            server.stop()
    write_results("webhooks", results, args.json)
    return results


if __name__ == "__main__":
    main()
