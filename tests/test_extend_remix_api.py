"""Extend and remix on the job API and the OpenAI form (the official SDK's ``videos.extend`` / ``videos.remix``).

Fast part: an API-only server (``api_server``) with finished source jobs written into its database, so every
request rule is checked without running the model. Slow part: the toy-model server (``server``) runs a source,
a remix and an extension end to end.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import openai
import pytest
from sqlalchemy import update

from pixgen.core.spec import parse_request
from pixgen.errors import InvalidRequest
from pixgen.jobs.db import connect
from pixgen.jobs.keys import authenticate
from pixgen.jobs.origin import JobKind, Origin
from pixgen.jobs.schema import jobs
from pixgen.jobs.store import JobStore

RUN = "/api/v1/models/pixverse-v6/run"
SOURCE = {"prompt": "a red fox trots through fresh snow", "duration": 2, "quality": "360p", "aspect_ratio": "1:1",
          "seed": 1234, "style": "anime", "negative_prompt": "blur", "generate_audio": True}


def client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def sdk(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0, timeout=60)


def sdk_extend(oa: openai.OpenAI, video_id: str, **kwargs):
    """``videos.extend`` of a video by id.

    openai 3.54's ``extend`` takes ``video`` for a file to upload and raises on ``{"id": ...}`` before sending
    anything; the id then rides in ``extra_body``, which the SDK sends as the same ``video[id]`` form field.
    """
    try:
        return oa.videos.extend(video={"id": video_id}, **kwargs)
    except RuntimeError as exc:
        if "Expected entry at `video`" not in str(exc):
            raise
    extra_body = {**kwargs.pop("extra_body", {}), "video": {"id": video_id}}
    return oa.videos.extend(video=openai.omit, extra_body=extra_body, **kwargs)


def finished_source(server, key: str, *, status: str = "completed", media_deleted: bool = False,
                    duration: int | None = None, **fields) -> str:
    """A job of ``key`` as a worker would have left it (written straight into the server's database)."""
    db = connect(server.database_url, pool_size=1)
    try:
        store = JobStore(db)
        request = parse_request({**SOURCE, **fields})
        job = store.submit(authenticate(db, key).id, request, cost=10).job
        values = dict(status=status, media_deleted=media_deleted)
        if status == "completed":
            values.update(video_file=f"{job.id}-test.mp4", width=360, height=360, seconds=request.duration + 1 / 24,
                          has_audio=request.generate_audio, progress=100, finished_at=time.time())
        if duration is not None:
            values["duration"] = duration
        with db.write() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values))
        return job.id
    finally:
        db.dispose()


def stored(server, job_id: str):
    db = connect(server.database_url, pool_size=1)
    try:
        return JobStore(db).get(job_id)
    finally:
        db.dispose()


