"""What the browser tests share: Debian's chromium through Playwright, and the page's key field.

The fixtures built on these (``browser``, ``page``, ``web_key``) are in conftest.py.
"""

from __future__ import annotations

import os

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


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


def post_json(server, secret: str, path: str, body: dict | None = None) -> dict:
    res = httpx.post(f"{server.url}{path}", json=body or {}, headers={"Authorization": f"Bearer {secret}"},
                     timeout=30)
    res.raise_for_status()
    return res.json()


def enter_key(page, secret: str) -> None:
    field = page.get_by_label("API key", exact=True)
    field.fill(secret)
    field.press("Tab")  # commits the value: the page stores it and loads the recent jobs
