"""Keyframes: pictures pinned at any time, through LTX2ConditionPipeline conditions at the matching latent frames.

On the toy model a hook on the transformer sees every denoising call: a pinned latent's tokens are held at the
same values (the condition's) at every step with timestep 0, and a keyframe's tokens sit at its time on the RoPE
clock. Then the refusals (400 naming the field, nothing charged) and one job end to end through the job API.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import torch
from PIL import Image

from pixgen.api.mapping import check_capabilities
from pixgen.core.keyframes import latent_index
from pixgen.core.spec import parse_request
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.errors import InvalidRequest
from pixgen.media.probe import probe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RUN = "/api/v1/models/pixverse-v6/run"


def data_uri(color, size=(96, 96)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def request(**fields):
    return parse_request({"prompt": "a paper boat on a stream", "duration": 1, "quality": "360p", "seed": 3,
                          "aspect_ratio": "16:9", "thinking_type": "disabled", **fields})


def submitted(**fields):
    """The request as a submit checks it: the spec, then what LTX-2 can make (its latent clock: 8 frames a latent)."""
    made = request(**fields)
    check_capabilities(made, LTX2_CAPABILITIES)
    return made


# -- the latent clock ------------------------------------------------------------------------------------------
def test_a_frame_lands_on_the_latent_that_holds_it():
    # latent 0: frame 0 alone; latent k >= 1: frames 8k-7 .. 8k
    assert [latent_index(f, 8) for f in (0, 1, 8, 9, 16, 17, 24, 120)] == [0, 1, 1, 2, 2, 3, 3, 15]
    assert [latent_index(f, 1) for f in (0, 1, 8)] == [0, 1, 8]  # a backend without a latent clock


@pytest.mark.parametrize("keyframes, field", [
    ([], "keyframes"),
    ([{"image": data_uri("red"), "time": 0.1 * i} for i in range(9)], "keyframes"),
    ([{"image": data_uri("red"), "time": 1.5}], "keyframes[0].time"),
    ([{"image": data_uri("red"), "time": -0.5}], "keyframes[0].time"),
    ([{"image": data_uri("red"), "time": "0.5"}], "keyframes[0].time"),
    ([{"image": data_uri("red"), "time": 0.5, "strength": 0}], "keyframes[0].strength"),
    ([{"image": "not an image", "time": 0.5}], "keyframes[0].image"),
    ([{"image": data_uri("red"), "time": 0.5}, {"image": data_uri("blue"), "time": 0.6}], "keyframes[1].time"),
    ([{"image": data_uri("red"), "time": 0.5, "at": 1}], "keyframes[0].at"),
])
def test_bad_keyframes_are_refused_naming_the_field(keyframes, field):
    with pytest.raises(InvalidRequest) as info:
        submitted(keyframes=keyframes)
    assert info.value.field == field


def test_a_keyframe_on_the_start_or_end_frames_latent_is_refused():
    red = data_uri("red")
    with pytest.raises(InvalidRequest) as info:
        submitted(image_input=red, keyframes=[{"image": red, "time": 0.0}])
    assert info.value.field == "keyframes[0].time" and "image_input" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        submitted(image_input=red, end_image_input=red, keyframes=[{"image": red, "time": 0.99}])
    assert info.value.field == "keyframes[0].time" and "end_image_input" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        submitted(multi_clip=True, keyframes=[{"image": red, "time": 0.5}])
    assert info.value.field == "keyframes"


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


@pytest.fixture(scope="module")
def bf16_engine():
    from pixgen.engine import load_engine

    return load_engine("tiny", dtype="bfloat16")


class TransformerCalls:
    """What the transformer is given at each denoising step (a forward pre-hook: it only looks)."""

    def __init__(self, transformer):
        self.calls: list[dict] = []
        self._handle = transformer.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.calls.append({name: kwargs[name].detach().clone() for name in
                           ("hidden_states", "timestep", "video_coords")} |
                          {name: kwargs[name] for name in ("num_frames", "height", "width")})

    def close(self):
        self._handle.remove()


def test_keyframes_pin_the_latents_at_their_times(engine, tmp_path):
    # 25 frames = latents 0..3. Start image on latent 0; keyframes at 0.5 s (frame 12 → latent 2) and 1.0 s
    # (frame 24 → latent 3), the second at half strength.
    seen = TransformerCalls(engine.pipes.text.transformer)
    try:
        result = engine.generate(request(image_input=data_uri("red"), keyframes=[
            {"image": data_uri("blue"), "time": 0.5}, {"image": data_uri("green"), "time": 1.0, "strength": 0.5}]),
            tmp_path / "kf.mp4")
    finally:
        seen.close()
    assert probe(result.path).num_frames == 25
    steps = seen.calls
    assert len(steps) == engine.recipe.num_inference_steps
    frames, per_latent = steps[0]["num_frames"], steps[0]["height"] * steps[0]["width"]
    assert frames == 4
    main = frames * per_latent
    # Two keyframe conditions appended after the main tokens, one latent frame each.
    assert all(s["hidden_states"].shape[1] == main + 2 * per_latent for s in steps)
    start = slice(0, per_latent)
    blue = slice(main, main + per_latent)
    green = slice(main + per_latent, main + 2 * per_latent)
    for s in steps:
        t = s["timestep"][0]
        assert torch.all(t[start] == 0) and torch.all(t[blue] == 0)  # fully held: no noise level
        assert torch.allclose(t[green], t[per_latent] * 0.5)  # half strength: half the noise level
        assert torch.all(t[per_latent:main] > 0)  # everything else is denoised
    first, last = steps[0]["hidden_states"][0], steps[-1]["hidden_states"][0]
    assert torch.equal(first[start], last[start]) and torch.equal(first[blue], last[blue])  # held, step to step
    assert not torch.equal(first[per_latent:main], last[per_latent:main])
    # On the RoPE clock (seconds): the keyframes sit where LTX-2 puts latents 2 and 3, frames 9 and 17.
    coords = steps[0]["video_coords"][0, 0, :, 0]  # temporal start of each token
    assert coords[blue].unique().tolist() == [pytest.approx(9 / 24)]
    assert coords[green].unique().tolist() == [pytest.approx(17 / 24)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_start_image_below_full_strength_is_partly_noised_and_denoised(engine, bf16_engine, tmp_path, dtype):
    # image_strength 0.4: the start frame's latent at (1 − 0.4) × everything else's noise level at every step, and
    # denoised with the rest (strength 1, above: held at timestep 0, unchanged).
    model = engine if dtype == "float32" else bf16_engine
    seen = TransformerCalls(model.pipes.text.transformer)
    try:
        result = model.generate(request(image_input=data_uri("red"), image_strength=0.4, generate_audio=False),
                                tmp_path / "strength.mp4")
    finally:
        seen.close()
    assert probe(result.path).num_frames == 25
    steps = seen.calls
    per_latent = steps[0]["height"] * steps[0]["width"]
    assert all(s["hidden_states"].shape[1] == 4 * per_latent for s in steps)  # in place: nothing appended
    start, rest = slice(0, per_latent), slice(per_latent, 4 * per_latent)
    for s in steps:
        t = s["timestep"][0].float()
        assert torch.all(t[rest] > 0) and torch.allclose(t[start], t[per_latent] * 0.6, rtol=1e-2)
    first, last = steps[0]["hidden_states"][0], steps[-1]["hidden_states"][0]
    assert not torch.equal(first[start], last[start])  # no longer held: denoised like the rest


@pytest.mark.parametrize("fields", [{"image_strength": 0}, {"image_strength": 1.5}, {"image_strength": "0.5"},
                                    {"image_strength": True}, {"image_strength": 0.5, "image_input": None}])
def test_a_bad_image_strength_is_refused_naming_it_and_charges_nothing(api_server, fields):
    key = api_server.new_key(credits=100)
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        body = {"prompt": "a boat", "duration": 1, "quality": "360p", "image_input": data_uri("red"), **fields}
        r = c.post(RUN, json={k: v for k, v in body.items() if v is not None})
        assert r.status_code == 400 and r.json()["field"] == "image_strength", r.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 100


def test_a_keyframe_changes_the_video_near_its_time(engine, tmp_path):
    from pixgen.media.probe import read_frames

    plain = read_frames(engine.generate(request(generate_audio=False), tmp_path / "p.mp4").path).astype(int)
    keyed = read_frames(engine.generate(request(generate_audio=False, keyframes=[
        {"image": data_uri("white"), "time": 0.5}]), tmp_path / "k.mp4").path).astype(int)
    assert abs(keyed - plain).mean() > 1.0


# -- through the job API ---------------------------------------------------------------------------------------
def test_keyframe_refusals_on_the_job_api_charge_nothing(api_server):
    key = api_server.new_key(credits=100)
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        body = {"prompt": "a boat", "duration": 1, "quality": "360p", "keyframes": [
            {"image": data_uri("red"), "time": 0.5}, {"image": data_uri("blue"), "time": 0.55}]}
        r = c.post(RUN, json=body)
        assert r.status_code == 400 and r.json()["field"] == "keyframes[1].time"
        r = c.post(RUN, json={**body, "keyframes": [{"image": "ftp://example.com/a.png", "time": 0.5}]})
        assert r.status_code == 400 and r.json()["field"] == "keyframes[0].image"
        r = c.post(RUN, json={**body, "keyframes": [{"image": "data:image/png;base64,AAAA", "time": 0.5}]})
        assert r.status_code == 400 and r.json()["field"] == "keyframes[0].image"  # not a readable picture
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 100
        assert "keyframes" in c.get("/api/v1/models").json()["models"][0]["capabilities"]


def test_a_job_with_keyframes_runs_end_to_end(server):
    key = server.new_key(credits=100)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        r = c.post(RUN, json={"prompt": "a boat", "duration": 1, "quality": "360p", "seed": 4,
                              "keyframes": [{"image": data_uri("red"), "time": 0}, {"image": data_uri("blue"),
                                                                                     "time": 1}]})
        assert r.status_code == 200, r.text
        job_id = r.json()["jobId"]
        deadline = time.monotonic() + 240
        while (job := c.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert job["status"] == "completed", job
        video = httpx.get(job["output"]["video"], timeout=30)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"


# -- keyframe images by URL ------------------------------------------------------------------------------------
class Pictures(BaseHTTPRequestHandler):
    """``/red.png``: a PNG; anything else: a text page (not a picture)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body, ctype = (RED_PNG, "image/png") if self.path == "/red.png" else (b"hello", "text/plain")
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


