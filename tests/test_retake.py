"""Retake: regenerating [start, end) of a finished video, keeping the rest frame for frame, sound spliced in.

What "kept frame for frame" can honestly mean through H.264: the frames the engine hands the encoder outside the
range ARE the source's decoded frames, bit for bit (watched on the writer); decoding the output then gives back
those frames within one more H.264 generation, while the retaken frames are new.
"""

from __future__ import annotations

import os
import time

import httpx
import numpy as np
import pytest
from http_tools import wait_completed

from pixgen.core.retake import plan_range, plan_window
from pixgen.core.spec import parse_request
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.engine.ltx2.retake import splice_audio
from pixgen.errors import InvalidRequest
from pixgen.media import mp4
from pixgen.media.probe import probe, read_audio, read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RUN = "/api/v1/models/pixverse-v6/run"
RULE = LTX2_CAPABILITIES.retake  # LTX-2's: 8 frames a latent, 17 frames before, 3 after, 15 s


# -- the range rule --------------------------------------------------------------------------------------------
def test_a_range_inside_the_video_is_whole_latents_between_the_frames_either_side():
    w = plan_window(121, 24, 48, RULE)  # 1 s .. 2 s of a 5 s video: already whole latents
    assert (w.start, w.end, w.before, w.after, w.after_latent, w.gen_frames) == (24, 48, 17, (48, 56, 64), 6, 65)
    assert w.window_start + 8 * (w.after_latent - 1) + 1 == w.end  # the first kept frame starts its latent
    w = plan_window(121, 12, 24, RULE)  # 12 frames → 16: the end moves 4 frames later
    assert (w.start, w.end, w.before) == (12, 28, 9)
    assert (w.before + w.frames - 1) % 8 == 0


def test_a_range_at_the_start_or_to_the_end_needs_frames_on_one_side_only():
    w = plan_window(121, 0, 24, RULE)
    assert (w.before, w.end, w.after) == (0, 25, (25, 33, 41))
    w = plan_window(121, 100, 120, RULE)  # ends on the last frame: to the end, the last frame included
    assert (w.end, w.after, w.before, w.frames) == (121, (), 17, 21)
    assert (w.gen_frames - 1) % 8 == 0 and w.gen_frames >= w.before + w.frames


@pytest.mark.parametrize("start, end, field", [
    (-1, 2, "start"), (5, 5, "start"), (1, 5.5, "end"), (2, 1, "end"), (1, 1.2, "end"), ("1", 2, "start"),
    (1, True, "end"), (0, float("nan"), "end"),
])
def test_bad_ranges_are_refused_naming_the_field(start, end, field):
    with pytest.raises(InvalidRequest) as info:
        plan_range(start, end, 121, RULE)
    assert info.value.field == field


def test_at_most_15_seconds_are_retaken():
    with pytest.raises(InvalidRequest) as info:
        plan_range(0, 16, 20 * 24 + 1, RULE)
    assert info.value.field == "end"
    assert plan_range(0, 15, 20 * 24 + 1, RULE).frames == 15 * 24 + 1


# -- the sound's joins ----------------------------------------------------------------------------------------
def largest_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, axis=1)).max())


def test_spliced_sound_keeps_the_source_outside_and_does_not_click_at_the_joins():
    rate = 24000
    t = np.arange(2 * rate) / rate
    source = np.tile(0.5 * np.sin(2 * np.pi * 220 * t), (2, 1)).astype(np.float32)
    new = np.tile(0.5 * np.cos(2 * np.pi * 330 * t + 1.0), (2, 1)).astype(np.float32)  # out of phase at the joins
    start, end, offset, fade = 12000, 30000, 6000, 1200
    out = splice_audio(source, new, start=start, end=end, offset=offset, fade=fade)
    assert np.array_equal(out[:, :start], source[:, :start]) and np.array_equal(out[:, end:], source[:, end:])
    assert np.array_equal(out[:, start + fade:end - fade], new[:, start + fade - offset:end - fade - offset])
    natural = max(largest_step(source), largest_step(new))
    for join in (start, end):
        assert largest_step(out[:, join - 50:join + 50]) <= natural * 1.05
    hard = splice_audio(source, new, start=start, end=end, offset=offset, fade=0)  # what the fade prevents
    assert largest_step(hard[:, start - 2:start + 2]) > 3 * natural


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


