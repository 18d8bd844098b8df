"""Sound for a video: new sound under a finished (or given) video's own frames, which are kept bit for bit.

"Bit for bit" here is literal: the result's video stream is the source's, packet for packet (the same bytes and
timestamps: a remux), so its decoded frames are the source's exactly. On the toy model the engine holds the video
latents clean at every step (watched on the transformer) while the audio is denoised, so the sound follows the seed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from http_tools import wait_completed

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.route_sound import held_frames
from pixgen.errors import InvalidRequest
from pixgen.media.mp4 import Mp4Writer
from pixgen.media.probe import probe, read_audio, read_frames
from pixgen.media.remux import read_sound_source, replace_sound, video_packets

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RUN = "/api/v1/models/pixverse-v6/run"
ESTIMATE = "/api/v1/models/pixverse-v6/estimate"


def small_mp4(path: Path, frames: int = 25, *, size=(64, 32), codec: str = "libx264", rate: int = 24,
              audio: bool = True, still: bool = False) -> Path:
    """A short video of moving noise (one grey picture: ``still``), with a silent track unless ``audio`` is
    false."""
    rng = np.random.default_rng(frames)
    if codec == "libx264" and rate == 24:
        with Mp4Writer(path, *size, audio_sample_rate=16_000 if audio else None) as writer:
            if audio:
                writer.write_audio(np.zeros((2, round((frames - 1) / 24 * 16_000)), np.float32))
            shape = (frames, size[1], size[0], 3)
            writer.write_frames(np.full(shape, 128, np.uint8) if still else rng.integers(0, 255, shape, np.uint8))
        return path
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8),
                                               format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def data_uri(path: Path) -> str:
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


# -- the remux -------------------------------------------------------------------------------------------------
def test_the_remux_copies_every_video_packet_and_replaces_the_sound(tmp_path):
    source = small_mp4(tmp_path / "source.mp4", 49)
    t = np.arange(2 * 16_000) / 16_000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    replace_sound(source, tmp_path / "out.mp4", np.stack([tone, tone]), 16_000)
    assert video_packets(tmp_path / "out.mp4") == video_packets(source)  # bytes, pts and dts
    assert np.array_equal(read_frames(tmp_path / "out.mp4"), read_frames(source))
    facts = probe(tmp_path / "out.mp4")
    assert facts.audio_codec == "aac" and abs(facts.audio_seconds - 2.0) <= 0.1
    sound = read_audio(tmp_path / "out.mp4")
    assert sound is not None and np.abs(sound).max() > 0.1  # the new tone, not the source's silence


def test_a_source_is_read_for_its_length_and_refused_when_not_h264(tmp_path):
    facts = read_sound_source(small_mp4(tmp_path / "a.mp4", 121))
    assert (facts.num_frames, facts.fps, facts.seconds, facts.whole_seconds) == (121, Fraction(24), 5.0, 5)
    assert read_sound_source(small_mp4(tmp_path / "b.mp4", 31, rate=30, codec="libx264")).whole_seconds == 1
    with pytest.raises(InvalidRequest) as refused:
        read_sound_source(small_mp4(tmp_path / "c.mp4", 10, codec="mpeg4"))
    assert refused.value.field == "video" and "H.264" in refused.value.message
    (tmp_path / "d.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    with pytest.raises(InvalidRequest) as refused:
        read_sound_source(tmp_path / "d.mp4")
    assert refused.value.field == "video"


def test_the_held_frames_cover_the_video_on_the_24_fps_clock_in_whole_latents():
    assert held_frames(121, 24) == 121 and held_frames(25, 24) == 25 and held_frames(24, 24) == 25
    assert held_frames(31, 30) == 25 and held_frames(1, 24) == 1 and held_frames(2, 24) == 9


@pytest.mark.parametrize("body, field", [
    ({"prompt": "rain", "sound_only": True}, "video"),
    ({"prompt": "rain", "video": "data:video/mp4;base64,AAAA"}, "sound_only"),
    ({"prompt": "rain", "video": "data:video/mp4;base64,AAAA", "sound_only": True, "generate_audio": False},
     "generate_audio"),
    ({"prompt": "rain", "video": "data:video/mp4;base64,AAAA", "sound_only": True, "multi_clip": True},
     "multi_clip"),
    ({"prompt": "rain", "video": "data:video/mp4;base64,AAAA", "sound_only": True,
      "image_input": "data:image/png;base64,AAAA"}, "image_input"),
    ({"prompt": "rain", "video": "data:image/png;base64,AAAA", "sound_only": True}, "video"),
])
def test_a_sound_only_request_takes_a_video_and_nothing_that_makes_a_picture(body, field):
    with pytest.raises(InvalidRequest) as refused:
        parse_request(body)
    assert refused.value.field == field


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def engine(request):
    from pixgen.engine import load_engine

    return load_engine("tiny", dtype=request.param)


@pytest.fixture(scope="module")
def source(engine, tmp_path_factory):
    request = parse_request({"prompt": "a drummer on a rooftop", "duration": 1, "quality": "360p", "seed": 1,
                             "aspect_ratio": "1:1", "thinking_type": "disabled"})  # 1:1: the smallest 360p frames
    return engine.generate(request, tmp_path_factory.mktemp("sound") / "source.mp4").path


def test_new_sound_keeps_the_frames_bit_for_bit_and_follows_the_seed(engine, source, tmp_path):
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    ask = {"prompt": "rain on a tin roof", "thinking_type": "disabled", "quality": "360p"}
    one = engine.sound(source, parse_request({**ask, "seed": 1}), tmp_path / "one.mp4")
    again = engine.sound(source, parse_request({**ask, "seed": 1}), tmp_path / "again.mp4")
    two = engine.sound(source, parse_request({**ask, "seed": 2}), tmp_path / "two.mp4")
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before  # the source is untouched
    for result in (one, two):
        assert video_packets(result.path) == video_packets(source)
        assert np.array_equal(read_frames(result.path), read_frames(source))
        assert (result.width, result.height, result.num_frames, result.sound_only) == (360, 360, 25, True)
        facts = probe(result.path)
        assert facts.audio_codec == "aac" and abs(facts.audio_seconds - 1.0) <= 0.1
    a, b, c = read_audio(one.path), read_audio(again.path), read_audio(two.path)
    assert a is not None and b is not None and c is not None
    assert np.array_equal(a, b)  # same seed, same sound
    n = min(a.shape[1], c.shape[1])
    assert np.abs(a[:, :n] - c[:, :n]).mean() > 1e-4  # another seed, another sound
    assert one.provenance is not None and one.provenance.runs[0].seed == 1
    assert "stage1" in one.provenance.runs[0].sigmas and "stage2" not in one.provenance.runs[0].sigmas


def test_the_video_latents_are_held_clean_at_every_step(engine, source, tmp_path):
    seen: list[tuple[object, object, object, object]] = []

    def look(module, args, kwargs):  # after the hold's own pre-hook: what the transformer gets
        seen.append((kwargs["hidden_states"].detach().clone(), kwargs["timestep"].detach().clone(),
                     kwargs["audio_timestep"].detach().clone(), kwargs.get("sigma")))

    transformer = engine.pipes.text.transformer
    handle = transformer.register_forward_pre_hook(look, with_kwargs=True)
    try:
        engine.sound(source, parse_request({"prompt": "wind", "seed": 3, "thinking_type": "disabled",
                                            "quality": "360p"}), tmp_path / "held.mp4")
    finally:
        handle.remove()
    assert len(seen) == engine.recipe.num_inference_steps
    first = seen[0][0]
    for hidden, timestep, audio_timestep, sigma in seen:
        assert torch_equal(hidden, first)  # the video tokens never move
        assert float(timestep.abs().max()) == 0.0  # and are clean (timestep 0) at every step
        assert sigma is None or float(sigma.abs().max()) == 0.0  # sigma 0 too, as the reference's frozen stream
        assert float(audio_timestep.min()) > 0.0  # while the audio is denoised


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_the_request_s_video_gets_new_sound_through_generate(engine, tmp_path):
    video = small_mp4(tmp_path / "given.mp4", 31, size=(96, 64), audio=False)
    request = parse_request({"prompt": "birdsong", "video": data_uri(video), "sound_only": True, "seed": 5,
                             "quality": "360p", "thinking_type": "disabled"})
    result = engine.generate(request, tmp_path / "out.mp4")
    assert video_packets(result.path) == video_packets(video)
    assert (result.width, result.height, result.num_frames) == (96, 64, 31)
    assert abs(probe(result.path).audio_seconds - 30 / 24) <= 0.1


# -- through the job API ---------------------------------------------------------------------------------------
def client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def finished_job(server, key: str, *, status: str = "completed", duration: int = 2, deleted: bool = False,
                 extended_to: int | None = None, sound_for: str | None = None) -> str:
    """A job of ``key`` as a worker would have left it (written straight into the server's database)."""
    from sqlalchemy import update

    from pixgen.jobs.db import connect
    from pixgen.jobs.keys import authenticate
    from pixgen.jobs.schema import jobs
    from pixgen.jobs.store import JobStore

    db = connect(server.database_url, pool_size=1)
    try:
        request = parse_request({"prompt": "a fox in snow", "duration": duration, "quality": "360p", "seed": 1})
        job = JobStore(db).submit(authenticate(db, key).id, request, cost=10).job
        values = dict(status=status)
        if status == "completed":
            values.update(video_file=f"{job.id}-test.mp4", width=640, height=360, seconds=duration + 1 / 24,
                          has_audio=True, progress=100, finished_at=time.time(), media_deleted=deleted)
        if sound_for is not None:  # new sound for that job's video
            values.update(kind="sound", source_job_id=sound_for)
        if extended_to is not None:  # an extension's whole video
            values.update(duration=extended_to, seconds=extended_to + 1 / 24)
        with db.write() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values))
        return job.id
    finally:
        db.dispose()


