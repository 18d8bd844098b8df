"""Estimate before paying: ``POST /api/v1/models/pixverse-v6/estimate`` answers size, frames, credits, queue
position and a finish time from the fleet's own finished jobs; it refuses exactly what ``run`` refuses, and
charges and queues nothing."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from pixgen.core.spec import parse_request
from pixgen.jobs.db import connect
from pixgen.jobs.keys import create_key
from pixgen.jobs.store import JobStore, Outcome
from pixgen.jobs.throughput import DEFAULT_WALL_PER_VIDEO_SECOND, measured, queue_now
from pixgen.testing import start_server

RUN = "/api/v1/models/pixverse-v6/run"
ESTIMATE = "/api/v1/models/pixverse-v6/estimate"


def client(server, key=None):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)


def png_uri(width, height) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


BAD_BODIES = [
    {"prompt": "x", "colour": "red"},
    {"prompt": "x", "duration": "5"},
    {"prompt": "x", "duration": 16},
    {"prompt": "x", "aspect_ratio": "5:4"},
    {"prompt": "x", "resolution": "4k"},
    {"prompt": "x", "resolution": "720p", "quality": "360p"},
    {"prompt": "x", "image_input": "data:image/png;base64,AAAA"},
    {"prompt": "x", "image_input": png_uri(64, 36), "end_image_input": "data:image/webp;base64,AAAA"},
    {"prompt": "x", "image_url": "http://127.0.0.1/a.png"},
    {"prompt": "x", "image_url": png_uri(8, 8)},
    {"prompt": "x", "seed": -1},
    {"prompt": "   "},
    {"prompt": "x", "control_type": "pose", "control_video": "data:video/mp4;base64,AAAA"},
    {"prompt": "x", "control_type": "depth"},
    {"prompt": "x", "control_video": "http://10.0.0.1/a.mp4", "control_type": "depth"},
    [1, 2],
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_estimate_refuses_exactly_what_run_refuses(api_server, body):
    key = api_server.new_key(credits=30)
    with client(api_server, key) as c:
        estimated = c.post(ESTIMATE, json=body)
        submitted = c.post(RUN, json=body)
        assert estimated.status_code == submitted.status_code == 400, (estimated.text, submitted.text)
        assert estimated.json() == submitted.json() and estimated.json()["field"]
        assert c.get("/api/v1/jobs").json() == {"jobs": [], "hasMore": False, "creditsRemaining": 30}


@pytest.fixture(scope="module")
def quiet_api_server(tmp_path_factory):
    """An API-only server of this module's own: the queue positions below are exact, so no other module's pending
    jobs (on the shared ``api_server``, in whatever order pytest-xdist ran them) may sit in its fair-queue rounds."""
    server = start_server(tmp_path_factory.mktemp("estimate-server"), workers=0)
    yield server
    server.stop()


def test_estimate_answers_size_frames_credits_and_queue_and_charges_nothing(quiet_api_server):
    key = quiet_api_server.new_key(credits=25)
    with client(quiet_api_server, key) as c:
        body = {"prompt": "a kite", "duration": 2, "quality": "360p", "image_input": png_uri(90, 160)}
        before = c.post(ESTIMATE, json=body)
        assert before.status_code == 200, before.text
        est = before.json()
        # the start frame fixes the ratio at 9:16 as a submit would
        assert (est["width"], est["height"], est["aspectRatio"], est["frames"]) == (360, 640, "9:16", 49)
        assert (est["creditCost"], est["creditsRemaining"], est["affordable"]) == (10, 25, True)
        assert c.get("/api/v1/jobs").json()["jobs"] == []  # no job, no charge
        job = c.post(RUN, json=body).json()
        assert c.get(f"/api/v1/jobs/{job['jobId']}").json()["queuePosition"] == est["queuePosition"]
        after = c.post(ESTIMATE, json=body).json()
        assert after["queuePosition"] == est["queuePosition"] + 1 and after["creditsRemaining"] == 15
        # API only: no live worker, so no finish time is promised; no history: the stated default
        assert after["workers"] == 0 and after["expectedFinishAt"] is None and after["expectedWaitSeconds"] is None
        assert after["estimateBasis"] == {"source": "default", "jobs": 0}
        assert after["expectedRunSeconds"] == DEFAULT_WALL_PER_VIDEO_SECOND["360p"] * 2


def test_estimate_of_an_unaffordable_job_says_so_rather_than_refusing(api_server):
    key = api_server.new_key(credits=3)
    with client(api_server, key) as c:
        r = c.post(ESTIMATE, json={"prompt": "a kite", "quality": "1080p"})
        assert r.status_code == 200 and r.json()["affordable"] is False
        assert c.post(ESTIMATE.replace("pixverse-v6", "other"), json={"prompt": "x"}).status_code == 404


def finished(store, clock, key_id, worker, *, quality, duration, seconds):
    """One job run to completion taking ``seconds`` of wall time."""
    request = parse_request({"prompt": "a fox", "duration": duration, "quality": quality})
    store.submit(key_id, request, cost=1)
    claim = store.claim(worker)
    clock.now += seconds
    store.complete(claim.job.id, claim.token, Outcome(video_file="v.mp4", thumb_file=None, width=640, height=360,
                                                      seconds=duration, has_audio=True, seed=1, prompt="a fox",
                                                      original_prompt="a fox"))
    clock.now += 1


def test_run_time_comes_from_the_fleets_finished_jobs_by_shape_then_by_quality(db_url, clock):
    db = connect(db_url, pool_size=2)
    try:
        store = JobStore(db, rate_limit_per_minute=1000, max_concurrent_jobs=1000, clock=clock)
        key, _ = create_key(db, credits=100)
        for seconds in (10.0, 12.0, 30.0):
            finished(store, clock, key.id, "w1", quality="360p", duration=2, seconds=seconds)
        finished(store, clock, key.id, "w1", quality="720p", duration=4, seconds=40.0)

        throughput = measured(db)
        shape = throughput.run_time("360p", 2)
        assert (shape.seconds, shape.basis, shape.samples) == (12.0, "shape", 3)  # the median
        by_quality = throughput.run_time("360p", 5)  # 52 s of wall for 6 s of video, over 3 jobs
        assert by_quality.basis == "quality" and by_quality.seconds == pytest.approx(52 / 6 * 5)
        default = throughput.run_time("1080p", 3)
        assert (default.basis, default.seconds) == ("default", DEFAULT_WALL_PER_VIDEO_SECOND["1080p"] * 3)

        for _ in range(2):
            store.submit(key.id, parse_request({"prompt": "a fox", "duration": 2, "quality": "360p"}), cost=1)
        queue = queue_now(db, throughput)
        assert queue.pending == 2 and queue.waiting_seconds == pytest.approx(24.0)
    finally:
        db.dispose()


def test_the_estimated_queue_position_is_the_fair_turn_a_submit_then_gets(quiet_api_server):
    """Fair queuing: a key with nothing waiting goes in ahead of a key with three jobs waiting (one turn each per
    round); the estimate says so, and the submit that follows gets exactly that position. (Other tests'
    jobs may be waiting too: the positions are compared, not fixed.)"""
    busy, other = quiet_api_server.new_key(credits=100), quiet_api_server.new_key(credits=100)
    body = {"prompt": "a kite", "duration": 1, "quality": "360p"}
    with client(quiet_api_server, busy) as c:
        positions = [c.get(f"/api/v1/jobs/{c.post(RUN, json=body).json()['jobId']}").json()["queuePosition"]
                     for _ in range(3)]
        busy_next = c.post(ESTIMATE, json=body).json()["queuePosition"]
    assert busy_next == positions[-1] + 1
    with client(quiet_api_server, other) as c:
        est = c.post(ESTIMATE, json=body).json()
        assert est["queuePosition"] <= positions[1]  # ahead of the busy key's second job
        job = c.post(RUN, json=body).json()
        assert c.get(f"/api/v1/jobs/{job['jobId']}").json()["queuePosition"] == est["queuePosition"]