@pytest.fixture(scope="module")
def source(engine, tmp_path_factory):
    request = parse_request({"prompt": "a kite in the wind", "duration": 2, "quality": "360p", "seed": 1,
                             "aspect_ratio": "16:9", "thinking_type": "disabled"})
    return engine.generate(request, tmp_path_factory.mktemp("retake") / "source.mp4").path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def test_frames_outside_the_range_are_the_source_frame_for_frame(engine, source, tmp_path, monkeypatch):
    written: list[np.ndarray] = []
    write = mp4.Mp4Writer.write_frames

    def watch(writer, frames):  # looks, then writes as always
        written.append(frames.copy())
        write(writer, frames)

    monkeypatch.setattr(mp4.Mp4Writer, "write_frames", watch)
    request = parse_request({"prompt": "the kite dives", "seed": 9, "thinking_type": "disabled"})
    result = engine.retake(source, request, 0.5, 1.0, tmp_path / "retake.mp4")
    assert (result.retake.start_frame, result.retake.end_frame) == (12, 28)  # 12 frames, snapped to 16
    src, sent, out = read_frames(source), np.concatenate(written), read_frames(result.path)
    assert sent.shape == src.shape == out.shape == (49, 360, 640, 3)
    a, b = 12, 28
    assert np.array_equal(sent[:a], src[:a]) and np.array_equal(sent[b:], src[b:])  # bit for bit to the encoder
    assert np.abs(sent[a:b].astype(int) - src[a:b]).mean() > 5  # the range is new
    kept = [psnr(out[i], src[i]) for i in [*range(a), *range(b, 49)]]
    retaken = [psnr(out[i], src[i]) for i in range(a, b)]
    assert min(kept) > 27 and max(retaken) < 22  # one more H.264 generation vs a new picture
    facts = probe(result.path)
    assert facts.audio_codec == "aac" and abs(facts.audio_seconds - 48 / 24) <= 0.1
    # The sound: as long as the source's, no step at the joins beyond what the source itself has.
    sound, original = read_audio(result.path), read_audio(source)
    rate = facts.audio_sample_rate
    for frame in (a, b):
        join = round(frame / 24 * rate)
        assert largest_step(sound[:, join - 100:join + 100]) <= largest_step(original) * 1.05


def test_the_cli_retakes_a_file(source, tmp_path):
    from cli_tools import pixgen

    out = tmp_path / "cli.mp4"
    cmd = ["retake", str(source), "--start", "0.5", "--end", "2.5", "--prompt", "x", "-o", str(out)]
    refused = pixgen(*cmd)
    assert refused.returncode == 2 and "(--end)" in refused.stderr and not out.exists()
    cmd[cmd.index("2.5")] = "2"  # to the end
    done = pixgen(*cmd, "--seed", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "retook 0.500–2.000 s" in done.stdout
    frames, src = read_frames(out), read_frames(source)
    assert frames.shape == src.shape and psnr(frames[0], src[0]) > 27


# -- through the job API ---------------------------------------------------------------------------------------
def client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def finished_job(server, key: str, *, status: str = "completed", duration: int = 2, kind: str = "generate") -> str:
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
        values = dict(status=status, kind=kind)
        if status == "completed":
            values.update(video_file=f"{job.id}-test.mp4", width=640, height=360, seconds=duration + 1 / 24,
                          has_audio=True, progress=100, finished_at=time.time())
        with db.write() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values))
        return job.id
    finally:
        db.dispose()


def test_the_store_keeps_a_retakes_range_and_hashes_it_on_sqlite_and_postgres(db_url):
    from pixgen.jobs.db import connect
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.origin import JobKind, Origin
    from pixgen.jobs.store import JobStore, request_hash

    db = connect(db_url, pool_size=1)
    try:
        key_id = create_key(db, credits=50)[0].id
        request = parse_request({"prompt": "a fox", "duration": 1, "seed": 2})
        job = JobStore(db).submit(key_id, request, cost=3, origin=Origin(
            kind=JobKind.RETAKE, source_job_id="job_src", duration=4, retake=(1.0, 2.0 + 2 / 3))).job
        stored = JobStore(db).get(job.id)
        assert (stored.kind, stored.retake_start, stored.retake_end, stored.duration) == ("retake", 1.0,
                                                                                          2.0 + 2 / 3, 4)
    finally:
        db.dispose()
    assert request_hash(request, Origin(kind=JobKind.RETAKE, source_job_id="job_src", retake=(1.0, 2.0))) != \
        request_hash(request, Origin(kind=JobKind.RETAKE, source_job_id="job_src", retake=(1.0, 3.0)))


