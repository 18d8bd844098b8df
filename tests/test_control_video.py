"""Control videos (IC-LoRA) on the toy LTX-2, which ships an IC-LoRA for ``depth``: the reference reaches the
transformer with its adapter on, for that job only; the API refuses a type the folder has no LoRA for, and lists
the types it has, without torch."""

from __future__ import annotations

import base64
import os
import sys

import httpx
import numpy as np
import pytest
from http_tools import serve_folder
from web_browser import enter_key

from pixgen.core.spec import parse_request
from pixgen.errors import InvalidRequest
from pixgen.media.mp4 import Mp4Writer
from pixgen.media.probe import probe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IC_ADAPTER = "toy-ic-lora-depth-control"


def control_mp4(tmp_path, frames=12, size=(96, 64)) -> bytes:
    """A short MP4 (half a second at 24 fps) of moving stripes: a stand-in depth map."""
    path = tmp_path / "control.mp4"
    writer = Mp4Writer(path, *size)
    pixels = np.zeros((frames, size[1], size[0], 3), np.uint8)
    for i in range(frames):
        pixels[i, :, (np.arange(size[0]) + 4 * i) % 16 < 8] = 255
    writer.write_frames(pixels)
    writer.close()
    return path.read_bytes()


def video_uri(data: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(data).decode()


def small(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 7,
                          "thinking_type": "disabled", **fields})


class TransformerCalls:
    """Per transformer call: the video sequence length and whether the IC-LoRA adapter was active."""

    def __init__(self, engine):
        self.calls: list[tuple[int, bool]] = []
        transformer = engine.pipes.text.transformer
        self._handle = transformer.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        layer = module.transformer_blocks[0].attn1.to_q  # looked up each call: peft wraps it when a LoRA loads
        active = IC_ADAPTER in getattr(layer, "active_adapters", []) and not getattr(layer, "disable_adapters", True)
        self.calls.append((kwargs["hidden_states"].shape[1], active))

    def take(self):
        calls, self.calls = self.calls, []
        return calls

    def close(self):
        self._handle.remove()


@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


def test_a_control_job_appends_the_reference_tokens_with_its_ic_lora_on_for_that_job_only(engine, tmp_path):
    assert engine.control.types == ("depth",)
    uri = video_uri(control_mp4(tmp_path))
    calls = TransformerCalls(engine)
    try:
        plain = engine.generate(small(), tmp_path / "plain.mp4")
        plain_calls = calls.take()
        controlled = engine.generate(small(control_video=uri, control_type="depth"), tmp_path / "control.mp4")
        control_calls = calls.take()
        after = engine.generate(small(), tmp_path / "after.mp4")
        after_calls = calls.take()
    finally:
        calls.close()

    tokens = {n for n, _ in plain_calls}
    assert len(tokens) == 1 and not any(active for _, active in plain_calls)
    (plain_tokens,) = tokens
    # The reference covers every output frame at stage 1's size: as many tokens again as the video itself.
    assert control_calls and all(n == 2 * plain_tokens and active for n, active in control_calls)
    assert after_calls == plain_calls  # the adapter is off again and no reference is left behind

    facts = probe(controlled.path)
    assert (facts.width, facts.height, facts.num_frames) == (640, 360, 25)
    assert controlled.loras == (IC_ADAPTER,) and plain.loras == () and after.loras == ()
    assert after.seed == plain.seed
    from pixgen.media.probe import read_frames

    assert np.array_equal(read_frames(after.path), read_frames(plain.path))


def test_the_worker_refuses_a_type_its_folder_has_no_lora_for(engine, tmp_path):
    uri = video_uri(control_mp4(tmp_path))
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(small(control_video=uri, control_type="pose"), tmp_path / "x.mp4")
    assert caught.value.field == "control_type" and "depth" in caught.value.message


