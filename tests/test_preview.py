"""The early preview: a two-stage job's stage 1 decoded at half size, stored while the final renders, announced as a
``preview`` event on the job's event stream, in ``output.preview``, and shown by the web page before the video.

Runs a real ``pixgen serve`` whose model is the toy LTX-2 with 360p made a two-stage quality (stage 1 at 320x192).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from test_service_api import parse_sse
from web_browser import enter_key, page_on

from pixgen.media.probe import probe, read_frames
from pixgen.testing import start_server

pytestmark = pytest.mark.slow
RUN = "/api/v1/models/pixverse-v6/run"
TWO_STAGE_360 = {"recipe": "ltx-2.0-dev", "sampling": {"max_sequence_length": 64, "two_stage_qualities": ["360p"],
                                                        "refine_lora": None}}


def two_stage_toy(root: Path) -> Path:
    """The toy's weights (linked) under a ``pixgen.json`` that makes 360p two-stage."""
    from pixgen.engine import resolve_model_dir

    folder = root / "toy-two-stage"
    folder.mkdir()
    for item in resolve_model_dir("tiny").iterdir():
        if item.name != "pixgen.json":
            (folder / item.name).symlink_to(item)
    (folder / "pixgen.json").write_text(json.dumps(TWO_STAGE_360))
    return folder


@pytest.fixture(scope="module")
def two_stage_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("preview")
    server = start_server(root / "data", workers=1, ready=True, timeout=240,
                          env={"PIXGEN_MODEL": str(two_stage_toy(root)), "PIXGEN_LEASE_SECONDS": "10"})
    yield server
    server.stop()


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _submit(server, secret: str, **fields) -> str:
    body = {"prompt": "A paper boat on a rainy street", "duration": 1, "quality": "360p", "seed": 11,
            "thinking_type": "disabled", **fields}
    res = httpx.post(server.url + RUN, json=body, headers=_auth(secret), timeout=30)
    assert res.status_code == 200, res.text
    return res.json()["jobId"]


def test_a_two_stage_job_streams_its_preview_before_it_completes(two_stage_server, tmp_path):
    server = two_stage_server
    secret = server.new_key(credits=1000)
    job_id = _submit(server, secret, duration=2)  # 2 s: the final's decode runs well after the draft
    events: list[tuple[str, dict]] = []
    job_when_previewed: dict = {}
    with httpx.stream("GET", f"{server.url}/api/v1/jobs/{job_id}/events", headers=_auth(secret),
                      timeout=300) as stream:
        lines = stream.iter_lines()
        for event in _events(lines):
            events.append(event)
            if event[0] == "preview" and not job_when_previewed:
                job_when_previewed = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=_auth(secret)).json()
            if event[0] == "done":
                break
    kinds = [kind for kind, _ in events]
    assert kinds.count("preview") == 1 and kinds[-1] == "done", kinds
    first_preview = kinds.index("preview")
    # The draft arrived while the job was still running: a processing progress event follows it.
    assert any(kind == "progress" and data["status"] == "processing" for kind, data in events[first_preview + 1:]), \
        events
    assert job_when_previewed["status"] == "processing", job_when_previewed
    assert job_when_previewed["output"]["video"] is None
    # the same draft: both links name one file (each is signed when it is made, so their expiry may differ by a
    # second) and both fetch the same bytes
    polled, streamed = job_when_previewed["output"]["preview"], events[first_preview][1]["preview"]
    assert urlsplit(polled).path == urlsplit(streamed).path and "sig=" in polled and "sig=" in streamed
    assert _get(polled) == _get(streamed)

    done = events[-1][1]
    assert done["status"] == "completed" and done["output"]["preview"] and done["output"]["video"]
    preview, final = tmp_path / "preview.mp4", tmp_path / "final.mp4"
    preview.write_bytes(_get(done["output"]["preview"]))
    final.write_bytes(_get(done["output"]["video"]))
    draft, video = probe(preview), probe(final)
    assert (draft.video_codec, draft.pix_fmt) == ("h264", "yuv420p")
    assert (draft.width, draft.height, draft.num_frames) == (320, 180, video.num_frames)  # half size, every frame
    assert draft.audio_codec is None
    assert (video.width, video.height) == (640, 360)
    assert preview.stat().st_size < final.stat().st_size
    timings = done["timings"]
    assert timings["preview"] > 0  # measured apart from the final's decode


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from pixgen.engine.ltx2.engine import LTX2Engine

    folder = two_stage_toy(tmp_path_factory.mktemp("engine"))
    return LTX2Engine.load(folder), folder