def test_retake_refusals_name_the_field_and_charge_nothing(api_server):
    key, other = api_server.new_key(credits=100), api_server.new_key(credits=100)
    done, pending = finished_job(api_server, key), finished_job(api_server, key, status="pending")
    theirs = finished_job(api_server, other)
    with client(api_server, key) as c:
        credits = c.get("/api/v1/jobs").json()["creditsRemaining"]
        for job_id, body, status, field in [
            (done, {"start": 1.5, "end": 1.0}, 400, "end"),
            (done, {"start": 0.5, "end": 0.6}, 400, "end"),  # shorter than one latent frame
            (done, {"start": 0.5, "end": 3}, 400, "end"),  # past the 2 s video
            (done, {"start": -1, "end": 1}, 400, "start"),
            (done, {"end": 1}, 400, "start"),
            (done, {"start": 0, "end": 1, "quality": "720p"}, 400, "quality"),
            (done, {"start": 0, "end": 1, "seed": "7"}, 400, "seed"),
            (pending, {"start": 0, "end": 1}, 400, "jobId"),
            (theirs, {"start": 0, "end": 1}, 404, "jobId"),
            ("job_nope", {"start": 0, "end": 1}, 404, "jobId"),
        ]:
            r = c.post(f"/api/v1/jobs/{job_id}/retake", json=body)
            assert (r.status_code, r.json().get("field")) == (status, field), (body, r.text)
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == credits


def test_a_retake_can_be_retaken_but_not_remixed(api_server):
    key = api_server.new_key(credits=100)
    retook = finished_job(api_server, key, kind="retake")
    with client(api_server, key) as c:
        r = c.post(f"/api/v1/jobs/{retook}/remix", json={"prompt": "another"})
        assert (r.status_code, r.json()["field"]) == (400, "jobId") and "retake" in r.json()["message"]
        r = c.post(f"/api/v1/jobs/{retook}/retake", json={"start": 0, "end": 1})
        assert r.status_code == 200, r.text
        c.post(f"/api/v1/jobs/{r.json()['jobId']}/cancel")


def test_a_retake_is_charged_for_its_seconds_only(api_server):
    key = api_server.new_key(credits=100)
    source = finished_job(api_server, key, duration=4)  # 10 credits for 4 s
    with client(api_server, key) as c:
        r = c.post(f"/api/v1/jobs/{source}/retake", json={"start": 1.0, "end": 2.5, "prompt": "a hare"})
        assert r.status_code == 200, r.text
        assert r.json()["creditCost"] == 5  # ceil(1.5 s) = 2 s of 4: half the price
        job = c.get(f"/api/v1/jobs/{r.json()['jobId']}").json()
        assert (job["kind"], job["sourceJobId"], job["duration"]) == ("retake", source, 4)
        assert job["retake"] == {"start": 1.0, "end": round(64 / 24, 4)}  # 36 frames → 40: whole latents
        assert r.json()["creditsRemaining"] == 100 - 10 - 5
        c.post(f"/api/v1/jobs/{job['jobId']}/cancel")


def test_a_retake_job_runs_end_to_end(server):
    key = server.new_key(credits=100)
    with client(server, key) as c:
        r = c.post(RUN, json={"prompt": "a kite", "duration": 1, "quality": "360p", "seed": 2})
        source = wait_completed(c, r.json()["jobId"])
        r = c.post(f"/api/v1/jobs/{source['jobId']}/retake", json={"start": 0.0, "end": 0.5, "seed": 3})
        assert r.status_code == 200, r.text
        job = wait_completed(c, r.json()["jobId"])
        assert job["status"] == "completed" and job["kind"] == "retake", job
        assert job["retake"] == {"start": 0.0, "end": round(17 / 24, 4)}  # 12 frames from the start → 17
        before = read_video(c, source, server.data_dir)
        after = read_video(c, job, server.data_dir)
        assert before.shape == after.shape == (25, 360, 640, 3)
        assert min(psnr(after[i], before[i]) for i in range(17, 25)) > 27
        assert max(psnr(after[i], before[i]) for i in range(17)) < 22
        # Its manifest has what every route's result carries (one result builder): the shot that ran with its
        # seed and sigmas, the recipe's settings and the runtime.
        manifest = c.get(f"/api/v1/jobs/{job['jobId']}/manifest").json()
        assert manifest["kind"] == "retake" and manifest["sourceJobId"] == source["jobId"]
        assert [(s["index"], s["seed"]) for s in manifest["shots"]] == [(0, 3)]
        assert manifest["shots"][0]["sigmas"]["stage1"] and manifest["shots"][0]["prompt"]
        assert manifest["recipeSettings"]["num_inference_steps"] == 3
        assert manifest["runtime"]["device"] == "cpu" and manifest["runtime"]["dtype"] == "float32"




def read_video(c: httpx.Client, job: dict, folder) -> np.ndarray:
    path = folder / f"{job['jobId']}.mp4"
    path.write_bytes(httpx.get(job["output"]["video"], timeout=30).content)
    return read_frames(path)
