"""Partial files after a crash: a worker killed with SIGKILL in the middle of writing its MP4 leaves the file in
``work/``; the next worker sweeps what no live attempt owns (at start and at each claim), runs the job again and
the job completes with ``work/`` empty. The sweep itself on a real store: live attempts' files are kept, ended
ones' removed, anything else left alone."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from hostile_tools import DATABASES, database

from pixgen.core.spec import VideoRequest
from pixgen.jobs.keys import create_key
from pixgen.jobs.store import JobStore
from pixgen.jobs.workdir import attempt_stem, sweep
from pixgen.testing import FAKE_ENGINE, start_server, stop_process, wait_for

RUN = "/api/v1/models/pixverse-v6/run"
SLOW_ENCODE = "steps=1,scale=0.1,encode_seconds=1"  # each second of frames waits 1 s before it is written


@pytest.mark.parametrize("kind", DATABASES)
def test_kill_9_during_encode_leaves_nothing_in_work_once_the_job_completes(kind, tmp_path):
    data = tmp_path / "data"
    env = {"PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_MODEL": SLOW_ENCODE, "PIXGEN_LEASE_SECONDS": "2"}
    work = data / "work"
    with database(kind, data) as url:
        server = start_server(data, workers=1, database_url=url, env=env)
        try:
            headers = {"Authorization": f"Bearer {server.new_key(credits=100)}"}
            job_id = httpx.post(server.url + RUN, json={"prompt": "a slow encode", "duration": 1, "quality": "360p"},
                                headers=headers).json()["jobId"]
            partial = wait_for(lambda: list(work.glob("job_*.mp4")), timeout=60, every=0.05)
            assert [p.name.split("-")[0] for p in partial] == [job_id]
            # SIGKILL the worker mid-encode, then the API process too; start it again on the same data.
            (worker,) = server.worker_pids()
            os.kill(worker, signal.SIGKILL)
            wait_for(lambda: not _alive(worker), timeout=10)
        finally:
            stop_process(server.proc, sig=signal.SIGKILL)
        assert partial[0].exists()  # what the killed attempt left
        server = start_server(data, workers=1, database_url=url, env=env)
        try:
            status = f"{server.url}/api/v1/jobs/{job_id}"
            done = wait_for(lambda: (j := httpx.get(status, headers=headers).json())["status"]
                            in ("completed", "failed") and j, timeout=90)
            assert done["status"] == "completed", done
            assert sorted(p.name for p in work.iterdir()) == []  # the partial file swept, the new one stored
            assert f"{partial[0].name}" in server.log(tail=100_000)  # named by the sweep that removed it
        finally:
            server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is no worker
        return stat.read().split()[2] != "Z"


def test_sweep_keeps_live_attempts_and_removes_ended_ones(db, tmp_path):
    key, _ = create_key(db, credits=100)
    store = JobStore(db, lease_seconds=30)
    request = VideoRequest(prompt="a fox")
    running = store.submit(key.id, request, cost=1).job
    ended = store.submit(key.id, request, cost=1).job
    claim = store.claim("w1")
    assert claim is not None and claim.job.id == running.id
    other = store.claim("w2")
    assert other is not None and other.job.id == ended.id
    store.fail(ended.id, other.token, "internal_error", "boom")
    work = tmp_path / "work"
    work.mkdir()
    live = attempt_stem(running.id, claim.token)
    stale_token = attempt_stem(running.id, "0" * 32)  # the same job's earlier attempt (another lease token)
    gone = attempt_stem(ended.id, other.token)
    names = [f"{live}.mp4", f"{live}-preview.mp4", f"{stale_token}.mp4", f"{gone}.mp4", f"{gone}.jpg",
             "job_0123456789abcdef01234567-deadbeef.mp4",  # a job that does not exist
             "notes.txt", "job_not-an-attempt.mp4"]  # not named after an attempt: not the sweep's
    for name in names:
        (work / name).write_bytes(b"x")
    (work / gone).mkdir()  # an attempt's folder (a downloaded source video)
    (work / gone / "abcd-job_source.mp4").write_bytes(b"x")
    removed = sweep(work, store)
    assert sorted(removed) == sorted([f"{stale_token}.mp4", f"{gone}.mp4", f"{gone}.jpg", gone,
                                      "job_0123456789abcdef01234567-deadbeef.mp4"])
    assert sorted(p.name for p in work.iterdir()) == sorted([f"{live}.mp4", f"{live}-preview.mp4", "notes.txt",
                                                             "job_not-an-attempt.mp4"])
    assert sweep(tmp_path / "missing", store) == []
