"""Jobs per hour of a queue run by pixgen's own worker loop (``pixgen.jobs.worker.Worker``) over one loaded engine.

A SQLite store in a folder of its own, the jobs submitted at once, then the worker run until it has done them all
(thumbnails, the media store and the database writes included, as a deployed worker does). ``overlap_jobs``: as
``pixgen worker --overlap-jobs``, the next job's text and denoising beside the last one's decode and encode. Used by
``engine_bench.py`` (the toy on a CPU) and ``gpu_bench.py`` (the queue step of the speed plan).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any


def worker_queue(engine: Any, requests: list[Any], folder: Path, *, overlap_jobs: bool) -> dict[str, Any]:
    """``requests`` (``VideoRequest``s) through a ``Worker`` on ``engine``: wall seconds, jobs per hour, and each
    job's stage seconds summed. The engine is warm already: the worker warms no shape of its own."""
    from pixgen.jobs.db import connect, migrate
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.states import JobStatus
    from pixgen.jobs.store import JobStore
    from pixgen.jobs.worker import Worker
    from pixgen.settings import Settings

    if hasattr(engine, "options"):  # the shapes were warmed by the caller, at the measured shape
        engine.options = dataclasses.replace(engine.options, warmup="none")
    settings = Settings(data_dir=folder, overlap_jobs=overlap_jobs, no_preview=True, poll_interval=0.01,
                        model=str(getattr(engine, "folder", "tiny")))
    db = connect(settings.database_url, pool_size=2)
    migrate(db)
    store = JobStore.from_settings(db, settings)
    key, _ = create_key(db, credits=len(requests))
    ids = [store.submit(key.id, request, cost=1).job.id for request in requests]
    started = time.perf_counter()
    done = Worker(settings, engine_factory=lambda: engine).run(max_jobs=len(requests))
    wall = time.perf_counter() - started
    jobs = [store.get(i) for i in ids]
    db.dispose()
    failed = [f"{j.id}: {j.error_message}" for j in jobs if j.status is not JobStatus.COMPLETED]
    if done != len(requests) or failed:
        raise RuntimeError(f"the queue did not complete: {failed or done}")
    stages: dict[str, float] = {}
    for job in jobs:
        for stage, seconds in job.timing_dict().items():
            stages[stage] = round(stages.get(stage, 0.0) + seconds, 3)
    return {"overlap_jobs": overlap_jobs, "jobs": len(requests), "wall_s": round(wall, 2),
            "jobs_per_hour": round(len(requests) / wall * 3600, 1), "stage_s": stages}
