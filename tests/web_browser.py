"""What the browser tests share: Debian's chromium through Playwright, a checked page on a server, and the page's
key field.

The fixtures built on these (``browser``, ``page``, ``web_key``) are in conftest.py; a test whose server is not the
shared ``server`` opens its page with ``page_on``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
VIEWPORT = {"width": 1280, "height": 900}


def require_browser():
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


@contextmanager
def page_on(browser, server, key: str | None = None) -> Iterator:
    """A fresh browser context on ``server``'s page, closed on leaving; then any JavaScript error the page raised
    fails the test (an exception from the body goes first). With ``key``, the page is handed over with the key
    entered and the models answer it asked for then received, so the fields that answer shows are settled."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server.url + "/")
        if key is not None:
            with page.expect_response(lambda res: res.url.endswith("/api/v1/models")):
                enter_key(page, key)
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def post_json(server, secret: str, path: str, body: dict | None = None) -> dict:
    res = httpx.post(f"{server.url}{path}", json=body or {}, headers={"Authorization": f"Bearer {secret}"},
                     timeout=30)
    res.raise_for_status()
    return res.json()


def enter_key(page, secret: str) -> None:
    field = page.get_by_label("API key", exact=True)
    field.fill(secret)
    field.press("Tab")  # commits the value: the page stores it and loads the recent jobs
