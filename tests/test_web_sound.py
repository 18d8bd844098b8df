"""The web page's "New sound" action on a finished job, in the real browser against the toy-model server (the
fixtures of conftest.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from web_browser import enter_key, post_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def get(server, key: str, path: str) -> dict:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()


def test_a_finished_video_gets_new_sound_from_the_page(page, server, web_key):
    source = post_json(server, web_key, "/api/v1/models/pixverse-v6/run",
                       {"prompt": "a drummer on a rooftop", "duration": 1, "quality": "360p", "seed": 5,
                        "thinking_type": "disabled"})["jobId"]
    deadline = time.monotonic() + 240
    while get(server, web_key, f"/api/v1/jobs/{source}")["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    enter_key(page, web_key)
    page.locator("#recent-list button").first.click()
    page.locator("#job-result").wait_for(state="visible", timeout=30_000)
    page.get_by_text("New sound", exact=True).click()
    page.get_by_label("Sound seed", exact=True).fill("-3")  # refused by the server, naming the seed
    page.get_by_role("button", name="Make new sound", exact=True).click()
    error = page.locator("#sound-error")
    error.wait_for(state="visible", timeout=10_000)
    assert "seed" in error.text_content()
    assert page.get_by_label("Sound seed", exact=True).get_attribute("aria-invalid") == "true"

    page.get_by_label("Sound seed", exact=True).fill("7")
    page.get_by_label("Sound prompt", exact=True).fill("heavy rain and thunder")
    page.get_by_role("button", name="Make new sound", exact=True).click()
    page.wait_for_function(f"document.getElementById('job-id').textContent !== '{source}'", timeout=10_000)
    page.locator("#job-result").wait_for(state="visible", timeout=240_000)
    made = page.locator("#job-id").text_content()
    job = get(server, web_key, f"/api/v1/jobs/{made}")
    assert (job["kind"], job["sourceJobId"], job["status"], job["seed"]) == ("sound", source, "completed", 7)
    assert job["originalPrompt"] == "heavy rain and thunder"
    page.wait_for_function("document.querySelector('video').readyState >= 2", timeout=30_000)
    assert abs(page.locator("video").evaluate("v => v.duration") - 1.0) < 0.1