def assert_refused(response: httpx.Response, field: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field and body["code"] == ("invalid_request" if status == 400 else "not_found")


# -- job API ---------------------------------------------------------------------------------------------------
def test_extend_queues_a_charged_job_continuing_the_source(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        answer = c.post(f"/api/v1/jobs/{source}/extend", json={"prompt": "the fox leaps into a drift",
                                                                "duration": 3, "seed": 9})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "pending" and body["creditCost"] == 10 and body["creditsRemaining"] == 80
        job = c.get(body["statusUrl"]).json()
    assert job["kind"] == "extend" and job["sourceJobId"] == source and job["remixOf"] is None
    assert job["duration"] == 5 and job["prompt"] == "the fox leaps into a drift" and job["seed"] == 9
    assert (job["width"], job["height"], job["quality"]) == (360, 360, "360p")
    request = json.loads(stored(api_server, body["jobId"]).request)
    assert request["duration"] == 3 and request["aspect_ratio"] == "1:1" and request["style"] == "anime"
    assert request["negative_prompt"] == "blur" and request["generate_audio"] is True
    assert request["image_input"] is None


def test_extend_without_a_body_continues_with_the_source_prompt_for_five_seconds(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        job = c.get(c.post(f"/api/v1/jobs/{source}/extend").json()["statusUrl"]).json()
    assert job["prompt"] == SOURCE["prompt"] and job["duration"] == 7 and isinstance(job["seed"], int)


def test_remix_keeps_every_setting_and_the_seed_with_a_new_prompt(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        answer = c.post(f"/api/v1/jobs/{source}/remix", json={"prompt": "a grey wolf trots through snow"})
        assert answer.status_code == 200, answer.text
        job = c.get(answer.json()["statusUrl"]).json()
    assert job["kind"] == "generate" and job["remixOf"] == source and job["seed"] == SOURCE["seed"]
    before = json.loads(stored(api_server, source).request)
    after = json.loads(stored(api_server, job["jobId"]).request)
    assert after == {**before, "prompt": "a grey wolf trots through snow"}


def test_remix_of_an_extension_extends_the_same_video_again(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        extension = c.post(f"/api/v1/jobs/{source}/extend", json={"duration": 2}).json()["jobId"]
    db = connect(api_server.database_url, pool_size=1)
    with db.write() as conn:  # as if a worker had finished it
        conn.execute(update(jobs).where(jobs.c.id == extension).values(
            status="completed", video_file="x.mp4", width=360, height=360, has_audio=True, finished_at=time.time()))
    db.dispose()
    with client(api_server, key) as c:
        job = c.get(c.post(f"/api/v1/jobs/{extension}/remix", json={"prompt": "now at night"}).json()["statusUrl"])
    job = job.json()
    assert job["kind"] == "extend" and job["sourceJobId"] == source and job["remixOf"] == extension
    assert job["duration"] == 4


@pytest.mark.parametrize("body, field", [
    ({"duration": 0}, "duration"), ({"duration": 16}, "duration"), ({"duration": "5"}, "duration"),
    ({"duration": 1.5}, "duration"), ({"duration": None}, "duration"), ({"prompt": 5}, "prompt"),
    ({"prompt": "x" * 2049}, "prompt"), ({"seed": -1}, "seed"), ({"seed": 2**31}, "seed"),
    ({"style": "oil"}, "style"), ({"thinking_type": "maybe"}, "thinking_type"),
    ({"camera_movement": "barrel_roll"}, "camera_movement"), ({"negative_prompt": 3}, "negative_prompt"),
    ({"aspect_ratio": "16:9"}, "aspect_ratio"), ({"quality": "1080p"}, "quality"),
    ({"resolution": "720p"}, "resolution"), ({"generate_audio": False}, "generate_audio"),
    ({"image_input": "data:image/png;base64,AAAA"}, "image_input"), ({"image_url": "http://x/a.png"}, "image_url"),
    ({"multi_clip": True}, "multi_clip"), ({"colour": "red"}, "colour"), ([1, 2], "body"),
])
def test_extend_refuses_each_bad_field_with_400_naming_it_and_charges_nothing(api_server, body, field):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        assert_refused(c.post(f"/api/v1/jobs/{source}/extend", json=body), field)
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 90  # the source's 10 only


@pytest.mark.parametrize("body, field", [
    ({}, "prompt"), ({"prompt": ""}, "prompt"), ({"prompt": "   "}, "prompt"), ({"prompt": 7}, "prompt"),
    ({"prompt": "x" * 2049}, "prompt"), ({"prompt": "a", "seed": 3}, "seed"),
    ({"prompt": "a", "duration": 2}, "duration"), ({"prompt": "a", "junk": 1}, "junk"), ("not json", "body"),
])
def test_remix_refuses_each_bad_field_with_400_naming_it_and_charges_nothing(api_server, body, field):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        if isinstance(body, str):
            answer = c.post(f"/api/v1/jobs/{source}/remix", content=body, headers={"Content-Type": "application/json"})
        else:
            answer = c.post(f"/api/v1/jobs/{source}/remix", json=body)
        assert_refused(answer, field)
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 90


@pytest.mark.parametrize("action", ["extend", "remix"])
def test_only_a_completed_kept_video_of_the_same_key_is_a_source(api_server, action):
    key, other = api_server.new_key(credits=100), api_server.new_key(credits=100)
    pending = finished_source(api_server, key, status="pending")
    failed = finished_source(api_server, key, status="failed")
    purged = finished_source(api_server, key, media_deleted=True)
    foreign = finished_source(api_server, other)
    long_one = finished_source(api_server, key, duration=58)
    body = {"prompt": "again", **({"duration": 3} if action == "extend" else {})}
    with client(api_server, key) as c:
        for job_id in (pending, failed, purged):
            assert_refused(c.post(f"/api/v1/jobs/{job_id}/{action}", json=body), "jobId")
        for job_id in (foreign, "job_does_not_exist"):
            assert_refused(c.post(f"/api/v1/jobs/{job_id}/{action}", json=body), "jobId", status=404)
        if action == "extend":  # 58 s + 3 s is over the 60 s cap
            assert_refused(c.post(f"/api/v1/jobs/{long_one}/extend", json=body), "duration")
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 60  # the four sources only


def test_idempotency_key_replays_an_extension_and_refuses_another_source(api_server):
    key = api_server.new_key(credits=100)
    first, second = finished_source(api_server, key), finished_source(api_server, key)
    headers = {"Idempotency-Key": "ext-1"}
    with client(api_server, key) as c:
        a = c.post(f"/api/v1/jobs/{first}/extend", json={"duration": 1, "seed": 5}, headers=headers).json()
        b = c.post(f"/api/v1/jobs/{first}/extend", json={"duration": 1, "seed": 5}, headers=headers).json()
        assert a["jobId"] == b["jobId"] and b["creditsRemaining"] == 70
        assert_refused(c.post(f"/api/v1/jobs/{second}/extend", json={"duration": 1, "seed": 5}, headers=headers),
                       "Idempotency-Key")


# -- OpenAI form through the official SDK ----------------------------------------------------------------------
def test_sdk_extend_queues_a_video_whose_seconds_are_the_whole_length(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    video = sdk_extend(sdk(api_server, key), source, prompt="the fox looks back", seconds="4")
    assert video.status == "queued" and video.seconds == "6" and video.size == "360x360"
    assert video.prompt == "the fox looks back" and video.remixed_from_video_id is None
    job = stored(api_server, video.id)
    assert job.kind == "extend" and job.source_job_id == source and job.surface == "openai"
    assert json.loads(job.request)["duration"] == 4


def test_sdk_extend_also_takes_json_with_the_id_alone_and_extra_fields(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with client(api_server, key) as c:
        answer = c.post("/v1/videos/extensions", json={"video": source, "prompt": "on", "seconds": 2,
                                                       "seed": 77, "style": "clay"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["seconds"] == "4" and answer.json()["seed"] == 77


def test_sdk_remix_sets_remixed_from_video_id_and_keeps_the_seed(api_server):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    video = sdk(api_server, key).videos.remix(source, prompt="a snow hare instead")
    assert video.remixed_from_video_id == source and video.prompt == "a snow hare instead"
    assert video.seconds == "2" and video.size == "360x360" and video.model_extra["seed"] == SOURCE["seed"]
    assert sdk(api_server, key).videos.retrieve(video.id).remixed_from_video_id == source


@pytest.mark.parametrize("video, kwargs, param", [
    ("SOURCE", dict(prompt="x", seconds="0"), "seconds"),
    ("SOURCE", dict(prompt="x", seconds="16"), "seconds"),
    ("SOURCE", dict(prompt="x", seconds="four"), "seconds"),
    ("SOURCE", dict(prompt="", seconds="4"), "prompt"),
    ("SOURCE", dict(prompt="x" * 2049, seconds="4"), "prompt"),
    ("", dict(prompt="x", seconds="4"), "video"),
    ("PENDING", dict(prompt="x", seconds="4"), "video"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"size": "640x360"}), "size"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"seed": "-4"}), "seed"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"style": "oil"}), "style"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"quality": "720p"}), "quality"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"input_reference": "x"}), "input_reference"),
    ("SOURCE", dict(prompt="x", seconds="4", extra_body={"what": "x"}), "what"),
])
def test_sdk_extend_refuses_each_bad_field_with_400_naming_the_param(api_server, video, kwargs, param):
    key = api_server.new_key(credits=100)
    ids = {"SOURCE": finished_source(api_server, key), "PENDING": finished_source(api_server, key, status="pending"),
           "": ""}
    with pytest.raises(openai.BadRequestError) as info:
        sdk_extend(sdk(api_server, key), ids[video], **kwargs)
    error = info.value.body
    assert error["param"] == param and error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert _credits(api_server, key) == 80  # the two sources cost 10 each; nothing more


