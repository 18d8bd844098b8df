"""Service benchmarks (issue 3), each against a real ``pixgen serve`` on loopback:

- ``--polls``: status polls per second, ``GET /api/v1/jobs/{id}`` of a pending and of a completed job (target
  ≥ 500/s on 2 cores), with ``wrk`` when installed. ``--baseline REF`` runs a second server from that git ref's
  ``src/`` and interleaves the rounds, so before/after share the same load; ``--postgres`` adds a server on a
  fresh PostgreSQL database.
- ``--first-step``: seconds from submit to the first finished denoising step with an idle worker (toy model,
  1 s 360p), seen by polling the job every 20 ms; median of ``--first-step-runs``, next to the same request's first
  step on the engine in this process (what the service adds is the difference).
- ``--overhead``: a 5 s 720p toy job through the API (submit → completed seen by the client) against the same
  request on the engine in this process with the model loaded (``pixgen generate``'s path), interleaved
  (target: service overhead ≤ 10%). Wall time, and CPU seconds (worker + API server against this process), which
  other load on a shared machine disturbs less.
- ``--rss``: the worker's RSS after each of ``--rss-jobs`` 1 s 360p jobs: first-10 median against last-10 median
  (target: flat within 5%).

No part flag runs them all. ::

    .venv/bin/python bench/service_bench.py [--polls] [--first-step] [--overhead] [--rss] [--baseline HEAD]
                                            [--json bench/results/service.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RUN,
    LocalServer,
    http_load,
    machine,
    median,
    new_key,
    postgres_database,
    source_tree,
    start_server,
    write_results,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

POLL_EVERY = 0.1  # how often the overhead client polls its job: ≤ 0.1 s late, a few % of one core on the server
SHORT = {"prompt": "rain on a tin roof at night", "duration": 1, "resolution": "360p", "seed": 7}
LONG = {"prompt": "A golden retriever running through a field of sunflowers", "duration": 5,
        "resolution": "720p", "aspect_ratio": "16:9", "seed": 42}


# -- helpers -----------------------------------------------------------------------------------------------------
def submit(client: httpx.Client, server: LocalServer, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(server.url + RUN, json=body)
    response.raise_for_status()
    return response.json()


def wait_done(client: httpx.Client, status_url: str, *, every: float = 0.05, timeout: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(status_url).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            if job["status"] != "completed":
                raise RuntimeError(f"job {job['jobId']} {job['status']}: {job.get('error')}")
            return job
        time.sleep(every)
    raise TimeoutError(status_url)


def complete_directly(database_url: str) -> None:
    """Claim the oldest pending job and complete it with a made-up result (the poll path of a finished job)."""
    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore, Outcome

    db = connect(database_url, pool_size=1)
    try:
        store = JobStore(db)
        claim = store.claim("bench")
        assert claim is not None
        store.complete(claim.job.id, claim.token, Outcome("bench.mp4", "bench.jpg", 640, 360, 1.0, True,
                                                           claim.job.seed, "bench", "bench"))
    finally:
        db.dispose()


def parse_short():
    from pixgen.core.spec import parse_request

    return parse_request({("quality" if k == "resolution" else k): v for k, v in SHORT.items()})


# -- status polls ------------------------------------------------------------------------------------------------
def bench_polls(seconds: float, connections: int, rounds: int, baseline: str | None,
                postgres: bool) -> dict[str, Any]:
    before = machine()
    with tempfile.TemporaryDirectory() as tmp, source_tree(baseline) as base_src, \
            postgres_database() if postgres else contextlib.nullcontext() as pg_url:
        # name → (source tree or None for this one, database URL or None for SQLite in the data folder)
        trees: dict[str, tuple[Path | None, str | None]] = {"current": (None, None)}
        if baseline:
            trees[f"baseline ({baseline})"] = (base_src, None)
        if postgres:
            if pg_url is None:
                raise SystemExit("--postgres: no PostgreSQL server at 127.0.0.1:5432")
            trees["current (postgres)"] = (None, pg_url)
        servers: dict[str, LocalServer] = {}
        targets: dict[str, dict[str, Any]] = {}
        try:
            for i, (name, (src, url)) in enumerate(trees.items()):
                server = servers[name] = start_server(Path(tmp) / str(i), workers=0, src=src, database_url=url)
                headers = {"Authorization": f"Bearer {new_key(server)}"}
                with httpx.Client(headers=headers, timeout=30) as client:
                    done = submit(client, server, SHORT)
                    complete_directly(server.database_url)
                    pending = submit(client, server, SHORT)
                    assert client.get(done["statusUrl"]).json()["output"]["video"]
                    assert client.get(pending["statusUrl"]).json()["queuePosition"] == 1
                targets[name] = {"headers": headers, "pending": pending["statusUrl"],
                                 "completed": done["statusUrl"]}
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"pending": [], "completed": []} for n in trees}
            for r in range(rounds):
                order = list(trees) if r % 2 == 0 else list(reversed(trees))
                for name in order:
                    for kind in ("pending", "completed"):
                        runs[name][kind].append(http_load(targets[name][kind], targets[name]["headers"],
                                                          seconds=seconds, connections=connections))
        finally:
            for server in servers.values():
                server.stop()
    out: dict[str, Any] = {"connections": connections, "seconds_per_run": seconds, "rounds": rounds,
                           "client": runs["current"]["pending"][0]["client"], "target_rps": 500}
    for name, kinds in runs.items():
        out[name] = {kind: {"rps_median": round(median([x["rps"] for x in xs]), 1), "rps": [x["rps"] for x in xs],
                            "p50_ms": xs[0].get("p50_ms"), "p99_ms": xs[0].get("p99_ms")}
                     for kind, xs in kinds.items()}
    if baseline:
        base = out[f"baseline ({baseline})"]
        out["speedup"] = {kind: round(out["current"][kind]["rps_median"] / base[kind]["rps_median"], 2)
                          for kind in ("pending", "completed")}
    out["machine_before"], out["machine_after"] = before, machine()
    return out


# -- submit → first denoising step -------------------------------------------------------------------------------
def first_step_in_process(engine, request, out: Path) -> float:
    """Seconds from ``engine.generate`` to its first finished denoising step (then the job is cancelled)."""
    from pixgen.errors import Cancelled

    seen: list[float] = []
    t0 = time.perf_counter()

    def on_progress(progress) -> None:
        if progress.stage == "denoise" and not seen:
            seen.append(time.perf_counter() - t0)

    with contextlib.suppress(Cancelled):
        engine.generate(request, out, on_progress, lambda: bool(seen))
    return seen[0]


def bench_first_step(server: LocalServer, client: httpx.Client, runs: int, engine) -> dict[str, Any]:
    before = machine()
    wait_done(client, submit(client, server, SHORT)["statusUrl"])  # warm-up
    request = parse_short()
    to_claim, to_step, local = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            time.sleep(1.0)  # the worker is idle, in its poll loop
            t0 = time.perf_counter()
            job = submit(client, server, SHORT)
            claimed = stepped = None
            while stepped is None:
                seen = client.get(job["statusUrl"]).json()
                now = time.perf_counter() - t0
                if claimed is None and seen["status"] != "pending":
                    claimed = now
                if seen["stage"] == "denoise" or seen["status"] in ("completed", "failed", "cancelled"):
                    stepped = now
                time.sleep(0.02)
            to_claim.append(claimed)
            to_step.append(stepped)
            wait_done(client, job["statusUrl"])
            local.append(first_step_in_process(engine, request, Path(tmp) / "first.mp4"))
    return {"job": "1 s 360p toy", "runs": runs, "observed_every_s": 0.02,
            "submit_to_first_step_s_median": round(median(to_step), 3),
            "submit_to_first_step_s": [round(x, 3) for x in to_step],
            "submit_to_processing_s_median": round(median(to_claim), 3),
            "in_process_to_first_step_s_median": round(median(local), 3),
            "in_process_to_first_step_s": [round(x, 3) for x in local],
            "machine_before": before, "machine_after": machine()}


# -- API against in-process --------------------------------------------------------------------------------------
def _cpu(proc) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def bench_overhead(server: LocalServer, client: httpx.Client, runs: int, engine) -> dict[str, Any]:
    """Wall time (what the target is about) and CPU seconds (less sensitive to other load on the machine) of the
    same job through the API and in this process; API CPU = the worker's + the API server's."""
    import psutil

    from pixgen.core.spec import parse_request

    before = machine()
    (worker_pid,) = server.worker_pids()
    worker, api_server = psutil.Process(worker_pid), psutil.Process(server.proc.pid)
    server_cpu: list[float] = []
    spec = {("quality" if k == "resolution" else k): v for k, v in LONG.items()}
    request = parse_request(spec)
    api, local, api_cpu, local_cpu, parts = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "local.mp4"

        def through_api() -> None:
            w0, s0 = _cpu(worker), _cpu(api_server)
            t0 = time.perf_counter()
            job = wait_done(client, submit(client, server, LONG)["statusUrl"], every=POLL_EVERY)
            api.append(time.perf_counter() - t0)
            server_cpu.append(_cpu(api_server) - s0)
            api_cpu.append(_cpu(worker) - w0 + server_cpu[-1])
            created, started, finished = job["createdAt"], job["startedAt"], job["completedAt"]
            parts.append({"queued_s": round(started - created, 3), "running_s": round(finished - started, 3),
                          "seen_after_s": round(created + api[-1] - finished, 3)})

        def in_process() -> None:
            c0 = time.process_time()
            t0 = time.perf_counter()
            engine.generate(request, out)
            local.append(time.perf_counter() - t0)
            local_cpu.append(time.process_time() - c0)

        for r in range(runs):
            for step in ((through_api, in_process) if r % 2 == 0 else (in_process, through_api)):
                step()
    a, b = median(api), median(local)
    pairs = [x / y for x, y in zip(api, local, strict=True)]
    cpu_pairs = [x / y for x, y in zip(api_cpu, local_cpu, strict=True)]
    return {"job": "5 s 720p toy, seed 42", "runs": runs, "client_poll_every_s": POLL_EVERY,
            "api_s_median": round(a, 2), "in_process_s_median": round(b, 2),
            "overhead_pct": round(100 * (a / b - 1), 1),
            "overhead_pct_median_of_pairs": round(100 * (median(pairs) - 1), 1),
            "cpu_overhead_pct_median_of_pairs": round(100 * (median(cpu_pairs) - 1), 1), "target_pct": 10.0,
            "api_s": [round(x, 2) for x in api], "in_process_s": [round(x, 2) for x in local],
            "api_cpu_s": [round(x, 2) for x in api_cpu], "in_process_cpu_s": [round(x, 2) for x in local_cpu],
            "api_server_cpu_s": [round(x, 2) for x in server_cpu],
            "api_parts": parts, "machine_before": before, "machine_after": machine()}


# -- worker RSS --------------------------------------------------------------------------------------------------
def bench_rss(server: LocalServer, client: httpx.Client, jobs: int) -> dict[str, Any]:
    import psutil

    before = machine()
    (pid,) = server.worker_pids()
    worker = psutil.Process(pid)
    samples = []
    t0 = time.perf_counter()
    for i in range(jobs):
        wait_done(client, submit(client, server, {**SHORT, "seed": i})["statusUrl"])
        samples.append(worker.memory_info().rss)
    assert server.worker_pids() == [pid], "the worker was restarted during the run"
    first, last = median(samples[:10]), median(samples[-10:])
    mib = [round(s / 2 ** 20, 1) for s in samples]
    return {"jobs": jobs, "job": "1 s 360p toy", "worker_env_MALLOC_ARENA_MAX": _env_of(worker, "MALLOC_ARENA_MAX"),
            "first10_median_mib": round(first / 2 ** 20, 1), "last10_median_mib": round(last / 2 ** 20, 1),
            "growth_pct": round(100 * (last / first - 1), 2), "target_pct": 5.0,
            "max_mib": max(mib), "rss_mib": mib, "wall_s": round(time.perf_counter() - t0, 1),
            "machine_before": before, "machine_after": machine()}


def _env_of(proc: Any, name: str) -> str | None:
    try:
        return proc.environ().get(name)
    except Exception:  # noqa: BLE001
        return None


# -- main --------------------------------------------------------------------------------------------------------
def with_worker_server(fn, *args: Any) -> dict[str, Any]:
    """Run ``fn(server, client, *args)`` against a fresh ``pixgen serve --workers 1`` (toy model)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), workers=1, ready=True)
        try:
            headers = {"Authorization": f"Bearer {new_key(server)}"}
            with httpx.Client(headers=headers, timeout=60) as client:
                return fn(server, client, *args)
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", action="store_true")
    parser.add_argument("--first-step", action="store_true")
    parser.add_argument("--overhead", action="store_true")
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--seconds", type=float, default=5, help="length of one poll run")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections polling")
    parser.add_argument("--rounds", type=int, default=3, help="poll runs per server and job state")
    parser.add_argument("--baseline", default=None, help="also poll a server built from this git ref (e.g. HEAD)")
    parser.add_argument("--postgres", action="store_true",
                        help="also poll a server on a fresh PostgreSQL database (127.0.0.1:5432)")
    parser.add_argument("--first-step-runs", type=int, default=9)
    parser.add_argument("--overhead-runs", type=int, default=3)
    parser.add_argument("--rss-jobs", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/service.json")
    args = parser.parse_args(argv)
    every = not (args.polls or args.first_step or args.overhead or args.rss)
    results: dict[str, Any] = {"machine": machine()}
    if every or args.polls:
        results["status_polls"] = bench_polls(args.seconds, args.connections, args.rounds, args.baseline,
                                                args.postgres)
    if every or args.first_step or args.overhead:
        def both(server: LocalServer, client: httpx.Client) -> None:
            from pixgen.engine import load_engine

            engine = load_engine("tiny")  # pixgen generate's engine, loaded once in this process
            with tempfile.TemporaryDirectory() as tmp:  # warm both up alike: one short job each
                engine.generate(parse_short(), Path(tmp) / "warm.mp4")
            wait_done(client, submit(client, server, SHORT)["statusUrl"])
            if every or args.first_step:
                results["submit_to_first_step"] = bench_first_step(server, client, args.first_step_runs, engine)
            if every or args.overhead:
                results["api_overhead_5s_720p"] = bench_overhead(server, client, args.overhead_runs, engine)
        with_worker_server(both)
    if every or args.rss:
        results["worker_rss"] = with_worker_server(bench_rss, args.rss_jobs)
    results["machine_end"] = machine()
    write_results("service", results, args.json)
    return results


if __name__ == "__main__":
    main()
