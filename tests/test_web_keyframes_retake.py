"""The web page's keyframe timeline and retake range, in the real browser against the toy-model server (the
fixtures of conftest.py)."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image
from web_browser import enter_key, post_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def png(color) -> dict:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buf, format="PNG")
    return {"name": f"{color}.png", "mimeType": "image/png", "buffer": buf.getvalue()}


def add_keyframe(page, color, at: str) -> None:
    page.get_by_label("Keyframe image", exact=True).set_input_files(png(color))
    page.get_by_label("Keyframe time", exact=True).fill(at)
    page.get_by_role("button", name="Add keyframe", exact=True).click()
    page.get_by_alt_text(f"Keyframe at {at} s").wait_for(state="visible")


def test_keyframes_go_on_the_timeline_and_into_the_request(page, server, web_key):
    enter_key(page, web_key)
    page.get_by_label("Prompt", exact=True).fill("A lantern drifting on a lake")
    page.get_by_label("Duration", exact=True).fill("2")
    page.get_by_label("Quality", exact=True).select_option("360p")
    add_keyframe(page, "red", "1")
    add_keyframe(page, "blue", "0.9")  # the same latent frame as 1 s: the server refuses it, naming it
    marks = page.locator("#keyframe-timeline img")
    assert marks.evaluate_all("ms => ms.map(m => m.style.left)") == ["45%", "50%"]  # in time order
    page.get_by_role("button", name="Generate", exact=True).click()
    error = page.locator("#form-error")
    error.wait_for(state="visible", timeout=10_000)
    assert "keyframes[1].time" in error.text_content()
    assert page.get_by_label("Keyframe time", exact=True).get_attribute("aria-invalid") == "true"

    page.get_by_role("button", name="Remove keyframe at 0.9 s", exact=True).click()
    assert marks.count() == 1
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#job-id").wait_for(state="visible", timeout=10_000)
    job_id = page.locator("#job-id").text_content()
    assert job_id.startswith("job_")
    post_json(server, web_key, f"/api/v1/jobs/{job_id}/cancel")


def test_a_part_of_a_finished_video_is_retaken_from_the_player(page, server, web_key):
    source = post_json(server, web_key, "/api/v1/models/pixverse-v6/run",
                   {"prompt": "a kite over dunes", "duration": 1, "quality": "360p", "seed": 5,
                    "thinking_type": "disabled"})["jobId"]
    deadline = time.monotonic() + 240
    while httpx.get(f"{server.url}/api/v1/jobs/{source}", headers={"Authorization": f"Bearer {web_key}"},
                    timeout=30).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    enter_key(page, web_key)
    page.locator("#recent-list button").first.click()
    page.locator("#job-result").wait_for(state="visible", timeout=30_000)
    page.get_by_text("Retake a part", exact=True).click()
    page.get_by_label("Retake from", exact=True).fill("0.25")
    page.get_by_label("Retake to", exact=True).fill("0.75")
    mark = page.locator("#retake-mark")
    assert mark.evaluate("m => [m.style.left, m.style.width]") == ["25%", "50%"]  # over the 1 s player
    page.get_by_label("Retake prompt", exact=True).fill("the kite loops")
    page.get_by_role("button", name="Retake", exact=True).click()
    page.wait_for_function(f"document.getElementById('job-id').textContent !== '{source}'", timeout=10_000)
    page.locator("#job-result").wait_for(state="visible", timeout=240_000)
    retake = page.locator("#job-id").text_content()
    job = httpx.get(f"{server.url}/api/v1/jobs/{retake}", headers={"Authorization": f"Bearer {web_key}"},
                    timeout=30).json()
    assert (job["kind"], job["sourceJobId"], job["status"]) == ("retake", source, "completed")
    page.wait_for_function("document.querySelector('video').readyState >= 2", timeout=30_000)
    assert abs(page.locator("video").evaluate("v => v.duration") - 1.0) < 0.1
