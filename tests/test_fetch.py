"""The image_url fetcher's SSRF guard (``pixgen.media.fetch``) against real HTTP servers on loopback, and
``image_url`` / ``end_image_url`` through the job API of a real server (with and without the allow-list)."""

from __future__ import annotations

import base64
import io
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image

from pixgen.errors import InvalidRequest
from pixgen.media.fetch import FetchPolicy, fetch_image, forbidden_address

LOOPBACK = FetchPolicy.from_settings("127.0.0.1", timeout=5)


def image_bytes(fmt: str, size=(64, 48), color=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


PNG, JPEG, WEBP = image_bytes("PNG"), image_bytes("JPEG"), image_bytes("WEBP")


class ImageHandler(BaseHTTPRequestHandler):
    """Routes of the test image host; ``seen`` records (path, Host header) of every request."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/octet-stream", **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host", "")))
        path = self.path.split("?")[0]
        images = {"/img.png": (PNG, "image/png"), "/img.jpg": (JPEG, "image/jpeg"), "/img.webp": (WEBP, "image/webp"),
                  "/lying.txt": (PNG, "text/plain")}
        if path in images:
            self._send(200, images[path][0], images[path][1])
        elif path == "/text":
            self._send(200, b"<html>not an image</html>", "text/html")
        elif path == "/fake.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 100, "image/png")
        elif path == "/missing":
            self._send(404, b"no")
        elif path.startswith("/redirect/"):
            self._send(302, Location=unquote(self.path[len("/redirect/"):]).replace("~", "/"))
        elif path == "/loop":
            self._send(302, Location="/loop")
        elif path == "/big":  # no Content-Length: streams past any limit
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                self.wfile.write(PNG[:16])
                for _ in range(4096):
                    self.wfile.write(b"\x00" * 8192)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif path == "/slow":  # trickles: each read is quick, the whole body never is
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            try:
                for byte in PNG:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == "/silent":  # headers, then nothing
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            time.sleep(5)
        else:
            self._send(404)


@pytest.fixture(scope="module")
def host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def refused(url: str, policy: FetchPolicy = LOOPBACK, field: str = "image_url", **kwargs) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fetch_image(url, policy, field=field, **kwargs)
    assert info.value.field == field and info.value.status == 400
    return info.value


# -- the address rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "169.254.1.1", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "198.18.0.1", "192.0.2.1", "203.0.113.9", "168.63.129.16", "100.100.100.200",
    "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "fe80::1",
    "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "2002:7f00:1::1", "2002:a9fe:a9fe::",
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2001::1",
])
def test_private_loopback_link_local_cgnat_multicast_reserved_and_metadata_addresses_are_forbidden(address):
    assert forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(address):
    assert not forbidden_address(ipaddress.ip_address(address))


# -- fetching from a real server ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, kind, data", [("/img.png", "png", PNG), ("/img.jpg", "jpeg", JPEG),
                                              ("/img.webp", "webp", WEBP), ("/lying.txt", "png", PNG)])
def test_allow_listed_host_serves_png_jpeg_webp_as_a_data_uri_typed_by_its_bytes(host, path, kind, data):
    uri = fetch_image(host + path, LOOPBACK)
    assert uri == f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def test_loopback_is_refused_without_the_allow_list(host):
    ImageHandler.seen.clear()
    error = refused(host + "/img.png", FetchPolicy())
    assert "public addresses only" in error.message
    assert ImageHandler.seen == []  # refused before connecting


def test_localhost_by_name_is_refused_on_every_address_it_resolves_to(host):
    port = host.rsplit(":", 1)[1]
    refused(f"http://localhost:{port}/img.png", FetchPolicy())


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "data:,x",
                                 "javascript:alert(1)", "//example.com/a.png", "http:///a.png", "not a url",
                                 "http://user:pw@example.com/a.png", ""])
def test_bad_schemes_and_malformed_urls_are_refused(url):
    refused(url, FetchPolicy())


@pytest.mark.parametrize("value", [17, None, ["http://x/"], {"url": "http://x/"}, True])
def test_a_non_string_url_is_refused_naming_the_field(value):
    refused(value, field="end_image_url")  # type: ignore[arg-type]


def test_metadata_ip_is_refused_even_when_allow_listed():
    policy = FetchPolicy.from_settings("169.254.169.254, 127.0.0.1", timeout=2)
    started = time.monotonic()
    refused("http://169.254.169.254/latest/meta-data/", policy)
    refused("http://[::ffff:169.254.169.254]/latest/meta-data/", policy)
    assert time.monotonic() - started < 1  # never connected


def test_same_host_redirect_is_followed(host):
    assert fetch_image(host + "/redirect/~img.png", LOOPBACK).startswith("data:image/png;base64,")


@pytest.mark.parametrize("target", ["http://10.0.0.1/img.png", "http://169.254.169.254/latest/meta-data/",
                                    "http://[::1]/img.png", "http://[::ffff:192.168.0.1]/img.png",
                                    "file:///etc/passwd", "ftp://127.0.0.1/img.png"])
def test_redirect_to_a_private_address_or_another_scheme_is_refused(host, target):
    ImageHandler.seen.clear()
    error = refused(host + "/redirect/" + target.replace("/", "~"))
    assert ImageHandler.seen and all(path.startswith("/redirect/") for path, _ in ImageHandler.seen)
    assert "redirects to" in error.message or "public addresses only" in error.message


def test_redirect_from_an_allowed_host_to_a_name_resolving_privately_is_refused(host):
    resolved = []

    def resolve(name: str, port: int) -> list[str]:
        resolved.append(name)
        return ["10.9.8.7"]

    refused(host + "/redirect/http:~~internal.example~secret.png", resolve=resolve)
    assert resolved == ["internal.example"]


def test_redirects_are_capped(host):
    assert "more than 3" in refused(host + "/loop").message


def test_a_name_with_any_private_address_is_refused():
    def resolve(name: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    refused("http://mixed.example/img.png", FetchPolicy(), resolve=resolve)


def test_connection_goes_to_the_checked_address_with_the_real_host_header(host):
    """The name is resolved once by the guard and never again: the request reaches the checked IP."""
    port = host.rsplit(":", 1)[1]
    calls = []

    def resolve(name: str, port: int) -> list[str]:
        calls.append(name)
        return ["127.0.0.1"]

    ImageHandler.seen.clear()
    policy = FetchPolicy.from_settings("images.test", timeout=5)
    assert fetch_image(f"http://images.test:{port}/img.png", policy, resolve=resolve).startswith("data:image/png")
    assert calls == ["images.test"]
    assert ImageHandler.seen == [("/img.png", f"images.test:{port}")]


def test_oversized_body_is_cut_off_at_the_limit(host):
    policy = FetchPolicy.from_settings("127.0.0.1", timeout=10)
    started = time.monotonic()
    assert "larger than" in refused(host + "/big", policy).message  # 32 MB streamed, stopped past 20 MB
    assert time.monotonic() - started < 8
    assert "larger than" in refused(host + "/big-declared", policy).message
    small = FetchPolicy(allow_hosts=frozenset({"127.0.0.1"}), max_bytes=100)
    assert "larger than 100 bytes" in refused(host + "/img.png", small).message


def test_slow_or_silent_body_hits_the_total_timeout(host):
    policy = FetchPolicy.from_settings("127.0.0.1", timeout=1.0)
    for path in ("/slow", "/silent"):
        started = time.monotonic()
        error = refused(host + path, policy)
        assert "within 1 s" in error.message
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("path, words", [("/text", "PNG, JPEG or WebP"), ("/missing", "HTTP 404")])
def test_non_images_and_http_errors_are_refused(host, path, words):
    assert words in refused(host + path).message


def test_unresolvable_host_is_refused():
    refused("http://no-such-host.invalid/img.png", FetchPolicy(timeout=5))


# -- through the job API of a real server ---------------------------------------------------------------------
RUN = "/api/v1/models/pixverse-v6/run"


def _stored_request(server, job_id: str) -> dict:
    import json

    from pixgen.jobs.db import connect
    from pixgen.jobs.store import JobStore

    db = connect(server.database_url, pool_size=1)
    try:
        return json.loads(JobStore(db).get(job_id).request)
    finally:
        db.dispose()


def test_job_api_fetches_image_url_and_end_image_url_into_the_canonical_request(fetch_server, host):
    key = fetch_server.new_key(credits=100)
    with httpx.Client(base_url=fetch_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        body = {"prompt": "a red card", "duration": 1, "quality": "360p", "image_url": host + "/img.png",
                "end_image_url": host + "/redirect/~img.webp"}
        answer = c.post(RUN, json=body)
        assert answer.status_code == 200, answer.text
        stored = _stored_request(fetch_server, answer.json()["jobId"])
        assert stored["image_input"] == f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
        assert stored["end_image_input"] == f"data:image/webp;base64,{base64.b64encode(WEBP).decode()}"
        assert "image_url" not in stored
        # An image alone (no prompt) is a request too; the same Idempotency-Key and body replay the job.
        headers = {"Idempotency-Key": "fetch-1"}
        first = c.post(RUN, json={"image_url": host + "/img.jpg", "duration": 1}, headers=headers).json()
        again = c.post(RUN, json={"image_url": host + "/img.jpg", "duration": 1}, headers=headers).json()
        assert first["jobId"] == again["jobId"] and again["creditsRemaining"] == 80


@pytest.mark.parametrize("body, field", [
    ({"image_url": "http://169.254.169.254/latest/meta-data/"}, "image_url"),
    ({"image_url": "file:///etc/passwd"}, "image_url"),
    ({"image_url": 5}, "image_url"),
    ({"image_url": "{host}/text"}, "image_url"),
    ({"image_url": "{host}/fake.png"}, "image_url"),  # PNG's first bytes, then no image: refused when decoded
    ({"image_url": "{host}/img.png", "end_image_url": "{host}/fake.png"}, "end_image_url"),
    ({"image_url": "{host}/missing"}, "image_url"),
    ({"image_url": "{host}/slow"}, "image_url"),
    ({"image_url": "{host}/redirect/http:~~10.0.0.1~a.png"}, "image_url"),
    ({"image_url": "{host}/img.png", "image_input": "data:image/png;base64,AAAA"}, "image_url"),
    ({"image_url": "{host}/img.png", "end_image_url": "{host}/text"}, "end_image_url"),
    ({"image_url": "{host}/img.png", "end_image_url": "ftp://x/y.png"}, "end_image_url"),
    ({"end_image_url": "{host}/img.png"}, "end_image_url"),
    ({"image_url": "{host}/img.png", "duration": 99}, "duration"),
])
def test_job_api_refuses_each_bad_image_url_with_400_naming_the_field_and_charges_nothing(fetch_server, host,
                                                                                         body, field):
    key = fetch_server.new_key(credits=100)
    body = {"prompt": "x", **{k: v.replace("{host}", host) if isinstance(v, str) else v for k, v in body.items()}}
    with httpx.Client(base_url=fetch_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        answer = c.post(RUN, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "invalid_request" and answer.json()["field"] == field
        listed = c.get("/api/v1/jobs").json()
        assert listed["jobs"] == [] and listed["creditsRemaining"] == 100


def test_job_api_without_the_allow_list_refuses_a_loopback_image_url(api_server, host):
    key = api_server.new_key(credits=100)
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        for field, body in (("image_url", {"prompt": "x", "image_url": host + "/img.png"}),
                            ("end_image_url", {"prompt": "x", "image_input": inline,
                                               "end_image_url": host + "/img.png"})):
            answer = c.post(RUN, json=body)
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] == field and "public addresses only" in answer.json()["message"]
        assert c.get("/api/v1/jobs").json() == {"jobs": [], "hasMore": False, "creditsRemaining": 100}


# -- https: the connection is pinned to the IP, TLS still talks to and checks the name --------------------------
def _openssl(*args: str, cwd) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_host(tmp_path_factory):
    """An https image host on loopback with a certificate for ``images.test`` from a CA of its own."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=pixgen test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "host.key", "-out", "host.csr",
             "-subj", "/CN=images.test", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:images.test\n")
    _openssl("x509", "-req", "-in", "host.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "host.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "host.pem", d / "host.key")
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context(cafile=str(d / "ca.pem"))
    yield server.server_address[1], client_context, server_names
    server.shutdown()
    server.server_close()


def _to_loopback(name: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def test_https_fetch_goes_to_the_checked_ip_with_sni_and_certificate_of_the_name(tls_host):
    port, trust, server_names = tls_host
    policy = FetchPolicy(allow_hosts=frozenset({"images.test"}), timeout=5, verify=trust)
    server_names.clear()
    uri = fetch_image(f"https://images.test:{port}/img.png", policy, resolve=_to_loopback)
    assert uri.startswith("data:image/png;base64,") and server_names == ["images.test"]


def test_https_certificate_for_another_name_is_refused(tls_host):
    port, trust, _ = tls_host
    policy = FetchPolicy(allow_hosts=frozenset({"other.test"}), timeout=5, verify=trust)
    error = refused(f"https://other.test:{port}/img.png", policy, resolve=_to_loopback)
    assert "certificate of other.test could not be verified" in error.message


def test_openai_input_reference_by_url_is_fetched_at_submit_like_the_job_apis(fetch_server, host):
    import openai

    key = fetch_server.new_key(credits=100)
    client = openai.OpenAI(api_key=key, base_url=fetch_server.url + "/v1", max_retries=0)
    video = client.videos.create(prompt="a card", seconds="1", size="640x360",
                                 extra_body={"input_reference": {"image_url": host + "/img.png"}})
    assert _stored_request(fetch_server, video.id)["image_input"] == \
        f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    with pytest.raises(openai.BadRequestError) as err:
        client.videos.create(prompt="a card", extra_body={"input_reference": {"image_url": host + "/text"}})
    assert err.value.body["param"] == "input_reference"
