"""``audio`` through the service: listed in ``GET /api/v1/models``; bad audio (not audio, too long, a private URL,
empty, unreadable) is 400 naming ``audio`` with nothing charged; a URL is fetched into the request; a job made to
a soundtrack runs on the toy worker, follows the sound's length and says how it was fitted; the estimate and
``pixgen generate --audio`` agree."""

from __future__ import annotations

import base64
import io
import json
import os
import wave

import httpx
import numpy as np
import pytest
from http_tools import serve_folder

from pixgen.media.probe import probe, read_audio
from pixgen.testing import wait_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RUN = "/api/v1/models/pixverse-v6/run"


def wav(seconds: float, rate: int = 8000, channels: int = 2, freq: float = 440.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    sound = 0.4 * np.sin(2 * np.pi * freq * t)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(np.round(sound * 32767).astype("<i2"), channels).tobytes())
    return buf.getvalue()


def uri(data: bytes, subtype: str = "wav") -> str:
    return f"data:audio/{subtype};base64," + base64.b64encode(data).decode()


def client(server, key):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_models_lists_audio_to_video_and_what_audio_it_takes(api_server):
    with client(api_server, api_server.new_key()) as c:
        model = c.get("/api/v1/models").json()["models"][0]
    assert "audio-to-video" in model["capabilities"]
    assert model["parameters"]["audio"] == {"formats": ["wav", "mp3", "aac", "m4a", "flac", "ogg"],
                                            "max_seconds": 15.0}


@pytest.mark.parametrize("audio,message", [
    (uri(b"\x89PNG\r\n\x1a\n" + b"\0" * 64), "not a WAV"),  # not audio (a PNG)
    (uri(wav(15.5, rate=1000, channels=1)), "longer than 15 s"),
    (uri(b""), "audio"),  # empty
    (uri(wav(0.0)), "no sound"),  # a WAV holding no samples
    ("data:image/png;base64,AAAA", "audio"),  # not an audio data URI
    ("http://127.0.0.1:9/voice.wav", "audio"),  # a private address: the SSRF guard
    ("http://169.254.169.254/latest/voice.mp3", "audio"),  # the metadata address
])
def test_bad_audio_is_400_naming_audio_and_charges_nothing(api_server, audio, message):
    key = api_server.new_key(credits=30)
    with client(api_server, key) as c:
        for route in (RUN, "/api/v1/models/pixverse-v6/estimate"):
            r = c.post(route, json={"prompt": "a drummer", "quality": "360p", "audio": audio})
            assert r.status_code == 400, r.text
            assert r.json()["code"] == "invalid_request" and r.json()["field"] == "audio", r.text
            assert message in r.json()["message"], r.text
        listed = c.get("/api/v1/jobs").json()
    assert listed["creditsRemaining"] == 30 and listed["jobs"] == []


@pytest.mark.parametrize("extra,field", [
    ({"multi_clip": True}, "multi_clip"),
    ({"duration": None}, "duration"),  # null duration without audio... and with it, given explicitly
])
def test_audio_rules_across_fields_are_400_naming_the_field(api_server, extra, field):
    key = api_server.new_key(credits=30)
    body = {"prompt": "a drummer", "quality": "360p", **extra}
    if field == "multi_clip":
        body["audio"] = uri(wav(0.5))
    with client(api_server, key) as c:
        r = c.post(RUN, json=body)
        assert r.status_code == 400 and r.json()["field"] == field, r.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 30


def test_the_estimate_follows_the_sounds_length_and_the_job_records_its_duration(api_server):
    key = api_server.new_key(credits=30)
    with client(api_server, key) as c:
        est = c.post("/api/v1/models/pixverse-v6/estimate",
                     json={"prompt": "a drummer", "quality": "360p", "audio": uri(wav(1.3))}).json()
        assert (est["frames"], est["duration"]) == (33, 2), est  # 1.3 s → 31.2 → 32 frames + the first
        given = c.post("/api/v1/models/pixverse-v6/estimate",
                       json={"prompt": "a drummer", "quality": "360p", "audio": uri(wav(1.3)), "duration": 3}).json()
        assert (given["frames"], given["duration"]) == (73, 3)
        r = c.post(RUN, json={"prompt": "a drummer", "quality": "360p", "audio": uri(wav(1.3))})
        assert r.status_code == 200, r.text
        job = c.get(f"/api/v1/jobs/{r.json()['jobId']}").json()
    assert job["duration"] == 2 and job["status"] == "pending"


def test_the_openai_form_takes_the_soundtrack_as_a_file_upload_typed_by_its_bytes(api_server):
    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore

    key = api_server.new_key(credits=30)
    with client(api_server, key) as c:
        r = c.post("/v1/videos", data={"model": "pixverse-v6", "prompt": "a drummer", "size": "640x360"},
                   files={"audio": ("beat.wav", wav(0.5), "application/octet-stream")})
        assert r.status_code == 200, r.text
        bad = c.post("/v1/videos", data={"model": "pixverse-v6", "prompt": "a drummer"},
                     files={"audio": ("beat.wav", b"not a sound at all", "audio/wav")})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "audio", bad.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 20
    db = connect(api_server.database_url, pool_size=1)
    try:
        stored = json.loads(JobStore(db).get(r.json()["id"]).request)
    finally:
        db.dispose()
    assert stored["audio"] == uri(wav(0.5)) and stored["duration"] is None  # typed by its bytes, length its own