@pytest.mark.parametrize("body, param", [
    ({"video": {"id": "SOURCE", "kind": "x"}, "prompt": "x"}, "video.kind"),
    ({"video": 5, "prompt": "x"}, "video"),
    ({"prompt": "x"}, "video"),
    ({"video": "SOURCE", "prompt": "x", "seconds": 2, "duration": 2}, "duration"),
    ({"video": "SOURCE", "prompt": "x", "seconds": 14}, "seconds"),  # 50 s + 14 s: over the 60 s cap
    ({"video": "SOURCE"}, "prompt"),
])
def test_extend_json_bodies_are_checked_field_by_field(api_server, body, param):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key, duration=50)
    body = json.loads(json.dumps(body).replace("SOURCE", source))
    with client(api_server, key) as c:
        answer = c.post("/v1/videos/extensions", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_sdk_extend_of_an_uploaded_video_file_is_refused_naming_video(api_server):
    key = api_server.new_key(credits=100)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(api_server, key).videos.extend(video=("clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
                                           prompt="x", seconds="4")
    assert info.value.body["param"] == "video"


def test_sdk_extend_and_remix_of_an_unknown_video_are_404_naming_it(api_server):
    key = api_server.new_key(credits=100)
    with pytest.raises(openai.NotFoundError) as info:
        sdk_extend(sdk(api_server, key), "job_nope", prompt="x", seconds="4")
    assert info.value.body["param"] == "video"
    with pytest.raises(openai.NotFoundError) as info:
        sdk(api_server, key).videos.remix("job_nope", prompt="x")
    assert info.value.body["param"] == "video_id"


@pytest.mark.parametrize("kwargs, param", [
    (dict(prompt=""), "prompt"), (dict(prompt="x" * 2049), "prompt"),
    (dict(prompt="x", extra_body={"seed": 1}), "seed"), (dict(prompt="x", extra_body={"model": "sora-2"}), "model"),
])
def test_sdk_remix_refuses_each_bad_field_with_400_naming_the_param(api_server, kwargs, param):
    key = api_server.new_key(credits=100)
    source = finished_source(api_server, key)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(api_server, key).videos.remix(source, **kwargs)
    assert info.value.body["param"] == param
    assert _credits(api_server, key) == 90


def _credits(server, key: str) -> int:
    with client(server, key) as c:
        return c.get("/api/v1/jobs").json()["creditsRemaining"]


# -- end to end on the toy model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_remix_and_extend_run_end_to_end(server, tmp_path):
    """A 1 s source; a remix with the same prompt reproduces it frame for frame (same settings and seed); a remix
    with another prompt differs; the SDK's extend gives back the whole video, source first."""
    from pixgen.media.probe import probe, read_frames

    key = server.new_key(credits=100)
    oa = sdk(server, key)
    with client(server, key) as c:
        source = c.post(RUN, json={"prompt": "a lighthouse in a storm", "duration": 1, "quality": "360p",
                                   "seed": 11}).json()["jobId"]
        done = _wait(c, source)
        same = _wait(c, c.post(f"/api/v1/jobs/{source}/remix", json={"prompt": "a lighthouse in a storm"})
                     .json()["jobId"])
        assert same["remixOf"] == source and same["seed"] == done["seed"] == 11
    other = oa.videos.remix(source, prompt="a sunflower field at noon")
    other = oa.videos.poll(other.id)
    assert other.status == "completed" and other.remixed_from_video_id == source

    def frames(video_id: str):
        path = tmp_path / f"{video_id}.mp4"
        oa.videos.download_content(video_id).write_to_file(path)
        return path, read_frames(path)

    (_, a), (_, b), (_, c_) = frames(source), frames(same["jobId"]), frames(other.id)
    assert np.array_equal(a, b)
    assert a.shape == c_.shape and not np.array_equal(a, c_)

    with client(server, key) as c:  # the toy's backend extends: a failed extension below is a regression
        assert "video-extend" in c.get("/api/v1/models").json()["models"][0]["capabilities"]
    extended = oa.videos.poll(sdk_extend(oa, source, prompt="the storm calms", seconds="1").id)
    assert extended.status == "completed", extended.error
    assert extended.seconds == "2" and extended.size == "640x360"
    path, whole = frames(extended.id)
    facts = probe(path)
    assert abs(facts.num_frames - (2 * 24 + 1)) <= 1 and facts.audio_codec == "aac"
    assert np.abs(whole[0].astype(int) - a[0].astype(int)).mean() < 8  # it starts with the source


@pytest.mark.slow
def test_multi_clip_job_lists_its_shots_with_times_and_the_prompts_used(server):
    key = server.new_key(credits=100)
    with client(server, key) as c:
        job = _wait(c, c.post(RUN, json={"prompt": "Shot 1: a red door. Shot 2: a blue sky", "duration": 2,
                                         "quality": "360p", "multi_clip": True, "thinking_type": "disabled",
                                         "generate_audio": False}).json()["jobId"])
    shots = job["shots"]
    assert [s["index"] for s in shots] == [0, 1]
    assert "red door" in shots[0]["prompt"] and "blue sky" in shots[1]["prompt"]
    assert shots[0]["start"] == 0 and shots[0]["end"] == shots[1]["start"]
    assert abs(shots[-1]["end"] - (2 * 24 + 1) / 24) < 0.05
    assert job["originalPrompt"] == "Shot 1: a red door. Shot 2: a blue sky" and job["prompt"]


def _wait(c: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", job
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


# -- the store: kind, source, remix and shots on SQLite and PostgreSQL -----------------------------------------
SHOTS = [{"index": 0, "prompt": "Shot 1: a fox", "start": 0.0, "end": 1.0},
         {"index": 1, "prompt": "Shot 2: a hare", "start": 1.0, "end": 2.04}]


def _outcome(shots=None):
    from pixgen.jobs.store import Outcome

    return Outcome(video_file="v.mp4", thumb_file=None, width=640, height=360, seconds=2.04, has_audio=True,
                   seed=1, prompt="used", original_prompt="asked", shots=shots)


@pytest.mark.parametrize("zero_data_retention", [False, True])
def test_store_keeps_kind_source_remix_and_shots(db_url, zero_data_retention):
    from pixgen.api.jobs_api import job_json
    from pixgen.jobs.keys import create_key

    db = connect(db_url, pool_size=2)
    try:
        key, _ = create_key(db, credits=100)
        store = JobStore(db, zero_data_retention=zero_data_retention)
        request = parse_request({"prompt": "Shot 1: a fox. Shot 2: a hare", "duration": 2, "multi_clip": True})
        source = store.submit(key.id, request, cost=10).job
        assert (source.kind, source.source_job_id, source.remix_of, source.shots) == ("generate", None, None, None)
        claim = store.claim("w1")
        assert claim is not None and claim.job.id == source.id
        assert store.complete(source.id, claim.token, _outcome(SHOTS))
        done = store.get(source.id)
        expected = SHOTS if not zero_data_retention else [{k: v for k, v in s.items() if k != "prompt"}
                                                          for s in SHOTS]
        assert job_json(done)["shots"] == expected

        extension = store.submit(key.id, parse_request({"prompt": "on", "duration": 3}), cost=10,
                                 origin=Origin(kind=JobKind.EXTEND, source_job_id=source.id, duration=5)).job
        assert (extension.kind, extension.source_job_id, extension.duration) == (JobKind.EXTEND, source.id, 5)
        remixed = store.submit(key.id, request, cost=10, origin=Origin(remix_of=source.id)).job
        assert remixed.remix_of == source.id and remixed.kind is JobKind.GENERATE
        # One Idempotency-Key cannot stand for a plain job and an extension of the same request.
        store.submit(key.id, parse_request({"prompt": "on", "duration": 3}), cost=10, idempotency_key="k")
        with pytest.raises(InvalidRequest):
            store.submit(key.id, parse_request({"prompt": "on", "duration": 3}), cost=10, idempotency_key="k",
                         origin=Origin(kind=JobKind.EXTEND, source_job_id=source.id))
    finally:
        db.dispose()


def test_migration_0003_gives_existing_jobs_the_generate_kind(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from pixgen.jobs.db import MIGRATIONS_DIR, migrate

    db = connect(f"sqlite:///{tmp_path / 'old.db'}", pool_size=1)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    with db.write() as conn:  # rows as that revision had them (today's create_key writes later columns)
        conn.execute(text("INSERT INTO api_keys (id, name, key_hash, prefix, credits, disabled, created_at) "
                          "VALUES ('key_old', '', 'h', 'pxg_old', 10, 0, 1.0)"))
        conn.execute(text(
            "INSERT INTO jobs (id, key_id, model, status, request, request_hash, surface, seed, quality, duration, "
            "credit_cost, refunded, progress, cancel_requested, attempts, media_deleted, created_at, updated_at) "
            "VALUES ('job_000000000000000000000000', :key, 'pixverse-v6', 'completed', '{}', 'h', 'jobs', 1, "
            "'720p', 5, 10, 0, 100, 0, 1, 0, 1.0, 1.0)"), {"key": "key_old"})
    migrate(db)
    job = JobStore(db).get("job_" + "0" * 24)
    assert (job.kind, job.source_job_id, job.remix_of, job.shots) == ("generate", None, None, None)
    db.dispose()


def test_the_engines_typed_shots_and_timings_become_the_stored_outcome():
    from pathlib import Path

    from pixgen.engine.base import GenerationResult, ShotInfo, Timings
    from pixgen.jobs.store import Outcome

    result = GenerationResult(path=Path("x.mp4"), width=640, height=360, num_frames=49, seconds=49 / 24, seed=3,
                              has_audio=True, prompt="Shot 1: a Shot 2: b", original_prompt="a. b.",
                              shots=(ShotInfo(0, "a", 0.0, 1.0), ShotInfo(1, "b", 1.0, 2.0416666)),
                              timings=Timings(text=0.25, denoise=3.0))
    outcome = Outcome.from_result(result, video_file="v.mp4", thumb_file=None)
    assert outcome.shots == [{"index": 0, "prompt": "a", "start": 0.0, "end": 1.0},
                             {"index": 1, "prompt": "b", "start": 1.0, "end": 2.042}]
    assert outcome.timings == {"text": 0.25, "denoise": 3.0} and (outcome.width, outcome.seed) == (640, 3)
    single = Outcome.from_result(GenerationResult(path=Path("y.mp4"), width=2, height=2, num_frames=1, seconds=1 / 24,
                                                  seed=0, has_audio=False, prompt="p", original_prompt="p"),
                                 video_file="y.mp4", thumb_file=None)
    assert single.shots is None and single.timings is None
