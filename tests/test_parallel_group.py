"""A worker whose jobs each run over 2 ranks (``--device cpu --parallel 2``, gloo): a killed rank and a hung rank
send the job back to the queue and the group restarts and completes it, charged once; a cancel ends the job on
every rank and the group goes on. Also the arithmetic of the split, the settings and serve's GPU groups, and
``pixgen generate --parallel 2`` against one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from pixgen.engine.parallel_plan import (
    COND,
    MODALITY,
    STG,
    UNCOND,
    Layout,
    bins,
    choose_layout,
    exchange,
    guidance_pieces,
    shard,
    video_tokens,
)
from pixgen.errors import ConfigError, InvalidRequest
from pixgen.testing import start_server, wait_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RUN = "/api/v1/models/pixverse-v6/run"
SHORT = {"prompt": "rain on a tin roof", "duration": 1, "resolution": "360p", "seed": 5}


# -- the arithmetic ----------------------------------------------------------------------------------------------
def test_layout_gives_guidance_passes_to_groups_and_tokens_to_the_rest():
    dev = guidance_pieces(cfg=True, stg=True, modality=True)
    assert dev == (UNCOND, COND, STG, MODALITY)
    assert choose_layout(2, 4) == Layout(2, 1)
    assert choose_layout(4, 4) == Layout(4, 1)
    assert choose_layout(8, 4) == Layout(4, 2)
    assert choose_layout(3, 4) == Layout(1, 3)  # 4 passes do not deal evenly to 3: all sequence parallel
    assert choose_layout(2, 3) == Layout(1, 2)
    assert choose_layout(8, 1) == Layout(1, 8)  # unguided (distilled, stage 2): every rank on one pass
    assert choose_layout(4, 4, guidance_parallel=False) == Layout(1, 4)
    assert bins(dev, 2) == ((UNCOND, COND), (STG, MODALITY))  # CFG's batch stays whole on one rank


def test_token_counts_that_do_not_divide_are_padded():
    assert video_tokens(640, 384, 25) == 4 * 12 * 20
    assert video_tokens(544, 544, 49) == 7 * 17 * 17 == 2023
    assert shard(2023, 2) == (1012, 1)
    assert shard(960, 4) == (240, 0)
    assert exchange(32, 8) == "ulysses" and exchange(2, 4) == "allgather"  # heads must divide for ulysses
    assert exchange(32, 2, "allgather") == "allgather"


# -- settings and serve's GPU groups -----------------------------------------------------------------------------
def test_parallel_settings_are_checked_naming_the_setting():
    from pixgen.settings import load_settings

    assert load_settings({"device": "cpu", "parallel": 2}, environ={}, secret=False).ranks == 2
    assert load_settings({"gpus": "0,1,2,3"}, environ={}, secret=False).ranks == 4
    with pytest.raises(ConfigError) as info:
        load_settings({"parallel": 2}, environ={}, secret=False)  # CPU processes need --device cpu
    assert info.value.field == "parallel" and "--device cpu" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_settings({"gpus": "0,1,2", "parallel": 2}, environ={}, secret=False)
    assert info.value.field == "parallel"
    with pytest.raises(ConfigError) as info:
        load_settings({"guidance_parallel": "sometimes"}, environ={}, secret=False)
    assert info.value.field == "guidance_parallel"


def test_serve_gives_each_worker_its_own_group_of_gpus(tmp_path):
    from pixgen.jobs.gpus import assign_gpus
    from pixgen.jobs.supervisor import Supervisor
    from pixgen.settings import load_settings

    assert assign_gpus(2, ["0", "1", "2", "3"], share=False, per_worker=2) == ["0,1", "2,3"]
    with pytest.raises(InvalidRequest) as info:
        assign_gpus(3, ["0", "1", "2", "3"], share=False, per_worker=2)
    assert info.value.field == "gpus_per_worker"
    settings = load_settings({"data_dir": str(tmp_path), "gpus": "0,1,2,3", "gpus_per_worker": 2, "workers": 2},
                             environ={})
    envs = [Supervisor(settings, 2).environment(slot) for slot in (0, 1)]
    assert [(e["CUDA_VISIBLE_DEVICES"], e["PIXGEN_GPUS"]) for e in envs] == [("0,1", "0,1"), ("2,3", "2,3")]
    worker = load_settings({}, environ={k: v for k, v in envs[1].items() if k.startswith("PIXGEN_")}, secret=False)
    assert worker.ranks == 2 and worker.gpu_list == ["2", "3"]  # each worker runs its jobs over its two GPUs
    single = load_settings({"data_dir": str(tmp_path), "gpus": "0,1", "workers": 2}, environ={})
    assert Supervisor(single, 2).environment(1)["PIXGEN_GPUS"] == "1"  # one GPU each: no group


# -- pixgen generate --parallel 2 ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_generate_over_two_cpu_processes_makes_the_one_process_video(tmp_path):
    from pixgen.media.probe import read_frames

    base = [sys.executable, "-m", "pixgen", "generate", "a lighthouse at dusk", "--duration", "1", "--quality",
            "360p", "--seed", "3", "--device", "cpu", "--quiet"]
    # side by side: most of each run is starting Python and importing torch and diffusers
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in (
        [*base, "-o", str(tmp_path / "one.mp4")],
        [*base, "--parallel", "2", "--guidance-parallel", "off", "-o", str(tmp_path / "two.mp4")])]
    try:
        (_, one_err), (two_out, two_err) = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert runs[0].returncode == 0, one_err[-3000:]
    assert runs[1].returncode == 0, two_err[-3000:]
    assert two_out.strip().splitlines()[-1].startswith("640x360, 25 frames")
    assert np.array_equal(read_frames(tmp_path / "one.mp4"), read_frames(tmp_path / "two.mp4"))


def test_generate_refuses_parallel_without_cpu_or_gpus(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pixgen", "generate", "x", "--parallel", "2", "-o",
                          str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "(parallel)" in out.stderr and "--device cpu" in out.stderr


# -- a worker group under faults -----------------------------------------------------------------------------------
def rank_pid(server, rank: int) -> int | None:
    import psutil

    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        cmd = proc.cmdline()
        if "pixgen.jobs.group" in cmd and cmd[cmd.index("--rank") + 1] == str(rank):
            return proc.pid
    return None


@pytest.fixture(scope="module")
def group_server(module_toy_variant, tmp_path_factory):
    """One worker group for the module's fault tests: each starts from a group that runs (the fault test leaves its
    last restarted group running; the cancel test's group goes on) and makes keys and jobs of its own."""
    # Many steps: the denoising lasts long enough to hit it (a second or two; the test sees it start within a
    # fraction of one); CFG only, sequence parallel.
    folder = module_toy_variant("ltx-2.0-dev", {"num_inference_steps": 30, "guidance_scale": 3.0,
                                                "audio_guidance_scale": 3.0, "stg_scale": 0.0, "audio_stg_scale": 0.0,
                                                "modality_scale": 1.0, "audio_modality_scale": 1.0,
                                                "refine_lora": None})
    env = {"PIXGEN_DEVICE": "cpu", "PIXGEN_PARALLEL": "2", "PIXGEN_GUIDANCE_PARALLEL": "off",
           "PIXGEN_MODEL": str(folder), "PIXGEN_LEASE_SECONDS": "5", "PIXGEN_COLLECTIVE_TIMEOUT": "4",
           "PIXGEN_NO_PREVIEW": "1"}
    server = start_server(tmp_path_factory.mktemp("group") / "data", workers=1, env=env, ready=True, timeout=240)
    yield server
    server.stop()


