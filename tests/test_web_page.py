"""The web page at ``/`` in a real browser (Debian's chromium via Playwright) against a real ``pixgen serve``
(the shared ``server`` fixture: the toy model, one worker).

Fills the form by its labels, watches the progress bar move, plays the finished video, cancels a queued job and
shows an error from the API. Screenshots of the finished page (desktop and phone width) go to tests/artifacts/.
Where chromium is missing these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 375, "height": 812}


def _require_browser():
    """Playwright's sync API, or skip (fail under CI=true) when it or chromium is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright Python package is not installed"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


def _post(server, secret: str, path: str, body: dict | None = None) -> dict:
    res = httpx.post(f"{server.url}{path}", json=body or {}, headers={"Authorization": f"Bearer {secret}"},
                     timeout=30)
    res.raise_for_status()
    return res.json()


# -- a real browser ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def secret(server) -> str:
    return server.new_key(credits=100_000, name="web page test")


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _enter_key(page, secret: str) -> None:
    field = page.get_by_label("API key", exact=True)
    field.fill(secret)
    field.press("Tab")  # commits the value: the page stores it and loads the recent jobs


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
def test_generate_from_the_form_shows_progress_and_plays_the_video(page, secret):
    # The key is kept in the browser's local storage.
    _enter_key(page, secret)
    page.reload()
    assert page.get_by_label("API key", exact=True).input_value() == secret

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


def test_a_queued_job_shows_its_place_and_can_be_cancelled(page, server, secret):
    # Keep the only worker busy, so the page's job waits in the queue.
    blocker = _post(server, secret, "/api/v1/models/pixverse-v6/run",
                    {"prompt": "a long one", "duration": 15, "quality": "1080p", "thinking_type": "disabled"})
    try:
        _enter_key(page, secret)
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
        _post(server, secret, f"/api/v1/jobs/{blocker['jobId']}/cancel")


def test_an_api_error_is_shown_next_to_the_form(page, secret):
    from PIL import Image

    _enter_key(page, secret)
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