def test_the_preview_leaves_the_final_frames_unchanged(engine, tmp_path):
    """The draft decodes with its own generator and changes nothing the final depends on."""
    from pixgen.core.spec import parse_request

    engine, _ = engine
    request = parse_request({"prompt": "a kite over a beach", "duration": 1, "quality": "360p", "seed": 5,
                             "thinking_type": "disabled", "generate_audio": False})
    drafts = []
    with_draft = engine.generate(request, tmp_path / "with.mp4", on_preview=drafts.append)
    without = engine.generate(request, tmp_path / "without.mp4")
    assert len(drafts) == 1 and drafts[0].path.is_file() and drafts[0].source == "stage1"
    assert with_draft.timings.preview and without.timings.preview is None
    assert np.array_equal(read_frames(with_draft.path), read_frames(without.path))


@pytest.mark.parametrize("no_preview", [False, True])
def test_the_worker_stores_the_draft_unless_told_not_to(engine, tmp_path, no_preview):
    from pixgen.core.spec import parse_request
    from pixgen.jobs.db import connect, migrate
    from pixgen.jobs.keys import create_key
    from pixgen.jobs.store import JobStore
    from pixgen.jobs.worker import Worker
    from pixgen.settings import Settings

    engine, folder = engine
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'jobs.db'}", model=str(folder),
                        poll_interval=0.05, no_preview=no_preview)
    db = connect(settings.database_url, pool_size=2)
    try:
        migrate(db)
        store = JobStore.from_settings(db, settings)
        key, _ = create_key(db, credits=10)
        job_id = store.submit(key.id, parse_request({"prompt": "a kite", "duration": 1, "quality": "360p",
                                                     "generate_audio": False}), cost=10).job.id
        Worker(settings, engine_factory=lambda: engine).run(max_jobs=1)
        job = store.get(job_id)
        assert job.status.value == "completed"
        if no_preview:
            assert job.preview_file is None and "preview" not in job.timing_dict()
        else:
            assert job.preview_file and (settings.media_dir / job.preview_file).is_file()
            assert probe(settings.media_dir / job.preview_file).width == 320
        assert job.manifest_dict()["shots"][0]["sigmas"]["stage2"]  # two-stage: both stages' sigmas kept
    finally:
        db.dispose()


# -- the web page ----------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_web_page_shows_the_preview_before_the_final_video(browser, two_stage_server):
    server = two_stage_server
    secret = server.new_key(credits=1000)
    with page_on(browser, server) as page:  # on leaving: no JavaScript error on the page
        enter_key(page, secret)
        # Log each time the draft player appears, with whether the final video was showing then.
        page.evaluate("""() => {
            window.__previews = [];
            const box = document.getElementById('job-preview');
            new MutationObserver(() => {
                const v = document.getElementById('preview-video');
                if (v && !box.hidden) window.__previews.push({src: v.src, label: v.getAttribute('aria-label'),
                    resultHidden: document.getElementById('job-result').hidden,
                    caption: box.querySelector('figcaption').textContent});
            }).observe(box, {childList: true, attributes: true, subtree: true});
        }""")
        page.get_by_label("Prompt", exact=True).fill("A lighthouse in a storm")
        page.get_by_label("Duration", exact=True).fill("2")
        page.get_by_label("Quality", exact=True).select_option("360p")
        page.get_by_label("Thinking", exact=True).select_option("disabled")
        page.get_by_role("button", name="Generate", exact=True).click()
        page.locator("#job-result").wait_for(state="visible", timeout=300_000)
        seen = page.evaluate("window.__previews")
        assert seen, "the draft preview was never shown"
        assert seen[0]["resultHidden"] is True  # before the final video
        assert "/preview.mp4" in seen[0]["src"] and seen[0]["label"] == "Draft preview"
        assert "Draft preview" in seen[0]["caption"]
        got = page.request.get(seen[0]["src"])
        assert got.ok and got.headers["content-type"] == "video/mp4"
        # The final replaces it: one player left, the final video's.
        assert page.locator("#preview-video").count() == 0 and page.locator("#job-preview").is_hidden()


def _events(lines):
    """``parse_sse`` one event at a time (the stream is read while the job runs)."""
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if not line:
            yield from parse_sse(buffer)
            buffer = []


def _get(url: str) -> bytes:
    res = httpx.get(url, timeout=30)
    assert res.status_code == 200 and res.headers["content-type"] == "video/mp4"
    return res.content