@pytest.fixture(scope="module")
def audio_host(tmp_path_factory):
    """A loopback HTTP server with ``/voice.wav`` and ``/picture.png``."""
    root = tmp_path_factory.mktemp("audio-files")
    (root / "voice.wav").write_bytes(wav(0.5))
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with serve_folder(root) as url:
        yield url


def test_an_audio_url_is_fetched_into_the_request_and_a_non_audio_url_is_refused(fetch_server, audio_host):
    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore

    key = fetch_server.new_key(credits=30)
    with client(fetch_server, key) as c:
        r = c.post(RUN, json={"prompt": "a drummer", "quality": "360p", "audio": audio_host + "/voice.wav"})
        assert r.status_code == 200, r.text
        bad = c.post(RUN, json={"prompt": "a drummer", "quality": "360p", "audio": audio_host + "/picture.png"})
        assert bad.status_code == 400 and bad.json()["field"] == "audio", bad.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 20
    db = connect(fetch_server.database_url, pool_size=1)
    try:
        stored = json.loads(JobStore(db).get(r.json()["jobId"]).request)
    finally:
        db.dispose()
    assert stored["audio"] == uri(wav(0.5)) and stored["duration"] is None


@pytest.mark.slow
def test_a_job_made_to_a_soundtrack_completes_with_the_sound_and_says_how_it_fitted(server, tmp_path):
    key = server.new_key(credits=100)
    with client(server, key) as c:
        r = c.post(RUN, json={"prompt": "a drummer on a rooftop", "quality": "360p", "seed": 5,
                              "audio": uri(wav(1.25, rate=24000, freq=330.0))})
        assert r.status_code == 200, r.text
        url = f"/api/v1/jobs/{r.json()['jobId']}"
        job = wait_for(lambda: (j := c.get(url).json())["status"] in ("completed", "failed") and j, timeout=300)
        assert job["status"] == "completed", job
        assert job["soundtrack"] == {"givenSeconds": 1.25, "videoSeconds": 1.25, "cutSeconds": 0.0,
                                     "paddedSeconds": 0.0}
        assert job["duration"] == 2 and job["hasAudio"] is True
        video = c.get(job["output"]["video"]).content
    path = tmp_path / "job.mp4"
    path.write_bytes(video)
    facts = probe(path)
    assert facts.num_frames == 31 and facts.audio_seconds == pytest.approx(1.25, abs=0.05)
    heard = read_audio(path)
    t = np.arange(heard.shape[1]) / facts.audio_sample_rate
    reference = 0.4 * np.sin(2 * np.pi * 330.0 * t)
    n = min(heard.shape[1], round(1.25 * facts.audio_sample_rate))
    corr = np.dot(heard[0, :n], reference[:n]) / np.sqrt(np.dot(heard[0, :n], heard[0, :n]) *
                                                         np.dot(reference[:n], reference[:n]))
    assert corr >= 0.99


def test_generate_takes_audio_from_a_file(tmp_path):
    (tmp_path / "voice.wav").write_bytes(wav(1.0, rate=24000))
    from cli_tools import pixgen

    out = tmp_path / "cli.mp4"
    proc = pixgen("generate", "a drummer", "--audio", str(tmp_path / "voice.wav"), "--quality", "360p", "--seed",
                  "3", "--thinking", "disabled", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    facts = probe(out)
    assert facts.num_frames == 25 and facts.audio_seconds == pytest.approx(1.0, abs=0.05)


# -- the web page ------------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_the_page_makes_a_video_to_a_soundtrack_as_long_as_it(page, server):
    from web_browser import enter_key

    secret = server.new_key(credits=1000, name="soundtrack page")
    enter_key(page, secret)
    soundtrack = page.get_by_label("Soundtrack", exact=True)
    soundtrack.wait_for(state="visible", timeout=10_000)  # /api/v1/models lists audio-to-video
    page.get_by_label("Prompt", exact=True).fill("A drummer on a rooftop at dusk")
    page.get_by_label("Quality", exact=True).select_option("360p")
    soundtrack.set_input_files(files=[{"name": "beat.wav", "mimeType": "audio/wav",
                                       "buffer": wav(1.5, rate=24000)}])
    page.get_by_label("Duration", exact=True).fill("")  # as long as the sound
    page.wait_for_function("document.getElementById('output-size').textContent.includes('soundtrack')",
                           timeout=10_000)
    page.get_by_role("button", name="Estimate", exact=True).click()
    estimate = page.locator("#estimate")
    estimate.wait_for(state="visible", timeout=10_000)
    assert "640×360, 37 frames" in estimate.text_content(), estimate.text_content()

    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#job-result").wait_for(state="visible", timeout=300_000)
    job_id = page.locator("#job-id").text_content()
    job = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {secret}"}).json()
    assert job["status"] == "completed" and job["hasAudio"] is True, job
    assert job["soundtrack"]["givenSeconds"] == 1.5 and job["soundtrack"]["cutSeconds"] == 0
