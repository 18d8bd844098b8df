"""``duration: "auto"`` (issue 22, item 3): LTX-2.5's duration head chooses the length from the prompt.

The toy LTX-2.5 (``--model tiny-2.5``: the toy plus diffusers' ``LTX2DurationHead`` at toy size) makes a whole
number of 8k+1 frames within 1–15 s, the same count diffusers' own ``LTX2Pipeline`` picks when ``num_frames`` is
left out, in float32 and bfloat16; the job JSON states it. A folder without a head (the toy LTX-2.0) is refused with
a 400 naming ``duration`` before anything is charged, on every surface and the command line. Until the engine
chooses, an auto request counts as the longest; the store keeps "auto" as a column (``jobs.auto_duration``, set for
older rows by migration 0012), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text
from web_browser import page_on

from pixgen.api.mapping import check_capabilities
from pixgen.api.service import planned_frames
from pixgen.core.spec import MAX_DURATION, parse_request
from pixgen.engine import LTX2_CAPABILITIES, backend
from pixgen.engine.ltx2.toy import DURATION_HEAD_DIR
from pixgen.errors import InvalidRequest
from pixgen.jobs.db import MIGRATIONS_DIR, connect, migrate
from pixgen.jobs.keys import create_key
from pixgen.jobs.schema import jobs
from pixgen.jobs.states import JobStatus
from pixgen.jobs.store import JobStore, Outcome
from pixgen.media.probe import probe
from pixgen.testing import start_server

FRAME_GRID = 8
MIN_FRAMES, MAX_FRAMES = 25, 353  # 1 s and the last 8k+1 count at or under 15 s × 24 (diffusers' clamp, then snap)


def _on_grid_within_bounds(frames: int) -> bool:
    return (frames - 1) % FRAME_GRID == 0 and MIN_FRAMES <= frames <= MAX_FRAMES


# -- the request and the capability, no model ------------------------------------------------------------------
def test_auto_is_a_duration_only_alone_with_what_needs_no_known_length():
    assert parse_request({"prompt": "a cat", "duration": "auto"}).auto_duration
    for other in ({"multi_clip": True}, {"keyframes": [{"time": 1, "image": "data:image/png;base64,AAAA"}]}):
        with pytest.raises(InvalidRequest) as refused:
            parse_request({"prompt": "a cat", "duration": "auto", **other})
        assert refused.value.field == "duration"
    for bad in ("Auto", "5", 0, 16, 2.5):
        with pytest.raises(InvalidRequest) as refused:
            parse_request({"prompt": "a cat", "duration": bad})
        assert refused.value.field == "duration"


def test_auto_needs_a_duration_head_in_the_capabilities(tmp_path):
    request = parse_request({"prompt": "a cat", "duration": "auto"})
    with pytest.raises(InvalidRequest) as refused:
        check_capabilities(request, LTX2_CAPABILITIES)
    assert refused.value.field == "duration" and "duration head" in refused.value.message
    ltx2 = backend("ltx2")
    check_capabilities(request, ltx2.capabilities_for("tiny-2.5"))  # taken
    check_capabilities(parse_request({"prompt": "a cat", "duration": 15}), ltx2.capabilities_for("tiny"))
    assert not ltx2.capabilities_for("tiny").auto_duration
    folder = tmp_path / "ltx25"
    (folder / DURATION_HEAD_DIR).mkdir(parents=True)
    assert not ltx2.capabilities_for(str(folder)).auto_duration  # a folder, but no head config in it
    (folder / DURATION_HEAD_DIR / "config.json").write_text("{}")
    assert ltx2.capabilities_for(str(folder)).auto_duration


def test_recipe_detection_keys_on_a_real_duration_head_not_diffusers_null_entry(tmp_path):
    from pixgen.engine.ltx2.recipes import detect

    def folder_with(entry) -> object:
        folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTX2Pipeline", "duration_head": entry}))
        return folder

    assert detect(folder_with([None, None])).recipe.name == "ltx-2.0-dev"  # what diffusers 0.42 writes for 2.0
    assert detect(folder_with(["ltx2", "LTX2DurationHead"])).recipe.name == "ltx-2.5"


def test_auto_counts_as_the_longest_until_the_engine_chooses():
    assert parse_request({"prompt": "a cat", "duration": "auto"}).longest_seconds == MAX_DURATION == 15
    assert parse_request({"prompt": "a cat", "duration": 4}).longest_seconds == 4
    follows_audio = parse_request({"prompt": "a cat", "audio": "data:audio/wav;base64,AAAA"})
    with pytest.raises(ValueError, match="audio"):  # its length is the audio's, measured
        _ = follows_audio.longest_seconds
    assert planned_frames(parse_request({"prompt": "a cat", "duration": "auto"})) == 15 * 24 + 1
    assert planned_frames(parse_request({"prompt": "a cat", "duration": 4})) == 4 * 24 + 1


# -- the store and its migration, on SQLite and PostgreSQL -------------------------------------------------------
def test_store_writes_auto_as_a_column_queued_as_the_longest_until_completed(db):
    store = JobStore(db, zero_data_retention=True)  # the scrubbed request keeps no prompt; the column stays
    key, _ = create_key(db, credits=100)
    auto = store.submit(key.id, parse_request({"prompt": "a cat", "duration": "auto", "quality": "360p"}),
                        cost=1).job
    fixed = store.submit(key.id, parse_request({"prompt": 'say "duration": "auto"', "duration": 4,
                                                "quality": "360p"}), cost=1).job
    assert (auto.auto_duration, auto.duration) == (True, MAX_DURATION)
    assert (fixed.auto_duration, fixed.duration) == (False, 4)
    with db.read() as conn:
        column = dict(conn.execute(select(jobs.c.id, jobs.c.auto_duration)).all())
    assert column == {auto.id: True, fixed.id: False}

    claim = store.claim("w1")
    assert claim is not None and claim.job.id == auto.id
    assert store.complete(auto.id, claim.token, Outcome(
        video_file="v.mp4", thumb_file=None, width=640, height=360, seconds=97 / 24, has_audio=False, seed=1,
        prompt="a cat", original_prompt="a cat", duration=4))
    done = store.get(auto.id)
    assert (done.status, done.auto_duration, done.duration) == (JobStatus.COMPLETED, True, 4)
    assert "a cat" not in done.request  # scrubbed, and still known to be auto


def _alembic(db, action, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        action(cfg, revision)


def test_migration_0012_sets_auto_duration_from_the_stored_requests(db_url):
    db = connect(db_url, pool_size=1)
    try:
        _alembic(db, command.downgrade, "0011")  # the schema before the column
        stored = (  # (the request as stored, whether it asked for "auto")
            (parse_request({"prompt": "a cat", "duration": "auto"}).model_dump_json(), True),
            (json.dumps({"prompt": "", "duration": "auto"}), True),  # as zero data retention rewrites it
            (parse_request({"prompt": "a cat", "duration": 5}).model_dump_json(), False),
            # the words inside a string value have their quotes escaped: not the field
            (parse_request({"prompt": 'say "duration":"auto"', "duration": 5}).model_dump_json(), False),
        )
        ids = [f"job_{i:024x}" for i in range(len(stored))]
        with db.write() as conn:  # rows as revision 0011 had them (today's store writes the new column)
            conn.execute(text("INSERT INTO api_keys (id, name, key_hash, prefix, credits, disabled, created_at) "
                              "VALUES ('key_old', '', 'h', 'pxg_old', 10, :no, 1.0)"), {"no": False})
            for job_id, (request, _) in zip(ids, stored, strict=True):
                conn.execute(text(
                    "INSERT INTO jobs (id, key_id, model, status, request, request_hash, surface, seed, quality, "
                    "duration, credit_cost, refunded, progress, cancel_requested, attempts, media_deleted, "
                    "created_at, updated_at) VALUES (:id, 'key_old', 'pixverse-v6', 'pending', :request, 'h', "
                    "'jobs', 1, '720p', 15, 10, :no, 0, :no, 0, :no, 1.0, 1.0)"),
                    {"id": job_id, "request": request, "no": False})
        migrate(db)
        store = JobStore(db)
        assert [store.get(job_id).auto_duration for job_id in ids] == [auto for _, auto in stored]
    finally:
        migrate(db)  # back to the newest schema, whatever happened (PostgreSQL's database serves the next tests)
        db.dispose()


# -- the engine on the toy LTX-2.5 -----------------------------------------------------------------------------
def _diffusers_own_choice(engine, prompt: str) -> int:
    """The frame count ``LTX2Pipeline`` itself picks with ``num_frames`` left out (its auto-duration path), read
    back from the latents it returns: (latent frames − 1) × 8 + 1."""
    import torch

    pipe = engine.pipes.text
    video, _audio = pipe(prompt=prompt, negative_prompt=None, num_frames=None, min_seconds=1.0, max_seconds=15.0,
                         width=64, height=64, num_inference_steps=2, guidance_scale=1.0, audio_guidance_scale=1.0,
                         max_sequence_length=64, frame_rate=24.0, output_type="latent", return_dict=False,
                         generator=torch.Generator("cpu").manual_seed(0))
    return (video.shape[2] - 1) * FRAME_GRID + 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_toy_25_chooses_whole_8k_plus_1_frames_as_diffusers_does(dtype, tmp_path):
    from pixgen.engine import load_engine

    engine = load_engine("tiny-2.5", device="cpu", dtype=dtype)
    assert engine.has_duration_head and engine.recipe.name == "ltx-2.5"
    prompt = "A dog chases a ball across a sandy beach"
    request = parse_request({"prompt": prompt, "duration": "auto", "quality": "360p", "aspect_ratio": "1:1",
                             "seed": 7, "thinking_type": "disabled"})  # 1:1: the smallest 360p frames
    result = engine.generate(request, tmp_path / "auto.mp4")
    assert _on_grid_within_bounds(result.num_frames), result.num_frames
    facts = probe(result.path)
    assert facts.num_frames == result.num_frames
    assert facts.audio_seconds == pytest.approx((result.num_frames - 1) / 24, abs=0.1)
    assert result.num_frames == _diffusers_own_choice(engine, prompt)
    again = engine.generate(request, tmp_path / "again.mp4")
    assert again.num_frames == result.num_frames  # the head is deterministic


def test_toy_20_engine_refuses_auto_naming_duration(tmp_path):
    from pixgen.engine import load_engine

    engine = load_engine("tiny", device="cpu")
    with pytest.raises(InvalidRequest) as refused:
        engine.generate(parse_request({"prompt": "a cat", "duration": "auto", "quality": "360p"}), tmp_path / "x.mp4")
    assert refused.value.field == "duration"
    assert not (tmp_path / "x.mp4").exists()


# -- the command line ------------------------------------------------------------------------------------------
def _generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixgen", "generate", *args, "--quiet"], capture_output=True,
                          text=True, timeout=600)


def test_cli_duration_auto_on_the_toy_25_and_refused_on_the_toy_20(tmp_path):
    out = tmp_path / "auto.mp4"
    done = _generate("a red kite over the dunes", "--duration", "auto", "--quality", "360p", "--aspect-ratio", "1:1",
                     "--model", "tiny-2.5", "--device", "cpu", "-o", str(out))  # 1:1: the smallest 360p frames
    assert done.returncode == 0, done.stderr
    assert _on_grid_within_bounds(probe(out).num_frames)
    refused = _generate("a red kite", "--duration", "auto", "--model", "tiny", "--device", "cpu",
                        "-o", str(tmp_path / "no.mp4"))
    assert refused.returncode != 0 and "--duration" in refused.stderr and "duration head" in refused.stderr
    assert not (tmp_path / "no.mp4").exists()


# -- the service -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_25(tmp_path_factory):
    """``pixgen serve --model tiny-2.5`` with one worker."""
    server = start_server(tmp_path_factory.mktemp("server-25"), workers=1, ready=True, timeout=300,
                          env={"PIXGEN_MODEL": "tiny-2.5", "PIXGEN_LEASE_SECONDS": "10"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server_20(tmp_path_factory):
    """``pixgen serve --model tiny`` (LTX-2.0, no duration head), API only."""
    server = start_server(tmp_path_factory.mktemp("server-20"), workers=0, env={"PIXGEN_MODEL": "tiny"})
    yield server
    server.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _credits(server, key: str) -> int:
    res = httpx.post(f"{server.url}/api/v1/models/pixverse-v6/estimate", json={"prompt": "x", "duration": 1},
                     headers=_auth(key), timeout=30)
    return res.json()["creditsRemaining"]


def test_job_api_auto_states_the_chosen_duration(server_25):
    key = server_25.new_key(credits=1000)
    models = httpx.get(f"{server_25.url}/api/v1/models", headers=_auth(key), timeout=30).json()["models"][0]
    assert models["parameters"]["duration"]["auto"] is True and "auto-duration" in models["capabilities"]

    body = {"prompt": "Slow motion water drops falling into a still pond", "duration": "auto", "quality": "360p",
            "aspect_ratio": "1:1", "seed": 11, "thinking_type": "disabled"}
    estimate = httpx.post(f"{server_25.url}/api/v1/models/pixverse-v6/estimate", json=body, headers=_auth(key),
                          timeout=30).json()
    assert estimate["duration"] == "auto" and estimate["durationRange"] == [1.0, 15.0]
    assert estimate["frames"] == 15 * 24 + 1  # what is estimated for: the longest the model may choose
    submitted = httpx.post(f"{server_25.url}/api/v1/models/pixverse-v6/run", json=body, headers=_auth(key),
                           timeout=30).json()
    assert submitted["creditCost"] == estimate["creditCost"]  # the price is the quality's whatever the length
    pending = httpx.get(submitted["statusUrl"], headers=_auth(key), timeout=30).json()
    assert pending["duration"] == "auto" and pending.get("chosenDuration") is None

    deadline = time.monotonic() + 300
    while (job := httpx.get(submitted["statusUrl"], headers=_auth(key), timeout=30).json())["status"] not in (
            "completed", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "completed", job
    assert job["duration"] == "auto" and _on_grid_within_bounds(job["frames"])
    assert job["chosenDuration"] == pytest.approx((job["frames"] - 1) / 24, abs=1e-3)
    assert 1 <= job["chosenDuration"] <= 15
    video = httpx.get(job["output"]["video"], timeout=30)
    path = server_25.data_dir / "auto-download.mp4"
    path.write_bytes(video.content)
    assert probe(path).num_frames == job["frames"]
    assert not job["refunded"] and _credits(server_25, key) == 1000 - submitted["creditCost"]

    doc = httpx.get(f"{server_25.url}/openapi.json", timeout=30).json()
    options = doc["components"]["schemas"]["JobRunRequest"]["properties"]["duration"]["anyOf"]
    assert {"const": "auto", "type": "string"} in options
    seconds = doc["components"]["schemas"]["VideoCreateRequest"]["properties"]["seconds"]["anyOf"][1]["enum"]
    assert "auto" in seconds

    # an extension adds seconds: "auto" is for new videos
    res = httpx.post(f"{server_25.url}/api/v1/jobs/{job['jobId']}/extend", json={"duration": "auto"},
                     headers=_auth(key), timeout=30)
    assert res.status_code == 400 and res.json()["field"] == "duration", res.text

    # OpenAI's form: the Video's seconds is the chosen length once made
    video_obj = httpx.get(f"{server_25.url}/v1/videos/{job['jobId']}", headers=_auth(key), timeout=30).json()
    assert float(video_obj["seconds"]) == pytest.approx(job["chosenDuration"], abs=1e-3)


def test_auto_without_a_duration_head_is_400_naming_duration_and_charges_nothing(server_20):
    key = server_20.new_key(credits=100)
    models = httpx.get(f"{server_20.url}/api/v1/models", headers=_auth(key), timeout=30).json()["models"][0]
    assert models["parameters"]["duration"]["auto"] is False and "auto-duration" not in models["capabilities"]
    for path, body, field in (
            ("/api/v1/models/pixverse-v6/run", {"prompt": "a cat", "duration": "auto"}, "duration"),
            ("/api/v1/models/pixverse-v6/estimate", {"prompt": "a cat", "duration": "auto"}, "duration"),
            ("/v1/videos", {"prompt": "a cat", "seconds": "auto"}, "seconds"),
            ("/client/v4/accounts/acc/ai/run/pixverse/v6", {"prompt": "a cat", "duration": "auto"}, "duration")):
        res = httpx.post(server_20.url + path, json=body, headers=_auth(key), timeout=30)
        assert res.status_code == 400, (path, res.text)
        assert field in res.text and "duration head" in res.text, (path, res.text)
    assert _credits(server_20, key) == 100
    jobs = httpx.get(f"{server_20.url}/v1/videos", headers=_auth(key), timeout=30).json()["data"]
    assert jobs == []
    # the document offers "auto" only where the model has a head
    doc = httpx.get(f"{server_20.url}/openapi.json", timeout=30).json()
    duration = doc["components"]["schemas"]["JobRunRequest"]["properties"]["duration"]
    options = {o.get("type"): o for o in duration["anyOf"]}  # seconds, or none (a soundtrack's length)
    assert set(options) == {"integer", "null"}, duration
    assert (options["integer"]["minimum"], options["integer"]["maximum"]) == (1, 15)
    seconds = doc["components"]["schemas"]["VideoCreateRequest"]["properties"]["seconds"]["anyOf"][1]["enum"]
    assert "auto" not in seconds and "15" in seconds



# -- the web page, in a real browser ---------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_web_page_automatic_duration_shows_the_chosen_length(browser, server_25):
    key = server_25.new_key(credits=1000)
    with page_on(browser, server_25, key) as page:  # on leaving: no JavaScript error on the page
        switch = page.get_by_label("Automatic duration", exact=True)
        switch.wait_for(state="visible", timeout=30_000)  # the server's model has a duration head
        page.get_by_label("Prompt", exact=True).fill("A musician plays an acoustic guitar by a campfire")
        page.get_by_label("Quality", exact=True).select_option("360p")
        page.get_by_label("Aspect ratio", exact=True).select_option("1:1")  # the smallest 360p frames
        page.get_by_label("Thinking", exact=True).select_option("disabled")
        switch.check()
        assert page.get_by_label("Duration", exact=True).is_disabled()
        assert "chosen by the model" in page.locator("#output-size").text_content()
        with page.expect_request("**/api/v1/models/pixverse-v6/run") as sent:
            page.get_by_role("button", name="Generate", exact=True).click()
        assert json.loads(sent.value.post_data)["duration"] == "auto"
        page.locator("#job-result").wait_for(state="visible", timeout=300_000)
        shown = page.locator("#result-duration").text_content()
        assert "chosen by the model" in shown, shown
        frames = int(shown.split("(")[1].split(" frames")[0])
        assert _on_grid_within_bounds(frames), shown
        seconds = float(shown.split(" s")[0])
        assert seconds == pytest.approx((frames - 1) / 24, abs=1e-3)
        # the browser's own player agrees: frames / 24 s long (±1 frame)
        page.wait_for_function("document.getElementById('result-video').readyState >= 1", timeout=30_000)
        played = page.evaluate("document.getElementById('result-video').duration")
        assert played == pytest.approx(frames / 24, abs=1.5 / 24)


@pytest.mark.browser
def test_web_page_offers_no_automatic_duration_without_a_head(browser, server_20):
    key = server_20.new_key(credits=10)
    with page_on(browser, server_20, key) as page:  # on leaving: no JavaScript error on the page
        page.wait_for_timeout(200)  # the answer's handler has run
        assert page.locator("#duration-auto-field").is_hidden()
        assert page.get_by_label("Duration", exact=True).is_enabled()