def credits(c: httpx.Client) -> int:
    return c.get("/api/v1/jobs").json()["creditsRemaining"]


def test_sound_refusals_name_the_field_and_charge_nothing(api_server):
    key, other = api_server.new_key(credits=100), api_server.new_key(credits=100)
    done, pending = finished_job(api_server, key), finished_job(api_server, key, status="pending")
    gone, long = finished_job(api_server, key, deleted=True), finished_job(api_server, key, extended_to=20)
    theirs = finished_job(api_server, other)
    with client(api_server, key) as c:
        before = credits(c)
        for job_id, body, status, field in [
            (done, {"quality": "720p"}, 400, "quality"),
            (done, {"seed": "7"}, 400, "seed"),
            (done, {"prompt": ""}, 400, "prompt"),
            (pending, {}, 400, "jobId"),
            (gone, {}, 400, "jobId"),
            (long, {}, 400, "jobId"),  # 20 s: new sound is made for at most 15 s
            (theirs, {}, 404, "jobId"),
            ("job_0123456789abcdef01234567", {}, 404, "jobId"),
        ]:
            r = c.post(f"/api/v1/jobs/{job_id}/sound", json=body)
            assert (r.status_code, r.json().get("field")) == (status, field), (job_id, body, r.text)
        assert c.post("/api/v1/jobs/nope/sound").status_code == 404
        assert credits(c) == before


