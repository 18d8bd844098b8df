"""Fleet benchmarks (issue 5), on PostgreSQL (a fresh ``pixgen_bench_<random>`` database on 127.0.0.1:5432,
dropped afterwards) and SQLite:

- ``--claims``: claim throughput, jobs/s with 1, 2 and 4 worker processes (``--worker-counts``) on a queue of
  no-op-fast jobs.
  ``worker``: the real worker loop (``pixgen.jobs.worker.Worker``: claim, lease thread, progress write, thumbnail,
  complete) with an engine that copies a tiny MP4; ``store``: only the store calls a worker makes per job (claim,
  one heartbeat with progress, complete), the ceiling of the database side.
- ``--kill``: a ``pixgen worker`` (toy model, ``--lease-seconds``) running a 5 s 720p job is SIGKILLed mid-denoise;
  seconds from the kill to the job ``processing`` again under another worker (target ≤ lease + 5 s). ``cold``: the
  other worker is started right after the kill (its model load overlaps the lease); ``warm``: it was already
  running, idle.

No part flag runs both. ::

    .venv/bin/python bench/fleet_bench.py [--claims] [--kill] [--jobs 200] [--worker-counts 1,2,4]
                                          [--lease-seconds 5] [--json bench/results/fleet.json]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, postgres_database, start_worker, write_results

from pixgen.testing import stop_process

os.environ.setdefault("HF_HUB_OFFLINE", "1")
WORKER_COUNTS = (1, 2, 4)
TEMPLATE = "template.mp4"


# -- claim throughput --------------------------------------------------------------------------------------------
class CopyEngine:
    """A no-op-fast engine: one progress event, then a copy of a tiny ready-made MP4 (cheaper than
    ``pixgen.testing.FakeEngine``, which encodes each video, so the claim path is what is measured)."""

    from pixgen.testing import FAKE_CAPABILITIES as capabilities

    def __init__(self, template: Path) -> None:
        self.data = template.read_bytes()

    def generate(self, request, out_path, on_progress, should_cancel, on_preview=None):
        from pixgen.core.progress import Progress

        on_progress(Progress("denoise", 1, 1))
        Path(out_path).write_bytes(self.data)
        from pixgen.engine.base import GenerationResult

        return GenerationResult(path=Path(out_path), width=64, height=64, num_frames=1, seconds=1 / 24,
                                has_audio=False, seed=request.seed or 0, prompt=request.prompt,
                                original_prompt=request.prompt)


def make_template(path: Path) -> None:
    import numpy as np

    from pixgen.media.mp4 import Mp4Writer

    with Mp4Writer(path, 64, 64) as writer:
        writer.write_frames(np.full((1, 64, 64, 3), 128, np.uint8))


def _claim_process(mode: str, database_url: str, data_dir: str, index: int, ready, go, stop) -> None:
    """One worker process: connect, say ready, wait for ``go``, then work until ``stop``."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from pixgen.settings import Settings

    settings = Settings(data_dir=Path(data_dir), database_url=database_url, max_concurrent_jobs=0,
                        rate_limit_per_minute=0)
    if mode == "worker":
        from pixgen.jobs.worker import Worker

        def engine_factory() -> CopyEngine:  # called by Worker.run once connected and migrated
            engine = CopyEngine(Path(data_dir) / TEMPLATE)
            ready.put(index)
            go.wait()
            return engine

        worker = Worker(settings, engine_factory=engine_factory, worker_id=f"bench-{index}")
        worker.stop = stop  # a multiprocessing Event: the parent ends every worker at once
        worker.run()
        return
    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore, Outcome

    db = connect(database_url, pool_size=1)
    store = JobStore.from_settings(db, settings)
    outcome = Outcome(TEMPLATE, None, 64, 64, 1 / 24, False, 1, "noop", "noop")
    ready.put(index)
    go.wait()
    while not stop.is_set():
        claim = store.claim(f"bench-{index}")
        if claim is None:
            time.sleep(0.01)
            continue
        store.heartbeat(claim.job.id, claim.token, progress=50, stage="denoise")
        store.complete(claim.job.id, claim.token, outcome)
    db.dispose()


