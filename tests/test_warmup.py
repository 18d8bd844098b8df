"""``--warmup``: a worker runs the shapes it will serve once at load, before it claims a job, and ``pixgen status``
shows where that stands. (That the first job then costs ≤ 1.1× a warm one is a GPU benchmark figure:
``bench/gpu_bench.py --plan speed``; here the proxy is that a job of a warmed shape compiles nothing new.)"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from pixgen.core.spec import parse_request
from pixgen.engine.warmup import WarmupShape, WarmupState, parse_warmup, resolve_warmup
from pixgen.errors import ConfigError
from pixgen.settings import load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_warmup_values_parse_and_a_bad_one_names_the_flag_and_the_item():
    assert parse_warmup("auto") is None and parse_warmup("none") == ()
    assert parse_warmup("720p, 1080p/10, 720p/5/9:16") == (
        WarmupShape("720p"), WarmupShape("1080p", 10), WarmupShape("720p", 5, "9:16"))
    for bad, words in (("720", "quality"), ("720p/0", "seconds"), ("720p/5/5:4", "ratio")):
        with pytest.raises(ConfigError) as info:
            load_settings({"warmup": bad}, secret=False)
        assert info.value.field == "warmup" and "--warmup" in info.value.message and words in info.value.message
    assert load_settings(environ={"PIXGEN_WARMUP": "540p/2"}, secret=False).engine_options().warmup == "540p/2"


def test_auto_warms_every_quality_on_a_gpu_and_nothing_on_a_cpu():
    qualities = ("360p", "540p", "720p", "1080p")
    assert [str(s) for s in resolve_warmup("auto", qualities=qualities, on_gpu=True)] == [
        "360p 5 s 16:9", "540p 5 s 16:9", "720p 5 s 16:9", "1080p 5 s 16:9"]
    assert resolve_warmup("auto", qualities=qualities, on_gpu=False) == ()
    assert resolve_warmup("none", qualities=qualities, on_gpu=True) == ()
    assert resolve_warmup("540p/1", qualities=qualities, on_gpu=False) == (WarmupShape("540p", 1),)


def test_the_engine_warms_each_shape_on_short_schedules_then_a_job_of_that_shape_compiles_nothing(tmp_path):
    """Two-stage 360p (stage 1, the preview, upsample, stage 2 with its schedule, decode, encode): two stage-1 steps
    and one stage-2 step, the recipe back as it was after; with --compile every graph is made there."""
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.compile import compile_report

    torch._dynamo.reset()
    engine = load_engine("tiny", dtype="bfloat16", compile=True, compile_backend="eager")
    engine.recipe = engine.recipe.with_overrides({"two_stage_qualities": ["360p"]})
    recipe = engine.recipe
    steps = []
    hook = engine.pipes.text.transformer.register_forward_pre_hook(lambda *_: steps.append(1))
    states: list[WarmupState] = []
    final = engine.warm_up("360p/1", on_state=states.append)
    hook.remove()
    assert [s.state for s in states] == ["warming", "warming", "warm"] and final == states[-1]
    assert final.shapes == ("360p 1 s 16:9",) and final.done == 1 and final.seconds > 0
    assert final.compile["graphs"] >= 1 and final.compile["graph_breaks"] == 0
    assert len(steps) == 2 + 1  # CFG batches both guidance passes: one transformer call a step
    assert engine.recipe is recipe
    before = compile_report(engine.pipes.text.transformer)
    job = engine.generate(parse_request({"prompt": "a kite", "duration": 1, "quality": "360p", "seed": 4,
                                         "thinking_type": "disabled"}), tmp_path / "after.mp4")
    assert job.two_stage and compile_report(engine.pipes.text.transformer) == before
    torch._dynamo.reset()


def test_a_cancel_stops_the_warm_up_and_says_so():
    from pixgen.engine import load_engine

    engine = load_engine("tiny")
    state = engine.warm_up("360p/1,540p/1", should_cancel=lambda: True)
    assert state.state == "stopped" and state.done == 0
    assert "stopped" in state.describe()


def pixgen_status(database_url: str) -> str:
    from cli_tools import pixgen

    done = pixgen("status", "--database-url", database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_worker_warms_before_it_claims_and_status_shows_its_state(db_url, tmp_path):
    from pixgen.jobs import fleet
    from pixgen.jobs.db import connect
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.store import JobStore
    from pixgen.jobs.worker import Worker

    db = connect(db_url, pool_size=2)
    key, _ = create_key(db, credits=100)
    job = JobStore(db).submit(key.id, parse_request({"prompt": "a kite", "duration": 1, "quality": "360p"}),
                              cost=10).job
    settings = load_settings({"database_url": db_url, "data_dir": str(tmp_path), "warmup": "360p/1",
                              "no_preview": True})
    worker = Worker(settings, worker_id="warm-worker-1")
    runner = threading.Thread(target=worker.run)
    runner.start()
    seen: list[tuple[str | None, str]] = []  # (warm-up state, job status) whenever either changes
    listing = ""
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and runner.is_alive():
            rows = [w for w in fleet.live_workers(db) if w.id == worker.id]
            state = WarmupState.from_json(rows[0].warmup) if rows else None
            mark = (state.state if state else None, JobStore(db).get(job.id).status.value)
            if not seen or seen[-1] != mark:
                seen.append(mark)
            if mark == ("warm", "completed"):
                listing = pixgen_status(db_url)  # while the worker is live
                break
            time.sleep(0.05)
    finally:
        worker.stop.set()
        runner.join(timeout=60)
        db.dispose()
    assert ("warming", "pending") in seen and seen[-1] == ("warm", "completed"), seen
    # the job was not taken while the worker warmed
    assert not any(state in (None, "warming") and status != "pending" for state, status in seen), seen
    assert "warm (360p 1 s 16:9) in" in listing, listing


def test_status_shows_a_warming_worker_and_which_shape_it_is_on(db_url):
    from pixgen.jobs import fleet
    from pixgen.jobs.db import connect

    db = connect(db_url, pool_size=1)
    fleet.register_worker(db, "gpu-a-1-abc", "tiny")
    fleet.set_warmup(db, "gpu-a-1-abc", WarmupState("warming", ("360p 5 s 16:9", "720p 5 s 16:9"), done=1).to_json())
    db.dispose()
    lines = pixgen_status(db_url).splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["gpu-a-1-abc"])
    assert lines[at + 1].strip() == "warming 1/2: 720p 5 s 16:9"