def job_row(server, job_id: str):
    from pixgen.jobs.db import connect
    from pixgen.jobs.schema import jobs

    db = connect(server.database_url, pool_size=1)
    try:
        with db.read() as conn:
            return conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
    finally:
        db.dispose()


def submit(server, headers) -> str:
    return httpx.post(server.url + RUN, headers=headers, json=SHORT, timeout=30).json()["jobId"]


def finished(server, headers, job_id):
    body = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
    return body if body["status"] in ("completed", "failed", "cancelled") else None


def in_denoise(server, job_id):
    row = job_row(server, job_id)
    return row is not None and row["stage"] == "denoise" and row["progress"] > 5


@pytest.mark.slow
def test_a_killed_or_hung_rank_sends_the_job_back_and_the_restarted_group_completes_it(group_server):
    """Rank 1 killed or hung: rank 0 hands the job back at once; rank 0 killed: its lease runs out. Either way the
    worker restarts its ranks and the job completes on its second attempt, charged once."""
    server = group_server
    headers = {"Authorization": f"Bearer {server.new_key(credits=100)}"}
    # rank 1 dies; rank 1 hangs (its collective times out after 4 s); rank 0 dies (its lease runs out: 5 s)
    faults = ((1, signal.SIGKILL), (1, signal.SIGSTOP), (0, signal.SIGKILL))
    for rank, fault in faults:
        job_id = submit(server, headers)
        wait_for(lambda job_id=job_id: in_denoise(server, job_id), timeout=240, every=0.05)
        victim = rank_pid(server, rank)
        assert victim is not None
        os.kill(victim, fault)
        body = wait_for(lambda job_id=job_id: finished(server, headers, job_id), timeout=300, every=0.5)
        assert body["status"] == "completed", server.log()
        row = job_row(server, job_id)
        assert row["attempts"] == 2 and not row["refunded"] and row["video_file"]
        assert rank_pid(server, rank) not in (None, victim)  # the group restarted
        assert len(list((server.data_dir / "media").glob(f"{job_id}-*.mp4"))) == 1
    listing = httpx.get(f"{server.url}/api/v1/jobs", headers=headers, timeout=10).json()
    assert listing["creditsRemaining"] == 100 - len(faults) * 10  # each charged once
    assert "handing it back, the group restarts" in server.log(200_000)


