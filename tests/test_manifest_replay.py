"""The manifest a finished job keeps (``GET /api/v1/jobs/{id}/manifest``) and its replay (``POST .../replay``):
the seeds and prompts actually used, the model's fingerprint, and the same decoded frames and sound again.

End to end on the shared ``server`` (toy LTX-2, one worker); the store part on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

import pixgen
from pixgen.core.spec import MAX_SEED, parse_request
from pixgen.engine.fingerprint import folder_fingerprint
from pixgen.engine.ltx2.multiclip import SEED_STRIDE
from pixgen.engine.ltx2.toy import tiny_model_path
from pixgen.jobs.db import connect
from pixgen.jobs.events import EventKind, job_history
from pixgen.jobs.keys import create_key
from pixgen.jobs.store import JobStore, Outcome
from pixgen.media.probe import read_audio, read_frames
from pixgen.testing import start_server, wait_for

RUN = "/api/v1/models/pixverse-v6/run"
SEED = 4242
MULTI = {"prompt": "Shot 1: a fox runs through deep snow. Shot 2: a hawk dives over a frozen lake.",
         "duration": 2, "quality": "360p", "seed": SEED, "multi_clip": True, "thinking_type": "enabled",
         "style": "clay"}


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _finished(server, secret: str, job_id: str) -> dict:
    def done():
        job = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=_auth(secret), timeout=30).json()
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    job = wait_for(done, timeout=300, every=0.3)
    assert job["status"] == "completed", job
    return job


def _credits(server, secret: str) -> int:
    return httpx.get(f"{server.url}/api/v1/jobs", headers=_auth(secret), timeout=30).json()["creditsRemaining"]


@pytest.fixture(scope="module")
def original(server):
    """A multi-shot job with thinking on, run to completion."""
    secret = server.new_key(credits=1000, name="manifest test")
    res = httpx.post(server.url + RUN, json=MULTI, headers=_auth(secret), timeout=30)
    assert res.status_code == 200, res.text
    return secret, _finished(server, secret, res.json()["jobId"])


@pytest.mark.slow
def test_the_manifest_holds_the_seeds_prompts_and_model_actually_used(server, original):
    secret, job = original
    res = httpx.get(f"{server.url}/api/v1/jobs/{job['jobId']}/manifest", headers=_auth(secret), timeout=30)
    assert res.status_code == 200, res.text
    manifest = res.json()
    assert manifest["jobId"] == job["jobId"]
    assert manifest["software"]["pixgen"] == pixgen.__version__ and "torch" in manifest["software"]
    assert manifest["model"]["fingerprint"] == folder_fingerprint(tiny_model_path())
    assert manifest["recipe"] == "ltx-2.0-dev" and manifest["recipeSettings"]["num_inference_steps"] == 3
    assert manifest["runtime"]["dtype"] == "float32" and manifest["runtime"]["device"] == "cpu"

    # One entry per shot: its own seed, and its prompt after thinking and the style preset, as the job reports.
    shots = manifest["shots"]
    assert [s["seed"] for s in shots] == [SEED, (SEED + SEED_STRIDE) % (MAX_SEED + 1)]
    assert [s["prompt"] for s in shots] == [s["prompt"] for s in job["shots"]]
    assert manifest["thinking"] == "rewritten" and manifest["originalPrompt"] == MULTI["prompt"]
    for shot, raw in zip(shots, ("a fox runs through deep snow", "a hawk dives over a frozen lake"), strict=True):
        assert raw in shot["prompt"] and len(shot["prompt"]) > len(raw) + 20  # rewritten, not verbatim
        assert "clay" in shot["prompt"].lower() or "clay" in shot["negative_prompt"].lower()
        assert len(shot["sigmas"]["stage1"]) == 3 and shot["sigmas"]["stage1"][0] == 1.0
    assert manifest["request"]["seed"] == SEED and manifest["request"]["multi_clip"] is True


@pytest.mark.slow
def test_a_replay_makes_the_same_frames_and_sound_and_is_charged_like_the_original(server, original, tmp_path):
    secret, job = original
    before = _credits(server, secret)
    res = httpx.post(f"{server.url}/api/v1/jobs/{job['jobId']}/replay", headers=_auth(secret), timeout=30)
    assert res.status_code == 200, res.text
    submitted = res.json()
    assert submitted["jobId"] != job["jobId"] and submitted["creditCost"] == job["creditCost"]
    assert submitted["creditsRemaining"] == before - job["creditCost"]
    again = _finished(server, secret, submitted["jobId"])
    assert again["replayOf"] == job["jobId"] and again["seed"] == job["seed"]

    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(httpx.get(job["output"]["video"], timeout=30).content)
    second.write_bytes(httpx.get(again["output"]["video"], timeout=30).content)
    assert np.array_equal(read_frames(first), read_frames(second))
    assert np.array_equal(read_audio(first), read_audio(second))
    manifests = [httpx.get(f"{server.url}/api/v1/jobs/{j}/manifest", headers=_auth(secret), timeout=30).json()
                 for j in (job["jobId"], again["jobId"])]
    assert manifests[0]["shots"] == manifests[1]["shots"]


@pytest.mark.slow
def test_a_replay_on_another_model_is_refused_with_409_and_charges_nothing(server, original, tmp_path):
    secret, job = original
    folder = tmp_path / "other-model"  # the toy's weights under other sampling settings
    folder.mkdir()
    for item in tiny_model_path().iterdir():
        if item.name != "pixgen.json":
            (folder / item.name).symlink_to(item)
    (folder / "pixgen.json").write_text(json.dumps({"recipe": "ltx-2.0-dev", "sampling": {
        "max_sequence_length": 64, "num_inference_steps": 4}}))
    other = start_server(tmp_path / "api", workers=0, database_url=server.database_url,
                         env={"PIXGEN_MODEL": str(folder)})
    try:
        before = _credits(other, secret)
        res = httpx.post(f"{other.url}/api/v1/jobs/{job['jobId']}/replay", headers=_auth(secret), timeout=30)
        assert res.status_code == 409, res.text
        body = res.json()
        assert body["code"] == "conflict" and "fingerprint" in body["message"]
        assert folder_fingerprint(folder) in body["message"]
        assert _credits(other, secret) == before
    finally:
        other.stop()


def test_a_job_without_a_manifest_answers_409_and_an_unknown_one_404(api_server):
    secret = api_server.new_key(credits=100)
    res = httpx.post(api_server.url + RUN, json={"prompt": "queued forever", "duration": 1, "quality": "360p"},
                     headers=_auth(secret), timeout=30)
    job_id = res.json()["jobId"]
    try:
        for method, path in (("GET", "manifest"), ("POST", "replay")):
            got = httpx.request(method, f"{api_server.url}/api/v1/jobs/{job_id}/{path}", headers=_auth(secret))
            assert got.status_code == 409 and "pending" in got.json()["message"], got.text
        missing = httpx.get(f"{api_server.url}/api/v1/jobs/job_{'0' * 24}/manifest", headers=_auth(secret))
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    finally:
        httpx.post(f"{api_server.url}/api/v1/jobs/{job_id}/cancel", headers=_auth(secret))


# -- the store, on SQLite and PostgreSQL ---------------------------------------------------------------------
@pytest.mark.parametrize("zdr", [False, True])
def test_the_store_keeps_the_manifest_and_records_the_preview(db_url, zdr):
    db = connect(db_url, pool_size=2)
    try:
        store = JobStore(db, zero_data_retention=zdr)
        key, _ = create_key(db, credits=100)
        job = store.submit(key.id, parse_request({"prompt": "a fox", "duration": 1, "quality": "360p"}), cost=10).job
        claim = store.claim("w1")
        assert claim is not None
        assert store.heartbeat(job.id, claim.token, preview_file="draft.mp4").lease_ok
        assert store.get(job.id).preview_file == "draft.mp4"
        manifest = {"seed": job.seed, "shots": [{"index": 0, "seed": job.seed, "prompt": "a fox, as used"}]}
        assert store.complete(job.id, claim.token, Outcome(
            video_file="v.mp4", thumb_file=None, width=640, height=360, seconds=1.0, has_audio=False, seed=job.seed,
            prompt="a fox, as used", original_prompt="a fox", manifest=manifest))
        kept = store.get(job.id)
        assert kept.manifest_dict() == (None if zdr else manifest)  # it holds prompts: none under ZDR
        kinds = [event.kind for event in job_history(db, job.id)]
        assert kinds.count(EventKind.PREVIEW) == 1 and kinds.index(EventKind.PREVIEW) < kinds.index(
            EventKind.COMPLETED)
    finally:
        db.dispose()
