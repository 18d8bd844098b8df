"""The web page at ``/`` in a real browser (Debian's chromium via Playwright) against a real ``pixgen serve``
(the shared ``server`` fixture: the toy model, one worker).

Fills the form by its labels, watches the progress bar move, plays the finished video, cancels a queued job and
shows an error from the API. Screenshots of the finished page (desktop and phone width) go to tests/artifacts/.
Where chromium is missing these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from web_browser import enter_key, post_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 375, "height": 812}


def _watch_progress(page) -> None:
    """Record every value the progress bar takes, with the status line at that moment."""
    page.evaluate("""() => {
        window.__progress = [];
        const bar = document.querySelector('progress');
        const status = document.getElementById('job-status');
        new MutationObserver(() => window.__progress.push([bar.getAttribute('value'), status.textContent]))
            .observe(bar, {attributes: true, attributeFilter: ['value']});
    }""")


# -- the tests ---------------------------------------------------------------------------------------------------
def test_generate_from_the_form_shows_progress_and_plays_the_video(page, web_key):
    # The key is kept in the browser's local storage.
    enter_key(page, web_key)
    page.reload()
    assert page.get_by_label("API key", exact=True).input_value() == web_key

    page.get_by_label("Prompt", exact=True).fill("A paper boat drifting down a rainy street")
    page.get_by_label("Negative prompt", exact=True).fill("blurry")
    page.get_by_label("Duration", exact=True).fill("1")
    page.get_by_label("Aspect ratio", exact=True).select_option("16:9")
    page.get_by_label("Quality", exact=True).select_option("360p")
    page.get_by_label("Audio", exact=True).check()
    page.get_by_label("Style", exact=True).select_option("clay")
    page.get_by_label("Camera", exact=True).select_option("pan_left")
    page.get_by_label("Thinking", exact=True).select_option("disabled")
    page.get_by_label("Seed", exact=True).fill("1234")
    _watch_progress(page)
    page.get_by_role("button", name="Generate", exact=True).click()

    page.locator("#job-result").wait_for(state="visible", timeout=300_000)
    seen = page.evaluate("window.__progress")
    values = [int(v) for v, _ in seen if v is not None]
    assert any(0 < v < 100 for v in values), f"the progress bar never showed a value between 0 and 100: {seen}"
    assert values == sorted(values) and values[-1] == 100, seen
    assert any("(denoise)" in status for _, status in seen), f"no stage name shown: {seen}"

    # A playable video of the asked duration and size.
    video = page.locator("video")
    assert video.get_attribute("controls") is not None
    page.wait_for_function("document.querySelector('video').readyState >= 2", timeout=30_000)
    facts = video.evaluate("v => ({duration: v.duration, width: v.videoWidth, height: v.videoHeight})")
    assert abs(facts["duration"] - 1.0) < 0.1, facts
    assert (facts["width"], facts["height"]) == (640, 360), facts
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("document.querySelector('video').currentTime > 0.2", timeout=30_000)

    # Seed and prompt as used; the download link serves the MP4.
    assert page.locator("#result-seed").text_content() == "1234"
    assert "paper boat" in page.locator("#result-prompt").text_content()
    download = page.get_by_role("link", name="Download", exact=True)
    href = download.get_attribute("href")
    assert href == video.evaluate("v => v.currentSrc")
    got = page.request.get(href)
    assert got.ok and got.headers["content-type"] == "video/mp4"

    # "Use this seed" puts it back into the form.
    page.get_by_label("Seed", exact=True).fill("")
    page.get_by_role("button", name="Use this seed", exact=True).click()
    assert page.get_by_label("Seed", exact=True).input_value() == "1234"

    # The recent jobs list shows this job with its thumbnail, and the credits left.
    page.locator("#recent-list .badge").first.get_by_text("completed", exact=True).wait_for(timeout=10_000)
    page.wait_for_function("() => { const i = document.querySelector('#recent-list img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=10_000)
    assert page.locator("#credits").text_content().startswith("Credits left: ")

    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)  # let the first frame paint
    page.screenshot(path=str(ARTIFACTS / "web-finished.png"), full_page=True)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page scrolls sideways"
    page.screenshot(path=str(ARTIFACTS / "web-finished-phone.png"), full_page=True)


def test_a_queued_job_shows_its_place_and_can_be_cancelled(page, server, web_key):
    # Keep the only worker busy, so the page's job waits in the queue.
    blocker = post_json(server, web_key, "/api/v1/models/pixverse-v6/run",
                    {"prompt": "a long one", "duration": 15, "quality": "1080p", "thinking_type": "disabled"})
    try:
        enter_key(page, web_key)
        page.get_by_label("Prompt", exact=True).fill("A queued video that gets cancelled")
        page.get_by_label("Duration", exact=True).fill("1")
        page.get_by_label("Quality", exact=True).select_option("360p")
        page.get_by_role("button", name="Generate", exact=True).click()

        status = page.locator("#job-status")
        page.wait_for_function("/position \\d+/.test(document.getElementById('job-status').textContent)",
                               timeout=30_000)
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.wait_for_function("document.getElementById('job-status').dataset.status === 'cancelled'",
                               timeout=60_000)
        assert status.text_content() == "Cancelled"
        assert page.locator("#job-result").is_hidden()
        page.locator("#recent-list .badge").first.get_by_text("cancelled", exact=True).wait_for(timeout=10_000)
    finally:
        post_json(server, web_key, f"/api/v1/jobs/{blocker['jobId']}/cancel")


def test_an_api_error_is_shown_next_to_the_form(page, web_key):
    from PIL import Image

    enter_key(page, web_key)
    page.get_by_label("Prompt", exact=True).fill("An end frame without a start frame")
    png = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 80, 40)).save(png, format="PNG")
    page.get_by_label("End image", exact=True).set_input_files(
        {"name": "end.png", "mimeType": "image/png", "buffer": png.getvalue()})
    page.get_by_alt_text("End image preview").wait_for(state="visible")
    page.get_by_role("button", name="Generate", exact=True).click()

    error = page.locator("#form-error")
    error.wait_for(state="visible", timeout=10_000)
    assert "end_image_input" in error.text_content()  # the server's message, naming the field
    assert page.get_by_label("End image", exact=True).get_attribute("aria-invalid") == "true"
    assert page.locator("#job").is_hidden()  # nothing was started