def claim_throughput(database_url: str, mode: str, workers: int, jobs: int, data_dir: Path) -> dict[str, Any]:
    from sqlalchemy import func, select, text

    from pixgen.core.spec import parse_request
    from pixgen.jobs.db import connect, migrate
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.schema import jobs as jobs_table
    from pixgen.jobs.store import JobStore

    db = connect(database_url, pool_size=1)
    migrate(db)
    with db.write() as conn:  # every run starts from an empty queue
        conn.execute(text("DELETE FROM jobs"))
        conn.execute(text("DELETE FROM workers"))
    ctx = mp.get_context("spawn")
    ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_claim_process, args=(mode, database_url, str(data_dir), i, ready, go, stop))
             for i in range(workers)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=300)
        store = JobStore(db, max_concurrent_jobs=0, rate_limit_per_minute=0)
        key, _ = create_key(db, credits=10 ** 9)
        request = parse_request({"prompt": "noop", "duration": 1, "quality": "360p", "seed": 1})
        for _ in range(jobs):
            store.submit(key.id, request, cost=1)
        by_status = select(jobs_table.c.status, func.count()).group_by(jobs_table.c.status)
        started = time.perf_counter()
        go.set()
        while True:
            with db.read() as conn:
                counts = dict(conn.execute(by_status).all())
            if counts.get("failed"):  # a broken engine: say so at once instead of waiting out the timeout
                with db.read() as conn:
                    error = conn.execute(select(jobs_table.c.error_message).where(
                        jobs_table.c.status == "failed").limit(1)).scalar_one()
                raise RuntimeError(f"{counts['failed']} jobs failed in the claim benchmark: {error}")
            done = counts.get("completed", 0)
            if done >= jobs:
                break
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"{done}/{jobs} jobs done after 600 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        go.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        db.dispose()
    return {"jobs": jobs, "seconds": round(elapsed, 2), "jobs_per_s": round(jobs / elapsed, 1)}


