"""The whole service on loopback: ``pixgen serve`` with one toy-model worker, driven as users drive it.

Jobs are the shortest the contract allows (1 s at 360p) to keep the toy model's CPU time low.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import requests
from test_service_api import RUN, parse_sse

from pixgen.testing import wait_for

pytestmark = pytest.mark.slow
SHORT = {"prompt": "A cinematic shot of ocean waves crashing at golden hour", "aspect_ratio": "16:9",
         "duration": 1, "resolution": "360p", "generate_audio": True}


@pytest.fixture(scope="module")
def finished(server):
    """One job run to completion with the seed's Python `requests` flow, with an SSE watcher alongside."""
    api_key = server.new_key(credits=100)
    events: list = []

    response = requests.post(f"{server.url}{RUN}", headers={"Authorization": f"Bearer {api_key}",
                                                             "Content-Type": "application/json"}, json=SHORT)
    job = response.json()
    job_id = job["jobId"]

    def watch() -> None:
        with httpx.stream("GET", f"{server.url}/api/v1/jobs/{job_id}/events",
                          headers={"Authorization": f"Bearer {api_key}"}, timeout=300) as stream:
            events.extend(parse_sse(stream.iter_lines()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = requests.get(job["statusUrl"], headers={"Authorization": f"Bearer {api_key}"}).json()
        seen.append((status["status"], status["progress"]))
        if status["status"] in ("completed", "failed"):
            break
        time.sleep(0.5)
    watcher.join(timeout=30)
    return {"key": api_key, "submit": job, "status": status, "seen": seen, "events": events}


def test_seed_python_flow_completes_with_a_signed_absolute_video_url(finished, server):
    status = finished["status"]
    assert status["status"] == "completed", status
    assert status["progress"] == 100 and status["error"] is None and status["creditCost"] == 10
    assert status["output"]["video"].startswith(f"{server.url}/media/{status['jobId']}/video.mp4?exp=")
    assert isinstance(status["seed"], int) and status["prompt"]
    progress = [p for s, p in finished["seen"] if s == "processing"]
    assert progress == sorted(progress)  # progress only goes up


def test_video_is_the_contract_mp4_served_with_range_requests(finished, tmp_path):
    from pixgen.media.probe import probe

    url = finished["status"]["output"]["video"]
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    tail = httpx.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    assert httpx.get(url, headers={"Range": f"bytes={len(whole.content) + 10}-"}).status_code == 416
    path = tmp_path / "out.mp4"
    path.write_bytes(whole.content)
    facts = probe(path)
    assert (facts.width, facts.height) == (640, 360)
    assert abs(facts.num_frames - 25) <= 1


def test_thumbnail_is_a_jpeg(finished):
    thumb = httpx.get(finished["status"]["output"]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"


def test_expired_or_tampered_media_links_are_refused(finished, server):
    from pixgen.api.media import media_path, sign_path

    url = finished["status"]["output"]["video"]
    assert httpx.get(url.replace("sig=", "sig=x")).status_code == 403
    assert httpx.get(url.replace("/video.mp4?", "/thumbnail.jpg?")).status_code == 403  # signed for another path
    secret = (server.data_dir / "signing_secret").read_text().strip()
    job_id = finished["status"]["jobId"]
    expired, _ = sign_path(secret, media_path(job_id), ttl=60, now=time.time() - 3600)
    response = httpx.get(server.url + expired)
    assert response.status_code == 403 and "expired" in response.json()["message"]
    fresh, _ = sign_path(secret, media_path(job_id), ttl=60)
    assert httpx.get(server.url + fresh).status_code == 200


def test_sse_streams_progress_then_done_with_the_full_job(finished):
    events = finished["events"]
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1 and names[:-1] == ["progress"] * (len(names) - 1)
    statuses = [data["status"] for name, data in events if name == "progress"]
    assert "processing" in statuses and statuses[-1] == "completed"
    assert {"jobId", "status", "progress", "stage", "queuePosition"} <= set(events[0][1])
    done = events[-1][1]
    assert done["status"] == "completed" and done["output"]["video"]


def test_ready_when_a_worker_is_live(server):
    ready = httpx.get(f"{server.url}/health/ready")
    assert ready.status_code == 200 and ready.json()["workers"] == 1


def test_cancel_of_a_running_job_stops_it_and_refunds(finished, server):
    key = server.new_key(credits=20)
    headers = {"Authorization": f"Bearer {key}"}
    job = httpx.post(f"{server.url}{RUN}", headers=headers,
                     json={**SHORT, "resolution": "540p", "duration": 2}).json()
    url = f"{server.url}/api/v1/jobs/{job['jobId']}"
    wait_for(lambda: httpx.get(url, headers=headers).json()["stage"] == "denoise", timeout=240)
    started = time.monotonic()
    answer = httpx.post(f"{url}/cancel", headers=headers, timeout=60).json()
    final = wait_for(lambda: (j := httpx.get(url, headers=headers).json())["status"] != "processing" and j,
                     timeout=60)
    assert final["status"] == "cancelled" and final["refunded"] and final["output"] is None
    assert answer["status"] in ("processing", "cancelled")
    assert time.monotonic() - started < 60
    listing = httpx.get(f"{server.url}/api/v1/jobs", headers=headers).json()
    assert listing["creditsRemaining"] == 20