def test_sound_is_its_own_kind_charged_per_second(api_server):
    key = api_server.new_key(credits=100)
    source = finished_job(api_server, key, duration=4)
    with client(api_server, key) as c:
        r = c.post(f"/api/v1/jobs/{source}/sound")  # no body: the source's prompt, a drawn seed
        assert r.status_code == 200, r.text
        assert r.json()["creditCost"] == 4  # 4 s at the default 1 credit a second
        job = c.get(f"/api/v1/jobs/{r.json()['jobId']}").json()
        assert (job["kind"], job["sourceJobId"], job["duration"], job["prompt"]) == ("sound", source, 4,
                                                                                      "a fox in snow")
        c.post(f"/api/v1/jobs/{job['jobId']}/cancel")
        made = finished_job(api_server, key, sound_for=source)
        r = c.post(f"/api/v1/jobs/{made}/remix", json={"prompt": "hail"})
        assert (r.status_code, r.json()["field"]) == (400, "jobId") and "new sound" in r.json()["message"]
        r = c.post(f"/api/v1/jobs/{made}/sound", json={"prompt": "hail"})  # new sound for new sound: fine
        assert r.status_code == 200 and r.json()["creditCost"] == 2, r.text
        c.post(f"/api/v1/jobs/{r.json()['jobId']}/cancel")
        models = c.get("/api/v1/models").json()["models"][0]
        assert "sound-for-video" in models["capabilities"] and models["soundCreditCostPerSecond"] == 1


def test_a_bad_video_is_refused_naming_video_and_charges_nothing(api_server, tmp_path):
    not_h264 = data_uri(small_mp4(tmp_path / "mpeg4.mp4", 10, codec="mpeg4"))
    too_long = data_uri(small_mp4(tmp_path / "long.mp4", 16 * 24 + 1, size=(32, 32), audio=False, still=True))
    not_mp4 = "data:video/mp4;base64," + base64.b64encode(b"not a video at all").decode()
    for video in (not_h264, too_long, not_mp4, "data:video/mp4;base64,", "http://127.0.0.1:1/a.mp4"):
        key = api_server.new_key(credits=100)  # a key each: the test server allows 5 submits a minute
        with client(api_server, key) as c:
            for route in (RUN, ESTIMATE):
                r = c.post(route, json={"prompt": "rain", "video": video, "sound_only": True})
                assert (r.status_code, r.json().get("field")) == (400, "video"), (route, video[:40], r.text)
            assert credits(c) == 100