def bench_claims(jobs: int, backends: dict[str, str | None],
                 worker_counts: tuple[int, ...] = WORKER_COUNTS) -> dict[str, Any]:
    out: dict[str, Any] = {"jobs_per_run": jobs, "machine_before": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        (data_dir / "media").mkdir()
        make_template(data_dir / TEMPLATE)
        for backend, url in backends.items():
            if url is None:
                out[backend] = {"skipped": "no PostgreSQL server at 127.0.0.1:5432"}
                continue
            out[backend] = {mode: {f"{n}_workers": claim_throughput(url, mode, n, jobs, data_dir)
                                   for n in worker_counts} for mode in ("worker", "store")}
    out["machine_after"] = machine()
    return out


# -- killed worker -----------------------------------------------------------------------------------------------
def _job_row(db, job_id: str):
    from sqlalchemy import select

    from pixgen.jobs.schema import jobs

    with db.read() as conn:
        return conn.execute(select(jobs.c.status, jobs.c.stage, jobs.c.worker_id, jobs.c.attempts)
                            .where(jobs.c.id == job_id)).first()


def _wait(predicate, timeout: float, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not true within {timeout} s")


def _worker_ready(db, pid: int) -> bool:
    from pixgen.jobs.fleet import live_workers

    return any(w.pid == pid for w in live_workers(db))


def kill_recovery(database_url: str, lease: float, scenario: str, data_dir: Path) -> dict[str, Any]:
    from pixgen.core.spec import parse_request
    from pixgen.jobs.db import connect, migrate
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.store import JobStore

    db = connect(database_url, pool_size=1)
    migrate(db)
    store = JobStore(db, max_concurrent_jobs=0, rate_limit_per_minute=0)
    key, _ = create_key(db, credits=10 ** 6)
    args = ("--lease-seconds", str(lease))
    first = start_worker(data_dir, database_url, args=args)
    second = None
    try:
        _wait(lambda: _worker_ready(db, first.pid), timeout=600, every=0.2)
        if scenario == "warm":
            second = start_worker(data_dir, database_url, args=args)
            _wait(lambda: _worker_ready(db, second.pid), timeout=600, every=0.2)
        job = store.submit(key.id, parse_request({"prompt": "a slow pan over a harbour at dawn", "duration": 5,
                                                  "quality": "720p", "seed": 3}), cost=1).job
        row = _wait(lambda: (r := _job_row(db, job.id)) is not None and r.stage == "denoise" and r, timeout=600)
        if f"-{first.pid}-" not in row.worker_id:  # the warm spare took it: swap roles
            first, second = second, first
        os.kill(first.pid, signal.SIGKILL)
        killed = time.perf_counter()
        first.wait()
        if second is None:
            second = start_worker(data_dir, database_url, args=args)
        seen_pending = None

        def running_again():
            nonlocal seen_pending
            r = _job_row(db, job.id)
            if r.status == "pending" and seen_pending is None:
                seen_pending = time.perf_counter() - killed
            return r.status == "processing" and f"-{second.pid}-" in (r.worker_id or "") and r
        row = _wait(running_again, timeout=600)
        recovered = time.perf_counter() - killed
        store.cancel(job.id)  # the rest of the job is not the measurement
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_process(proc)
        db.dispose()
    return {"scenario": scenario, "lease_s": lease, "kill_to_processing_again_s": round(recovered, 2),
            "kill_to_pending_seen_s": round(seen_pending, 2) if seen_pending is not None else None,
            "attempts": row.attempts, "target_s": lease + 5, "meets_target": recovered <= lease + 5}


def bench_kill(lease: float, backends: dict[str, str | None], runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"job": "5 s 720p toy, killed mid-denoise", "machine_before": machine()}
    for backend, url in backends.items():
        if url is None:
            out[backend] = {"skipped": "no PostgreSQL server at 127.0.0.1:5432"}
            continue
        results = {}
        for scenario in ("warm", "cold"):
            tries = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as tmp:
                    tries.append(kill_recovery(url, lease, scenario, Path(tmp)))
            results[scenario] = {"median_s": median([t["kill_to_processing_again_s"] for t in tries]), "runs": tries}
        out[backend] = results
    out["machine_after"] = machine()
    return out


# -- main --------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--claims", action="store_true")
    parser.add_argument("--kill", action="store_true")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per claim-throughput run")
    parser.add_argument("--worker-counts", default=",".join(map(str, WORKER_COUNTS)),
                        help="worker processes per claim-throughput run, comma-separated (default 1,2,4)")
    parser.add_argument("--lease-seconds", type=float, default=5.0)
    parser.add_argument("--kill-runs", type=int, default=1, help="runs per kill scenario and backend")
    parser.add_argument("--backends", default="postgres,sqlite", help="comma-separated: postgres, sqlite")
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/fleet.json")
    args = parser.parse_args(argv)
    every = not (args.claims or args.kill)
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, Any] = {"machine": machine()}
    with postgres_database() as pg_url, tempfile.TemporaryDirectory() as tmp:
        urls = {"postgres": pg_url, "sqlite": f"sqlite:///{Path(tmp) / 'fleet.db'}"}
        backends = {b: urls[b] for b in wanted}
        if every or args.claims:
            counts = tuple(int(n) for n in args.worker_counts.split(",") if n.strip())
            results["claim_throughput"] = bench_claims(args.jobs, backends, counts)
        if every or args.kill:
            results["killed_worker"] = bench_kill(args.lease_seconds, backends, args.kill_runs)
    results["machine_end"] = machine()
    write_results("fleet", results, args.json)
    return results


if __name__ == "__main__":
    main()
