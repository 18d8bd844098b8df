"""`pixgen keys` and `pixgen status` as users run them."""

from __future__ import annotations

import subprocess
import sys

from pixgen.core.spec import parse_request
from pixgen.jobs.db import connect
from pixgen.jobs.keys import authenticate
from pixgen.jobs.store import JobStore


def pixgen(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pixgen", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_create_prints_the_key_alone_on_its_last_line_then_status_counts_its_job(tmp_path):
    out = pixgen("keys", "create", "--data-dir", str(tmp_path), "--credits", "42", "--name", "ci")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pxg_") and " " not in secret
    db = connect(f"sqlite:///{tmp_path / 'pixgen.db'}", pool_size=1)
    key = authenticate(db, secret)
    assert (key.credits, key.name) == (42, "ci")
    JobStore(db).submit(key.id, parse_request({"prompt": "x"}), cost=10)
    db.dispose()
    listing = pixgen("keys", "list", "--data-dir", str(tmp_path))
    assert key.id in listing and "32 credits" in listing
    status = pixgen("status", "--data-dir", str(tmp_path))
    assert "queue: 1 pending, 0 running" in status and "workers: 0 live" in status


def test_status_lists_running_jobs_with_their_worker_and_the_live_workers(tmp_path):
    from pixgen.jobs import fleet
    from pixgen.jobs.keys import create_key

    db = connect(f"sqlite:///{tmp_path / 'pixgen.db'}", pool_size=1)
    pixgen("status", "--data-dir", str(tmp_path))  # creates the schema
    key, _ = create_key(db, credits=100)
    store = JobStore(db)
    running, queued = (store.submit(key.id, parse_request({"prompt": p}), cost=10).job for p in ("a", "b"))
    fleet.register_worker(db, "gpu-a-1-abc", "tiny")
    fleet.register_worker(db, "gpu-b-2-def", "tiny")
    claim = store.claim("gpu-a-1-abc")
    assert claim is not None and claim.job.id == running.id
    store.heartbeat(running.id, claim.token, progress=41, stage="denoise")
    fleet.beat_worker(db, "gpu-a-1-abc", running.id)
    fleet.stop_worker(db, "gpu-b-2-def")  # stopped: not live
    db.dispose()
    lines = pixgen("status", "--data-dir", str(tmp_path)).splitlines()
    assert lines[0] == "queue: 1 pending, 1 running"
    assert lines[1].split() == [running.id, "41%", "denoise", "on", "gpu-a-1-abc"]
    assert lines[2] == "workers: 1 live"
    assert lines[3].split()[0] == "gpu-a-1-abc" and lines[3].endswith(running.id)
    assert lines[4] == "webhooks: 0 pending, 0 delivered, 0 given up (pixgen webhooks list)"
    assert len(lines) == 5 and queued.id not in "\n".join(lines)


def test_keys_and_status_leave_no_data_folder_and_count_a_worker_live_for_three_beats_of_the_lease(tmp_path):
    import os
    import time

    from sqlalchemy import update

    from pixgen.jobs import fleet
    from pixgen.jobs.schema import workers

    url = f"sqlite:///{tmp_path / 'db' / 'pixgen.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pixgen", *args, "--database-url", url], cwd=elsewhere,
                              capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if not k.startswith("PIXGEN_")})
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("keys", "create")
    db = connect(url, pool_size=1)
    fleet.register_worker(db, "gpu-a-1-abc", "tiny")
    with db.write() as conn:  # its last beat 5 s ago
        conn.execute(update(workers).values(heartbeat_at=time.time() - 5))
    db.dispose()
    assert "workers: 1 live" in run("status")  # default 60 s lease: beats every 5 s, live for 15 s
    assert "workers: 0 live" in run("status", "--lease-seconds", "6")  # beats every 1.5 s: stale after 4.5 s
    assert list(elsewhere.iterdir()) == []  # no ./data/signing_secret: keys and status sign nothing