@pytest.mark.slow
def test_a_cancel_ends_the_job_on_every_rank_and_the_group_goes_on(group_server):
    server = group_server
    headers = {"Authorization": f"Bearer {server.new_key(credits=100)}"}
    first = submit(server, headers)
    wait_for(lambda: in_denoise(server, first), timeout=240, every=0.05)
    ranks = (rank_pid(server, 0), rank_pid(server, 1))
    httpx.post(f"{server.url}/api/v1/jobs/{first}/cancel", headers=headers, timeout=10)
    assert wait_for(lambda: finished(server, headers, first), timeout=120, every=0.2)["status"] == "cancelled"
    second = submit(server, headers)
    assert wait_for(lambda: finished(server, headers, second), timeout=300, every=0.5)["status"] == "completed"
    assert (rank_pid(server, 0), rank_pid(server, 1)) == ranks  # the same processes: no restart
    assert job_row(server, second)["attempts"] == 1
    manifest = json.loads(job_row(server, second)["manifest"])
    assert "rank 0 of 2" in json.dumps(manifest)


# -- the store's hand-back ---------------------------------------------------------------------------------------
def test_a_job_whose_group_keeps_breaking_goes_back_then_fails_refunded_once(db, clock):
    from pixgen.core.spec import parse_request
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.states import JobStatus
    from pixgen.jobs.store import JobStore

    store = JobStore(db, lease_seconds=30, max_attempts=2, clock=clock)
    key, _ = create_key(db, credits=10)
    job = store.submit(key.id, parse_request({"prompt": "a lighthouse", "duration": 1, "quality": "360p"}),
                       cost=10).job
    first = store.claim("group-a")
    assert store.retry_broken(job.id, first.token, "rank 1 died")
    assert store.get(job.id).status is JobStatus.PENDING and store.get(job.id).attempts == 1  # counted
    assert not store.retry_broken(job.id, first.token, "again")  # the lease went with the move
    second = store.claim("group-b")
    assert store.retry_broken(job.id, second.token, "rank 1 hung")
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2 and "rank 1 hung" in failed.error_message
    assert store.credits(key.id) == 10  # charged 10, refunded once