def test_control_types_come_from_the_folders_file_names_without_torch(tmp_path):
    from pixgen.engine.ltx2.control_files import control_loras

    loras = tmp_path / "loras"
    loras.mkdir()
    header = b'{"__metadata__": {"reference_downscale_factor": "2"}}'
    (loras / "ltx-2-19b-ic-lora-pose-control.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    (loras / "ltx-2.3-22b-ic-lora-union-control-ref0.5.safetensors").write_bytes(b"\0" * 8)
    (loras / "style_anime.safetensors").write_bytes(b"")
    found = control_loras(tmp_path)
    assert sorted(found) == ["canny", "depth", "pose"]
    assert found["pose"].file.name.startswith("ltx-2-19b") and found["pose"].reference_downscale_factor == 2
    assert found["depth"].file.name.startswith("ltx-2.3") and found["depth"].reference_downscale_factor == 1


def test_control_files_and_the_api_import_no_torch():
    import subprocess

    code = ("import sys; import pixgen.engine.ltx2.control_files, pixgen.api.estimate, pixgen.media.control_video;"
            "from pixgen.engine import backend; print(backend('ltx2').capabilities_for('tiny').control_types);"
            "assert 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('depth',)"


# -- through the API ----------------------------------------------------------------------------------------
def client(server, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def test_models_lists_the_folders_control_types(api_server):
    with client(api_server, api_server.new_key()) as c:
        model = c.get("/api/v1/models").json()["models"][0]
    assert model["parameters"]["control_type"] == ["depth"]
    assert "control-video" in model["capabilities"]


@pytest.mark.parametrize("body,field", [
    ({"control_type": "pose"}, "control_type"),  # no IC-LoRA for it in the folder
    ({"control_type": "Depth!"}, "control_type"),  # not a type name
    ({"control_type": None}, "control_type"),  # a video needs a type
    ({"control_video": "data:video/mp4;base64,AAAAAAAA"}, "control_video"),  # not an MP4
    ({"control_video": "data:image/png;base64,AAAA"}, "control_video"),
    ({"control_video": "ftp://example.com/a.mp4"}, "control_video"),
    ({"multi_clip": True}, "multi_clip"),
])
def test_a_bad_control_request_is_400_naming_the_field_and_charges_nothing(api_server, tmp_path, body, field):
    key = api_server.new_key(credits=30)
    good = {"prompt": "a kite", "duration": 1, "quality": "360p", "control_type": "depth",
            "control_video": video_uri(control_mp4(tmp_path))}
    sent = {k: v for k, v in {**good, **body}.items() if v is not None}
    with client(api_server, key) as c:
        r = c.post("/api/v1/models/pixverse-v6/run", json=sent)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "invalid_request" and r.json()["field"] == field
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 30


def test_a_control_job_is_queued_with_its_video(api_server, tmp_path):
    key = api_server.new_key(credits=30)
    with client(api_server, key) as c:
        r = c.post("/api/v1/models/pixverse-v6/run", json={
            "prompt": "a kite", "duration": 1, "quality": "360p", "control_type": "depth",
            "control_video": video_uri(control_mp4(tmp_path))})
        assert r.status_code == 200, r.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 20


def test_a_control_video_is_sampled_on_the_output_clock_and_fitted(tmp_path):
    from pixgen.media.control_video import read_frames

    frames = read_frames(video_uri(control_mp4(tmp_path, frames=12)), 25, (48, 32))
    assert frames.shape == (25, 32, 48, 3)
    assert not np.array_equal(frames[0], frames[1])  # one source frame per output frame while it lasts
    assert all(np.array_equal(frames[11], f) for f in frames[12:])  # then its last frame is held


# -- the web page --------------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_the_page_estimates_then_generates_with_a_control_video(page, server, tmp_path):
    secret = server.new_key(credits=1000, name="control video page")
    enter_key(page, secret)
    page.get_by_label("Control type", exact=True).wait_for(state="visible", timeout=10_000)  # models lists depth
    page.get_by_label("Prompt", exact=True).fill("A paper boat following the stripes")
    page.get_by_label("Duration", exact=True).fill("1")
    page.get_by_label("Quality", exact=True).select_option("360p")
    page.get_by_label("Control video", exact=True).set_input_files(
        files=[{"name": "depth.mp4", "mimeType": "video/mp4", "buffer": control_mp4(tmp_path)}])
    page.get_by_label("Control type", exact=True).select_option("depth")
    page.wait_for_timeout(200)  # the file is read as a data URI
    page.get_by_role("button", name="Estimate", exact=True).click()
    estimate = page.locator("#estimate")
    estimate.wait_for(state="visible", timeout=10_000)
    text = estimate.text_content()
    assert "640×360, 25 frames, 10 credits (1000 left)" in text and "ready in about" in text, text
    jobs_listed = page.evaluate("fetch('api/v1/jobs', {headers: {Authorization: 'Bearer ' + localStorage.getItem("
                                "'pixgen.apiKey')}}).then(r => r.json()).then(b => b.jobs.length)")
    assert jobs_listed == 0

    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#job-result").wait_for(state="visible", timeout=300_000)
    job_id = page.locator("#job-id").text_content()
    job = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {secret}"}).json()
    assert job["status"] == "completed" and (job["width"], job["height"]) == (640, 360)


# -- a control video by URL (job API) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files_host(tmp_path_factory):
    """A loopback HTTP server with ``/control.mp4`` and ``/not-a-video.png``."""
    root = tmp_path_factory.mktemp("files")
    (root / "control.mp4").write_bytes(control_mp4(root))
    (root / "not-a-video.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with serve_folder(root) as url:
        yield url, (root / "control.mp4").read_bytes()



def test_a_control_video_url_is_fetched_into_the_request_and_a_non_mp4_is_refused(fetch_server,
                                                                                  files_host):
    import json

    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore

    base, mp4 = files_host
    server = fetch_server
    key = server.new_key(credits=30)
    body = {"prompt": "a kite", "duration": 1, "quality": "360p", "control_type": "depth",
            "control_video": base + "/control.mp4"}
    with client(server, key) as c:
        assert c.post("/api/v1/models/pixverse-v6/estimate", json=body).status_code == 200
        r = c.post("/api/v1/models/pixverse-v6/run", json=body)
        assert r.status_code == 200, r.text
        bad = c.post("/api/v1/models/pixverse-v6/run", json={**body, "control_video": base + "/not-a-video.png"})
        assert bad.status_code == 400 and bad.json()["field"] == "control_video", bad.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 20
    db = connect(server.database_url, pool_size=1)
    try:
        stored = json.loads(JobStore(db).get(r.json()["jobId"]).request)
    finally:
        db.dispose()
    assert stored["control_video"] == video_uri(mp4) and stored["control_type"] == "depth"


# -- two-stage qualities ------------------------------------------------------------------------------------
def test_stage_two_refines_without_the_reference_or_the_ic_lora(toy_variant, tmp_path):
    from pixgen.engine import load_engine

    engine = load_engine(str(toy_variant("ltx-2.0-dev", {"num_inference_steps": 2,
                                                          "two_stage_qualities": ["360p"]})))
    calls = TransformerCalls(engine)
    try:  # up to the decode (start_generate): both stages' calls are all this reads
        engine.start_generate(small(control_video=video_uri(control_mp4(tmp_path)), control_type="depth"),
                              tmp_path / "two.mp4")
    finally:
        calls.close()
    flags = [active for _, active in calls.calls]
    first_off = flags.index(False)
    stage_one, stage_two = calls.calls[:first_off], calls.calls[first_off:]  # the IC-LoRA is on for stage 1 only
    assert stage_one and stage_two and not any(active for _, active in stage_two)
    assert {n for n, _ in stage_one} == {stage_one[0][0]} and {n for n, _ in stage_two} == {stage_two[0][0]}
    assert stage_two[0][0] == 2 * stage_one[0][0]  # full size (×4 tokens) against half size plus the reference (×2)
