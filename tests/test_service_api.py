"""The job API on a real API-only server (``pixgen serve --workers 0``): auth, credits, errors, limits, queue.

Jobs never run here, so every test is fast; ``test_service_e2e.py`` runs them on a server with a worker.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import httpx
import pytest
from PIL import Image

RUN = "/api/v1/models/pixverse-v6/run"
SHORT = {"prompt": "a lighthouse in a storm", "duration": 1, "quality": "360p"}
GIF_1X1 = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")


def png_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def client(server, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["message"]
    if field is not None:
        assert body["field"] == field
    return body


def test_api_process_never_imports_torch(tmp_path):
    code = ("import sys; from pixgen.api import create_app; from pixgen.settings import Settings; "
            f"create_app(Settings(data_dir={str(tmp_path)!r})); "
            "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_health_docs_and_readiness_without_workers(api_server):
    with client(api_server) as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "no live worker"
        assert c.get("/docs").status_code == 200
        assert "/api/v1/jobs/{job_id}" in c.get("/openapi.json").json()["paths"]


def test_missing_or_wrong_key_is_401(api_server):
    with client(api_server) as c:
        assert_error(c.post(RUN, json=SHORT), 401, "unauthorized")
        assert_error(c.get("/api/v1/jobs/job_x"), 401, "unauthorized")
    with client(api_server, "pxg_not-a-key") as c:
        assert_error(c.post(RUN, json=SHORT), 401, "unauthorized")
        assert_error(c.get("/api/v1/models"), 401, "unauthorized")


def test_submit_answers_like_the_seed_and_queues_with_a_position(api_server):
    key = api_server.new_key(credits=100)
    with client(api_server, key) as c:
        submitted = c.post(RUN, json=SHORT)
        assert submitted.status_code == 200, submitted.text
        body = submitted.json()
        assert set(body) == {"jobId", "status", "statusUrl", "creditCost", "creditsRemaining"}
        assert body["status"] == "pending" and body["creditCost"] == 10 and body["creditsRemaining"] == 90
        assert body["statusUrl"] == f"{api_server.url}/api/v1/jobs/{body['jobId']}"
        job = httpx.get(body["statusUrl"], headers=c.headers).json()
        assert job["status"] == "pending" and job["progress"] == 0 and job["output"] is None
        assert job["queuePosition"] >= 1 and job["creditCost"] == 10 and job["prompt"] == SHORT["prompt"]
        assert isinstance(job["seed"], int)
        listed = c.get("/api/v1/jobs").json()
        assert listed["creditsRemaining"] == 90 and [j["jobId"] for j in listed["jobs"]] == [body["jobId"]]
        cancelled = c.post(f"/api/v1/jobs/{body['jobId']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["refunded"]
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 100


def test_resolution_is_quality_and_seed_is_kept(api_server):
    key = api_server.new_key()
    with client(api_server, key) as c:
        job_id = c.post(RUN, json={"prompt": "dunes", "resolution": "540p", "aspect_ratio": "1:1", "seed": 42,
                                   "duration": 2}).json()["jobId"]
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["quality"], job["width"], job["height"], job["seed"]) == ("540p", 540, 540, 42)
        c.post(f"/api/v1/jobs/{job_id}/cancel")


def test_not_enough_credits_is_402_and_charges_nothing(api_server):
    key = api_server.new_key(credits=5)
    with client(api_server, key) as c:
        assert_error(c.post(RUN, json=SHORT), 402, "insufficient_credits")
        assert c.get("/api/v1/jobs").json() == {"jobs": [], "hasMore": False, "creditsRemaining": 5}


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "colour": "red"}, "colour"),
    ({"prompt": "x", "duration": "5"}, "duration"),
    ({"prompt": "x", "duration": 16}, "duration"),
    ({"prompt": "x", "aspect_ratio": "5:4"}, "aspect_ratio"),
    ({"prompt": "x", "resolution": "4k"}, "resolution"),
    ({"prompt": "x", "quality": "4k"}, "quality"),
    # images are decoded at submit: a readable data URI of the right form is not enough
    ({"prompt": "x", "image_input": "data:image/png;base64,AAAA"}, "image_input"),
    ({"prompt": "x", "image_input": "data:image/png;base64," + base64.b64encode(GIF_1X1).decode()}, "image_input"),
    ({"prompt": "x", "image_input": png_uri(64, 36), "end_image_input": "data:image/webp;base64,AAAA"},
     "end_image_input"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x", "image_url": "http://example.com/a.png"}, "image_url"),
    ({"prompt": "x", "generate_audio": "yes"}, "generate_audio"),
    ([1, 2], "body"),
])
def test_bad_request_is_400_naming_the_field_and_charges_nothing(api_server, body, field):
    key = api_server.new_key(credits=10)
    with client(api_server, key) as c:
        assert_error(c.post(RUN, json=body), 400, "invalid_request", field)
        listing = c.get("/api/v1/jobs").json()
        assert listing["creditsRemaining"] == 10 and listing["jobs"] == []  # nothing queued, nothing charged


def test_start_image_without_aspect_ratio_fixes_the_ratio_and_size_at_submit(api_server):
    key = api_server.new_key(credits=100)
    with client(api_server, key) as c:
        job_id = c.post(RUN, json={**SHORT, "image_input": png_uri(600, 400)}).json()["jobId"]
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["aspectRatio"], job["width"], job["height"]) == ("3:2", 540, 360)
        c.post(f"/api/v1/jobs/{job_id}/cancel")


def test_malformed_json_and_wrong_content_type_are_400_not_500(api_server):
    key = api_server.new_key()
    with client(api_server, key) as c:
        assert_error(c.post(RUN, content=b'{"prompt": "x",', headers={"Content-Type": "application/json"}),
                     400, "invalid_request", "body")
        assert_error(c.post(RUN, content=b"", headers={"Content-Type": "application/json"}),
                     400, "invalid_request", "body")
        assert_error(c.post(RUN, content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
                     400, "invalid_request", "body")
        assert_error(c.post(RUN, data={"prompt": "x"}), 400, "invalid_request", "Content-Type")
        assert_error(c.get("/api/v1/jobs", params={"limit": "many"}), 400, "invalid_request", "limit")


def test_unknown_job_model_and_route_are_404(api_server):
    key = api_server.new_key()
    with client(api_server, key) as c:
        assert_error(c.get("/api/v1/jobs/job_000000000000000000000000"), 404, "not_found")
        assert_error(c.post("/api/v1/jobs/nope/cancel"), 404, "not_found")
        assert_error(c.post("/api/v1/models/sora-2/run", json=SHORT), 404, "model_not_found")
        assert_error(c.get("/api/v1/nothing-here"), 404, "not_found")


def test_another_keys_job_is_404(api_server):
    owner, other = api_server.new_key(), api_server.new_key()
    with client(api_server, owner) as c:
        job_id = c.post(RUN, json=SHORT).json()["jobId"]
    with client(api_server, other) as c:
        assert_error(c.get(f"/api/v1/jobs/{job_id}"), 404, "not_found")
        assert_error(c.post(f"/api/v1/jobs/{job_id}/cancel"), 404, "not_found")
    with client(api_server, owner) as c:
        c.post(f"/api/v1/jobs/{job_id}/cancel")


def test_body_over_the_limit_is_413(api_server):
    key = api_server.new_key()
    big = {"prompt": "x", "negative_prompt": "y" * (70 * 1024)}  # the server's limit is 64 KiB
    with client(api_server, key) as c:
        assert_error(c.post(RUN, json=big), 413, "payload_too_large")

        def chunks():  # no Content-Length: the limit holds while reading
            yield b'{"prompt": "x", "negative_prompt": "'
            for _ in range(80):
                yield b"y" * 1024
            yield b'"}'

        assert_error(c.post(RUN, content=chunks(), headers={"Content-Type": "application/json"}),
                     413, "payload_too_large")


def test_concurrent_job_cap_is_429_with_retry_after(api_server):
    key = api_server.new_key(credits=1000)  # the server allows 3 queued jobs per key
    with client(api_server, key) as c:
        ids = [c.post(RUN, json=SHORT).json()["jobId"] for _ in range(3)]
        refused = c.post(RUN, json=SHORT)
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) >= 1
        for job_id in ids:
            c.post(f"/api/v1/jobs/{job_id}/cancel")
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 1000


def test_rate_limit_per_minute_is_429_with_retry_after(api_server):
    key = api_server.new_key(credits=1000)  # the server allows 5 submits per key per minute
    with client(api_server, key) as c:
        for _ in range(5):
            job_id = c.post(RUN, json=SHORT).json()["jobId"]
            c.post(f"/api/v1/jobs/{job_id}/cancel")
        refused = c.post(RUN, json=SHORT)
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_idempotency_key_replays_the_same_job_and_refuses_another_body(api_server):
    key = api_server.new_key(credits=100)
    with client(api_server, key) as c:
        headers = {"Idempotency-Key": "order-17"}
        first = c.post(RUN, json=SHORT, headers=headers).json()
        again = c.post(RUN, json=dict(reversed(list(SHORT.items()))), headers=headers).json()
        assert again["jobId"] == first["jobId"] and again["creditsRemaining"] == 90
        assert_error(c.post(RUN, json={**SHORT, "duration": 2}, headers=headers), 400, "invalid_request",
                     "Idempotency-Key")
        c.post(f"/api/v1/jobs/{first['jobId']}/cancel")


def test_queue_positions_follow_submission_order(api_server):
    key = api_server.new_key(credits=100)
    with client(api_server, key) as c:
        ids = [c.post(RUN, json=SHORT).json()["jobId"] for _ in range(3)]
        positions = [c.get(f"/api/v1/jobs/{i}").json()["queuePosition"] for i in ids]
        assert positions == sorted(positions) and len(set(positions)) == 3
        c.post(f"/api/v1/jobs/{ids[0]}/cancel")
        assert c.get(f"/api/v1/jobs/{ids[1]}").json()["queuePosition"] == positions[1] - 1
        for job_id in ids[1:]:
            c.post(f"/api/v1/jobs/{job_id}/cancel")


def test_models_lists_pixverse_v6_with_its_price(api_server):
    with client(api_server, api_server.new_key()) as c:
        models = c.get("/api/v1/models").json()["models"]
    assert models[0]["id"] == "pixverse-v6" and models[0]["creditCost"] == 10


def test_sse_of_a_cancelled_job_sends_progress_then_done_and_closes(api_server):
    key = api_server.new_key()
    with client(api_server, key) as c:
        job_id = c.post(RUN, json=SHORT).json()["jobId"]
        c.post(f"/api/v1/jobs/{job_id}/cancel")
        with c.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = parse_sse(response.iter_lines())
    assert [e for e, _ in events] == ["progress", "done"]
    assert events[0][1]["status"] == "cancelled" and events[1][1]["jobId"] == job_id


def test_media_links_refuse_forged_unsigned_and_odd_paths(api_server):
    with client(api_server) as c:
        for path in ("/media/job_000000000000000000000000/video.mp4",
                     "/media/job_000000000000000000000000/video.mp4?exp=99999999999&sig=AAAA",
                     "/media/job_000000000000000000000000/video.mp4?exp=soon&sig=AAAA"):
            assert_error(c.get(path), 403, "forbidden")
        for path in ("/media/..%2F..%2Fpixgen.db/video.mp4", "/media/job_000000000000000000000000/..%2Fsecret",
                     "/media/job_000000000000000000000000/signing_secret?exp=1&sig=x"):
            assert c.get(path).status_code == 404


def test_bad_input_never_answers_500(api_server):
    key = api_server.new_key(credits=1000)
    nasty = [b"null", b"[]", b'"x"', b"{}", b'{"prompt": null}', b'{"prompt": 5}', b'{"prompt": {"a": 1}}',
             b'{"prompt": "x", "seed": 1e400}', b'{"prompt": "x", "duration": 1.5}', b"\x00\x01",
             b'{"prompt": "' + "\u00e9".encode() * 3000 + b'"}']
    with client(api_server, key) as c:
        for raw in nasty:
            response = c.post(RUN, content=raw, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, (raw[:40], response.text)


def parse_sse(lines) -> list[tuple[str, dict]]:
    events, event, data = [], None, []
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and event:
            events.append((event, json.loads("".join(data))))
            event, data = None, []
    return events
