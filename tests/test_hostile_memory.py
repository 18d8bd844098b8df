"""Work for a key that cannot pay, against a real ``pixgen serve`` (API only): refused (402) before any image is
decoded, its refusals using up its rate like any request, the API process's memory no bigger after a burst of
36-megapixel images; and for a key that pays, decodes bounded (``--decode-concurrency``) and their memory handed back
to the system once the burst is over (the API process measured with psutil)."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
from hostile_tools import DATABASES, key_state, new_key, png_uri, served
from PIL import Image

RUN = "/api/v1/models/pixverse-v6/run"
RATE = 6  # submits a minute per key on these servers: a burst of six


def big_png(seed: int) -> str:
    """A 7200x5000 (36 MP) PNG of a few flat blocks: ~120 KB on the wire, 144 MB once decoded."""
    width, height = 7200, 5000
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :, 0] = (np.arange(width) // 600 * 20 + seed)[None, :]
    pixels[:, :, 1] = (np.arange(height) // 500 * 20)[:, None]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_claiming(width: int, height: int) -> str:
    """A PNG whose header says ``width`` x ``height`` and whose pixel data is one byte: only its header reads."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def big_images():
    return big_png(1), big_png(2)


ENV = {"PIXGEN_RATE_LIMIT_PER_MINUTE": str(RATE), "PIXGEN_MAX_CONCURRENT_JOBS": "0", "PIXGEN_DECODE_CONCURRENCY": "2"}


@pytest.fixture(scope="module", params=DATABASES)
def api(request, tmp_path_factory):
    with served(request.param, tmp_path_factory.mktemp(f"memory-{request.param}"), workers=0, env=ENV) as server:
        yield server


@pytest.fixture(scope="module")
def fresh_api(tmp_path_factory):
    """A server of its own (SQLite: the process's memory does not depend on the database)."""
    with served("sqlite", tmp_path_factory.mktemp("memory-fresh"), workers=0, env=ENV) as server:
        yield server


def rss(server) -> float:
    """The API process's resident memory, MB."""
    return psutil.Process(server.proc.pid).memory_info().rss / 1e6


def burst(server, secret: str, body: dict, n: int = 6) -> list[httpx.Response]:
    def one(_: int) -> httpx.Response:
        return httpx.post(server.url + RUN, json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=120)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_a_key_that_cannot_pay_is_refused_before_any_decode_and_its_refusals_count(api, big_images):
    broke_id, broke = new_key(api, credits=0)
    body = {"prompt": "a harbour", "duration": 1, "quality": "360p", "image_input": big_images[0],
            "end_image_input": big_images[1]}
    burst(api, new_key(api, credits=0)[1], body, n=1)  # the process's first request warms it up
    before = rss(api)
    answers = burst(api, broke, body)
    assert [a.status_code for a in answers] == [402] * 6, [a.text for a in answers]
    assert {a.json()["code"] for a in answers} == {"insufficient_credits"}
    # Twelve 36 MP images decoded would take 1.7 GB at once (144 MB each, and an RGB copy); none was decoded.
    assert rss(api) - before < 50, (before, rss(api))
    refused = httpx.post(api.url + RUN, json={"prompt": "a harbour"}, headers={"Authorization": f"Bearer {broke}"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1  # the six 402s used up the rate
    assert key_state(api, broke_id) == (0, 0)


def test_header_checks_and_the_credit_check_come_before_any_decode(api):
    """Order, shown by images that fail at different depths: a header over the pixel limit (the second image) is
    refused before the first image's broken pixel data is decoded; a key that cannot pay hears 402 before either."""
    broken = png_claiming(64, 48)  # header fine, pixel data short: only a decode finds it
    too_big = png_claiming(9000, 9000)  # 81 MP by its header
    body = {"prompt": "a harbour", "duration": 1, "quality": "360p", "image_input": broken,
            "end_image_input": too_big}
    paying_id, paying = new_key(api, credits=100)
    broke_id, broke = new_key(api, credits=0)
    for secret, status, field in ((broke, 402, None), (paying, 400, "end_image_input")):
        answer = httpx.post(api.url + RUN, json=body, headers={"Authorization": f"Bearer {secret}"})
        assert answer.status_code == status and answer.json().get("field") == field, answer.text
    answer = httpx.post(api.url + RUN, json={**body, "end_image_input": png_uri()},
                        headers={"Authorization": f"Bearer {paying}"})
    assert answer.status_code == 400 and answer.json()["field"] == "image_input", answer.text  # now decoded
    assert "not a readable" in answer.json()["message"]
    assert key_state(api, paying_id) == (100, 0) and key_state(api, broke_id) == (0, 0)


@pytest.mark.slow
def test_memory_decoded_in_a_burst_is_handed_back(fresh_api, big_images):
    api = fresh_api
    paying_id, paying = new_key(api, credits=1000)
    body = {"prompt": "a harbour", "duration": 1, "quality": "360p", "image_input": big_images[0],
            "end_image_input": big_images[1]}
    burst(api, new_key(api, credits=1000)[1], body, n=1)  # the first large decode of the process, another key
    before = rss(api)
    peak = before
    with ThreadPoolExecutor(1) as watcher:
        running = watcher.submit(burst, api, paying, body)
        while not running.done():
            peak = max(peak, rss(api))
            time.sleep(0.05)
        answers = running.result()
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    after = rss(api)
    # At most two requests decode at once (--decode-concurrency 2): one 36 MP image each, 144 MB apiece.
    assert peak - before < 2 * 144 + 150, (before, peak)
    assert after - before < 40, (before, peak, after)  # handed back; it stayed at the peak before
    assert key_state(api, paying_id) == (1000 - 6 * 10, 6)