def test_a_given_video_is_charged_by_its_length_and_estimated_so(api_server, tmp_path):
    key = api_server.new_key(credits=100)
    video = data_uri(small_mp4(tmp_path / "three.mp4", 73, size=(64, 48), still=True))  # 3 s
    with client(api_server, key) as c:
        est = c.post(ESTIMATE, json={"prompt": "rain", "video": video, "sound_only": True})
        assert est.status_code == 200, est.text
        assert (est.json()["creditCost"], est.json()["duration"], est.json()["soundOnly"]) == (3, 3, True)
        r = c.post(RUN, json={"prompt": "rain", "video": video, "sound_only": True, "duration": 9})
        assert r.status_code == 200, r.text
        assert (r.json()["creditCost"], r.json()["creditsRemaining"]) == (3, 97)
        job = c.get(f"/api/v1/jobs/{r.json()['jobId']}").json()
        assert (job["kind"], job["duration"], job["sourceJobId"]) == ("sound", 3, None)
        c.post(f"/api/v1/jobs/{job['jobId']}/cancel")




def download(job: dict, path: Path) -> Path:
    path.write_bytes(httpx.get(job["output"]["video"], timeout=30).content)
    return path


def test_sound_jobs_run_end_to_end_and_leave_the_source_as_it_was(server, tmp_path):
    key = server.new_key(credits=100)
    with client(server, key) as c:
        r = c.post(RUN, json={"prompt": "a drummer", "duration": 1, "quality": "360p", "aspect_ratio": "1:1",
                              "seed": 2})
        source = wait_completed(c, r.json()["jobId"])
        original = download(source, tmp_path / "source.mp4")
        sounds = []
        for seed in (1, 2):
            r = c.post(f"/api/v1/jobs/{source['jobId']}/sound", json={"prompt": "thunder", "seed": seed})
            assert r.status_code == 200, r.text
            job = wait_completed(c, r.json()["jobId"])
            assert (job["kind"], job["sourceJobId"], job["hasAudio"], job["seed"]) == ("sound", source["jobId"],
                                                                                      True, seed)
            made = download(job, tmp_path / f"sound{seed}.mp4")
            assert video_packets(made) == video_packets(original)
            assert np.array_equal(read_frames(made), read_frames(original))
            sounds.append(read_audio(made))
        n = min(s.shape[1] for s in sounds)
        assert np.abs(sounds[0][:, :n] - sounds[1][:, :n]).mean() > 1e-4
        again = c.get(f"/api/v1/jobs/{source['jobId']}").json()
        assert {k: again[k] for k in ("status", "seed", "hasAudio", "kind", "duration")} == \
            {k: source[k] for k in ("status", "seed", "hasAudio", "kind", "duration")}
        assert download(again, tmp_path / "again.mp4").read_bytes() == original.read_bytes()
        manifest = c.get(f"/api/v1/jobs/{job['jobId']}/manifest").json()
        assert manifest["kind"] == "sound" and manifest["sourceJobId"] == source["jobId"]
        # The run route, with the video given.
        r = c.post(RUN, json={"prompt": "birdsong", "video": data_uri(original), "sound_only": True, "seed": 4})
        assert r.status_code == 200, r.text
        job = wait_completed(c, r.json()["jobId"])
        assert video_packets(download(job, tmp_path / "given.mp4")) == video_packets(original)


def test_the_raw_uri_decodes_in_memory(tmp_path):
    video = small_mp4(tmp_path / "m.mp4", 9)
    assert read_sound_source(io.BytesIO(video.read_bytes())).num_frames == 9


def test_pixgen_generate_gives_a_file_new_sound(tmp_path):
    import subprocess
    import sys

    video = small_mp4(tmp_path / "clip.mp4", 25, size=(96, 64), audio=False)
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "pixgen", "generate", "birdsong", "--video", str(video), "--sound-only",
           "--quality", "360p", "--seed", "3", "--quiet", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert video_packets(out) == video_packets(video) and probe(out).audio_codec == "aac"
    refused = subprocess.run([*cmd[:7], "--quiet", "-o", str(tmp_path / "no.mp4")], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "(--sound-only)" in refused.stderr and not (tmp_path / "no.mp4").exists()


def test_the_openai_form_takes_video_and_sound_only_too(api_server, tmp_path):
    key = api_server.new_key(credits=100)
    video = data_uri(small_mp4(tmp_path / "two.mp4", 49, size=(64, 48), still=True))  # 2 s
    with client(api_server, key) as c:
        r = c.post("/v1/videos", json={"model": "pixverse-v6", "prompt": "rain", "video": video, "sound_only": True})
        assert r.status_code == 200, r.text
        job = c.get(f"/api/v1/jobs/{r.json()['id']}").json()
        assert (job["kind"], job["duration"], job["creditCost"]) == ("sound", 2, 2)
        c.post(f"/api/v1/jobs/{job['jobId']}/cancel")
