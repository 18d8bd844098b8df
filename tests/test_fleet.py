"""PostgreSQL fleet mode: several workers, a worker SIGKILLed mid-job, the API node killed and restarted.

After each, every accepted job completes exactly once and the credits taken equal the cost of completed jobs.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from sqlalchemy import select

from pixgen.jobs.db import connect
from pixgen.jobs.schema import jobs, workers
from pixgen.testing import start_server, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
RUN = "/api/v1/models/pixverse-v6/run"
SHORT = {"prompt": "rain on a tin roof", "duration": 1, "resolution": "360p"}


def test_killed_worker_and_killed_api_node_lose_no_job_and_charge_exactly(pg_url, tmp_path):
    db = connect(pg_url, pool_size=1)
    env = {"PIXGEN_LEASE_SECONDS": "3"}
    server = start_server(tmp_path, workers=2, database_url=pg_url, env=env, ready=True, timeout=240)
    try:
        key = server.new_key(credits=100)
        headers = {"Authorization": f"Bearer {key}"}
        ids = [httpx.post(server.url + RUN, headers=headers, json=SHORT, timeout=30).json()["jobId"]
               for _ in range(3)]

        # 1. SIGKILL the worker running the first job, mid-denoise.
        def running_pid():
            with db.read() as conn:
                row = conn.execute(select(jobs.c.worker_id, jobs.c.stage).where(jobs.c.id == ids[0])).first()
                if row is None or row.stage != "denoise":
                    return None
                return conn.execute(select(workers.c.pid).where(workers.c.id == row.worker_id)).scalar()

        os.kill(wait_for(running_pid, timeout=240, every=0.05), signal.SIGKILL)

        # 2. SIGKILL the API node too (its workers get SIGTERM and hand their jobs back), then start it again.
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        server = start_server(tmp_path, workers=2, database_url=pg_url, env=env, timeout=120,
                              port=int(server.url.rsplit(":", 1)[1]))

        def all_done():
            states = [httpx.get(f"{server.url}/api/v1/jobs/{i}", headers=headers).json()["status"] for i in ids]
            return all(s in ("completed", "failed", "cancelled") for s in states) and states

        states = wait_for(all_done, timeout=400, every=1)
        assert states == ["completed"] * 3, server.log()
        with db.read() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.id.in_(ids))).mappings().all()
        assert all(r["video_file"] and not r["refunded"] for r in rows)
        assert next(r for r in rows if r["id"] == ids[0])["attempts"] >= 2
        listing = httpx.get(f"{server.url}/api/v1/jobs", headers=headers).json()
        assert listing["creditsRemaining"] == 100 - 3 * 10
        # exactly one video per job on disk: a worker that lost its job left nothing behind
        for job_id in ids:
            assert len(list((tmp_path / "media").glob(f"{job_id}-*.mp4"))) == 1
    finally:
        server.stop()
        db.dispose()