RED_PNG = base64.b64decode(data_uri("red").split(",", 1)[1])


@pytest.fixture(scope="module")
def pictures():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pictures)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()



def test_keyframe_urls_are_fetched_at_submit_and_a_bad_one_is_refused_naming_it(fetch_server, pictures):
    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore

    key = fetch_server.new_key(credits=100)
    with httpx.Client(base_url=fetch_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        body = {"prompt": "a boat", "duration": 2, "quality": "360p",
                "keyframes": [{"image": data_uri("blue"), "time": 0.5}, {"image": f"{pictures}/red.png", "time": 1.5}]}
        bad = c.post(RUN, json={**body, "keyframes": [body["keyframes"][0], {"image": f"{pictures}/page",
                                                                             "time": 1.5}]})
        assert bad.status_code == 400 and bad.json()["field"] == "keyframes[1].image", bad.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 100
        ok = c.post(RUN, json=body)
        assert ok.status_code == 200, ok.text
    db = connect(fetch_server.database_url, pool_size=1)
    try:
        stored = JobStore(db).get(ok.json()["jobId"]).video_request()
    finally:
        db.dispose()
    assert [k.image for k in stored.keyframes] == [data_uri("blue"), data_uri("red")]
    assert [k.time for k in stored.keyframes] == [0.5, 1.5]


def test_the_cli_takes_keyframes_as_seconds_equals_file(tmp_path):
    from pixgen.cli import build_parser
    from pixgen.cli.generate_cmd import parse_args_request

    picture = tmp_path / "red.png"
    picture.write_bytes(RED_PNG)
    args = build_parser().parse_args(["generate", "a boat", "--duration", "2", "--keyframe", f"1.5={picture}",
                                      "-o", str(tmp_path / "o.mp4")])
    request = parse_args_request(args)
    assert [(k.time, k.image) for k in request.keyframes] == [(1.5, data_uri("red"))]
    for bad in (f"3={picture}", f"later={picture}", str(picture)):
        args = build_parser().parse_args(["generate", "a boat", "--duration", "2", "--keyframe", bad,
                                          "-o", str(tmp_path / "o.mp4")])
        with pytest.raises(InvalidRequest) as info:
            parse_args_request(args)
        assert info.value.field == "--keyframe"


def test_a_keyframe_at_zero_fixes_the_ratio_as_a_start_frame_does():
    """With no aspect_ratio and no image_input, a keyframe at 0 s is the first frame: its shape sets the ratio; a
    later keyframe does not, and an explicit aspect_ratio or image_input wins."""
    from pixgen.media.images import check_request_images

    tall = data_uri((10, 20, 30), size=(90, 160))
    wide = data_uri((30, 20, 10), size=(160, 90))

    def checked(**fields):
        return check_request_images(parse_request({"prompt": "a lighthouse", "duration": 2, **fields}))

    assert checked(keyframes=[{"image": tall, "time": 0}]).aspect_ratio == "9:16"
    assert checked(keyframes=[{"image": tall, "time": 1}]).aspect_ratio is None  # 16:9 by default
    assert checked(keyframes=[{"image": tall, "time": 0}], aspect_ratio="1:1").aspect_ratio == "1:1"
    assert checked(image_input=wide, keyframes=[{"image": tall, "time": 1}]).aspect_ratio == "16:9"
