"""Cloudflare Workers AI form: mapping on saved examples (no server), then the official SDK against a real server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cloudflare
import httpx
import pytest

from pixgen.api import cloudflare as cf
from pixgen.errors import InvalidRequest, PixgenError

EXAMPLES = Path(__file__).parent / "examples"


def _examples(prefix: str) -> list[Path]:
    found = sorted(EXAMPLES.glob(f"{prefix}*.json"))
    assert found, f"no {prefix}*.json examples"
    return found


def _to_request(example: dict):
    if example["model_name"] is None:
        return cf.to_video_request_wrapped(example["body"])
    return cf.to_video_request(example["body"], model_name=example["model_name"])


# -- mapping on saved examples ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", _examples("cloudflare_request_"), ids=lambda p: p.stem)
def test_saved_request_maps_to_the_canonical_spec(path: Path) -> None:
    example = json.loads(path.read_text())
    request = _to_request(example)
    for name, value in example["request"].items():
        assert getattr(request, name) == value, name


@pytest.mark.parametrize("path", _examples("cloudflare_invalid_") + _examples("cloudflare_model_not_found"),
                         ids=lambda p: p.stem)
def test_saved_bad_request_gets_the_saved_error_body(path: Path) -> None:
    example = json.loads(path.read_text())
    with pytest.raises(PixgenError) as caught:
        _to_request(example)
    assert caught.value.status == example["status"]
    assert cf.error_body(caught.value) == example["response"]


def test_model_id_with_or_without_slashes_around_is_pixverse_v6() -> None:
    assert cf.to_video_request({"prompt": "a cat"}, model_name="/pixverse/v6/").prompt == "a cat"


def test_completed_job_answers_the_workers_ai_envelope() -> None:
    example = json.loads((EXAMPLES / "cloudflare_response_completed.json").read_text())
    assert cf.from_job(None, example["video_url"]) == example["response"]


@pytest.mark.parametrize("name", ["cloudflare_response_failed", "cloudflare_response_cancelled"])
def test_job_that_ended_without_a_video_answers_an_error_body(name: str) -> None:
    from pixgen.jobs.store import Job

    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    error = cf.job_error(Job.from_row(example["job"]))
    assert error is not None and error.status == example["status"]
    assert cf.error_body(error) == example["response"]


def test_job_that_failed_on_its_input_answers_400_not_500() -> None:
    from pixgen.jobs.store import Job

    job = json.loads((EXAMPLES / "cloudflare_response_failed.json").read_text())["job"]
    job.update(error_code="invalid_request", error_message="image_input is not a readable PNG, JPEG or WebP image")
    error = cf.job_error(Job.from_row(job))
    assert (error.status, error.code) == (400, "invalid_request")
    assert cf.error_body(error)["errors"][0]["message"] == job["error_message"]


def test_error_without_a_field_has_no_source() -> None:
    body = cf.error_body(PixgenError("boom"))
    assert body == {"success": False, "errors": [{"code": "internal_error", "message": "boom"}], "messages": [],
                    "result": None}


def test_non_object_body_is_refused_naming_the_body() -> None:
    with pytest.raises(InvalidRequest) as caught:
        cf.to_video_request_wrapped(["pixverse/v6"])
    assert caught.value.field == "body"


# -- the official SDK against a real server --------------------------------------------------------------------
SHORT = {"duration": 1, "quality": "360p", "aspect_ratio": "16:9"}
PROMPT = "A golden retriever running through a field of sunflowers on a sunny day"


def sdk(server, key: str, **options):
    from cloudflare import Cloudflare

    return Cloudflare(api_token=key, base_url=f"{server.url}/client/v4", **options)


def jobs_of(server, key: str) -> dict:
    response = httpx.get(f"{server.url}/api/v1/jobs", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_sdk_sends_the_model_id_percent_encoded_and_it_routes(api_server):
    """The SDK asks for ``.../ai/run/pixverse%2Fv6``; a refusal in our shape proves the route matched."""
    client = sdk(api_server, api_server.new_key())
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.ai.run("pixverse/v6", account_id="acc", prompt="a cat", extra_body={"duration": 16})
    assert str(caught.value.request.url).endswith("/client/v4/accounts/acc/ai/run/pixverse%2Fv6")
    assert caught.value.status_code == 400
    assert caught.value.body == {"success": False, "errors": [{
        "code": "invalid_request", "message": "duration: Input should be less than or equal to 15",
        "source": {"pointer": "/duration"}}], "messages": [], "result": None}


def test_sdk_errors_carry_the_job_api_codes_and_statuses(api_server):
    key = api_server.new_key(credits=5)
    client = sdk(api_server, key, max_retries=0)
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client.ai.run("@cf/black-forest-labs/flux-1-schnell", account_id="acc", prompt="a cat")
    assert caught.value.body["errors"][0]["code"] == "model_not_found"
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.ai.run("pixverse/v6", account_id="acc", prompt="a cat", extra_body={"fps": 30})
    assert caught.value.body["errors"][0]["source"] == {"pointer": "/fps"}
    with pytest.raises(cloudflare.AuthenticationError) as caught:
        sdk(api_server, "pxg_not-a-key").ai.run("pixverse/v6", account_id="acc", prompt="a cat")
    assert caught.value.body["errors"][0]["code"] == "unauthorized"
    with pytest.raises(cloudflare.APIStatusError) as caught:  # 10 credits a video, 5 on the key
        client.ai.run("pixverse/v6", account_id="acc", prompt="a cat", extra_body=SHORT)
    assert caught.value.status_code == 402
    assert caught.value.body["errors"][0]["code"] == "insufficient_credits"
    paying = api_server.new_key(credits=100)  # a key that cannot pay is refused before its images are decoded
    with pytest.raises(cloudflare.BadRequestError) as caught:  # decoded at submit: refused, not a failed job
        sdk(api_server, paying, max_retries=0).ai.run("pixverse/v6", account_id="acc", prompt="a cat",
                                                      extra_body={**SHORT, "image_input": "data:image/png;base64,AAAA"})
    assert caught.value.body["errors"][0]["source"] == {"pointer": "/image_input"}
    assert jobs_of(api_server, key) == {"jobs": [], "hasMore": False, "creditsRemaining": 5}
    assert jobs_of(api_server, paying) == {"jobs": [], "hasMore": False, "creditsRemaining": 100}


def test_busy_key_is_429_with_retry_after(api_server):
    key = api_server.new_key(credits=100)
    for _ in range(3):  # the api_server's cap: 3 jobs queued or running per key (no worker runs them)
        queued = httpx.post(f"{api_server.url}/api/v1/models/pixverse-v6/run", json={"prompt": "a cat", **SHORT},
                            headers={"Authorization": f"Bearer {key}"})
        assert queued.status_code == 200, queued.text
    with pytest.raises(cloudflare.RateLimitError) as caught:
        sdk(api_server, key, max_retries=0).ai.run("pixverse/v6", account_id="acc", prompt="a cat", extra_body=SHORT)
    assert caught.value.response.headers["retry-after"].isdigit()
    assert caught.value.body["errors"][0]["code"] == "rate_limited"


def test_wrapped_form_refusals_name_the_input_field(api_server):
    headers = {"Authorization": f"Bearer {api_server.new_key()}"}
    url = f"{api_server.url}/client/v4/accounts/acc/ai/run"
    bad = httpx.post(url, headers=headers, json={"model": "pixverse/v6", "input": {"prompt": "a cat", "seed": -1}})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["source"] == {"pointer": "/input/seed"}
    image = httpx.post(url, headers=headers, json={"model": "pixverse/v6", "input": {
        "prompt": "a cat", "image_input": "data:image/jpeg;base64,AAAA"}})
    assert image.status_code == 400
    assert image.json()["errors"][0]["source"] == {"pointer": "/input/image_input"}
    other = httpx.post(url, headers=headers, json={"model": "@cf/meta/llama-3-8b-instruct", "input": {}})
    assert other.status_code == 404 and other.json()["errors"][0]["code"] == "model_not_found"
    broken = httpx.post(url, headers={**headers, "Content-Type": "application/json"}, content=b"{not json")
    assert broken.status_code == 400 and broken.json()["success"] is False


def test_client_that_gives_up_waiting_gets_its_job_cancelled_and_refunded(api_server):
    key = api_server.new_key(credits=100)
    client = sdk(api_server, key, max_retries=0, timeout=1.5)
    with pytest.raises(cloudflare.APITimeoutError):
        client.ai.run("pixverse/v6", account_id="acc", prompt="a cat", extra_body=SHORT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listing = jobs_of(api_server, key)
        if listing["jobs"] and listing["jobs"][0]["status"] == "cancelled":
            break
        time.sleep(0.2)
    assert [job["status"] for job in listing["jobs"]] == ["cancelled"]
    assert listing["creditsRemaining"] == 100


@pytest.mark.slow
def test_sdk_run_waits_for_the_video_and_answers_a_signed_url(server, tmp_path):
    from pixgen.media.probe import probe

    key = server.new_key(credits=100)
    client = sdk(server, key, timeout=600, max_retries=0)
    raw = client.ai.with_raw_response.run("pixverse/v6", account_id="acc", prompt=PROMPT,
                                          extra_body={**SHORT, "generate_audio": False, "seed": 7})
    assert raw.status_code == 200
    body = raw.http_response.json()
    assert body["success"] is True and body["errors"] == [] and body["state"] == "Completed"
    result = raw.parse()  # what `client.ai.run(...)` returns
    job_id = raw.headers["x-pixgen-job-id"]
    assert raw.headers["x-pixgen-seed"] == "7"
    assert result == {"video": body["result"]["video"]}
    assert result["video"].startswith(f"{server.url}/media/{job_id}/video.mp4?exp=")
    video = httpx.get(result["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "run.mp4"
    path.write_bytes(video.content)
    facts = probe(path)
    assert (facts.width, facts.height, facts.video_codec, facts.audio_codec) == (640, 360, "h264", None)
    assert abs(facts.num_frames - 25) <= 1


@pytest.mark.slow
def test_wrapped_form_as_in_the_seed_curl_waits_for_the_video(server):
    key = server.new_key(credits=100)
    response = httpx.post(f"{server.url}/client/v4/accounts/acc/ai/run", timeout=600,
                          headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                          json={"model": "pixverse/v6", "input": {"prompt": PROMPT, **SHORT, "aspect_ratio": "1:1"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result", "success", "errors", "messages", "state"}
    assert body["result"]["video"].startswith(f"{server.url}/media/")
    job = httpx.get(f"{server.url}/api/v1/jobs/{response.headers['x-pixgen-job-id']}",
                    headers={"Authorization": f"Bearer {key}"}).json()
    assert (job["status"], job["width"], job["height"], job["creditCost"]) == ("completed", 360, 360, 10)
