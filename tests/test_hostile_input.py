"""Hostile input at the edges, against a real ``pixgen serve`` (the fake engine: jobs complete in a blink) on SQLite
and on PostgreSQL: every answer is a 4xx naming what was wrong — never a 5xx, never a dropped keep-alive — and nothing
is charged or queued for it.

- bodies generated from ``VideoRequest``'s JSON schema (hypothesis), one value made hostile (NUL, other control
  characters, lone surrogates, text where a number goes), sent through every surface: the job API, Workers AI (both
  forms), OpenAI JSON and multipart: a 400 naming the field as that surface names it;
- signed media links with an ``exp`` no number reader should take, ``Range`` numbers of 5,000 digits;
- JSON nested 1,000+ levels on every JSON route; job ids with ``%00``; an ``Idempotency-Key`` with a control
  character;
- 401s carry ``WWW-Authenticate`` on every surface; 20 slow-loris connections are closed within the header timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from hostile_tools import DATABASES, http_get, key_state, new_key, png_uri, raw_exchange, served, status_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pixgen.cli.header_timeout import with_header_timeout
from pixgen.core.spec import VideoRequest
from pixgen.testing import FAKE_ENGINE, free_port, wait_for

RUN = "/api/v1/models/pixverse-v6/run"
HEADER_TIMEOUT = 2.0
METRICS_TOKEN = "hostile-metrics-token"
HOSTILE_CHARS = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udfff"]


@pytest.fixture(scope="module", params=DATABASES)
def hostile(request, tmp_path_factory):
    """A server with one fake-engine worker, no rate limit or cap (the suite sends hundreds of bad bodies), a
    short header timeout and a metrics token; with one completed job to serve media from."""
    env = {"PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_MODEL": "steps=1,scale=0.1", "PIXGEN_RATE_LIMIT_PER_MINUTE": "0",
           "PIXGEN_MAX_CONCURRENT_JOBS": "0", "PIXGEN_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
           "PIXGEN_METRICS_TOKEN": METRICS_TOKEN, "PIXGEN_LEASE_SECONDS": "10"}
    with served(request.param, tmp_path_factory.mktemp(f"hostile-{request.param}"), workers=1, env=env) as server:
        key_id, secret = new_key(server, credits=1000)
        headers = {"Authorization": f"Bearer {secret}"}
        job = httpx.post(server.url + RUN, json={"prompt": "a lighthouse", "duration": 1, "quality": "360p"},
                         headers=headers).json()
        done = wait_for(lambda: (j := httpx.get(job["statusUrl"], headers=headers).json())["status"] == "completed"
                        and j, timeout=60)
        server.key_id, server.headers, server.job = key_id, headers, done  # type: ignore[attr-defined]
        yield server


def fresh_client(server, credits: int = 100) -> tuple[str, httpx.Client]:
    key_id, secret = new_key(server, credits)
    return key_id, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def no_traceback(server) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


# -- bodies from the request's JSON schema ------------------------------------------------------------------------
SCHEMA = VideoRequest.model_json_schema()
MEDIA = {"image": png_uri(8, 8), "video": "data:video/mp4;base64,AAAAIGZ0eXBpc29t",
         "audio": "data:audio/wav;base64,UklGRiQAAABXQVZF"}
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=12)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that ``schema`` (a part of ``VideoRequest``'s JSON schema) takes; media patterns get a tiny real URI."""
    if "$ref" in schema:
        return from_schema(SCHEMA["$defs"][schema["$ref"].split("/")[-1]])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"] if s.get("type") != "null"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:  # one word a number also takes (duration "auto")
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern", "")
        if pattern.startswith("^data:image"):
            return st.just(MEDIA["image"])
        if pattern.startswith("^data:video"):
            return st.just(MEDIA["video"])
        if pattern.startswith("^data:audio"):
            return st.just(MEDIA["audio"])
        if pattern:
            return st.from_regex(pattern, fullmatch=True)
        return TEXT
    if kind == "integer":
        return st.integers(schema.get("minimum", 0), schema.get("maximum", 100))
    if kind == "number":
        return st.floats(0.01, schema.get("maximum", 10.0))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries({k: from_schema(v) for k, v in schema["properties"].items() if k in required},
                                     optional={k: from_schema(v) for k, v in schema["properties"].items()
                                               if k not in required})
    raise AssertionError(f"no strategy for {schema}")


def paths(value: Any, prefix: str = "") -> list[str]:
    """Every field path of a body, nested ones as the surfaces name them (``keyframes[0].image``)."""
    found = []
    for name, item in value.items():
        path = f"{prefix}{name}"
        found.append(path)
        if isinstance(item, list):
            for i, entry in enumerate(item):
                if isinstance(entry, dict):
                    found += paths(entry, f"{path}[{i}].")
    return found


def with_value(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    target, *rest = re.findall(r"\w+|\[\d+\]", path)
    node = out
    for step in rest:
        node = node[target] if not target.startswith("[") else node[int(target[1:-1])]
        target = step
    node[target if not target.startswith("[") else int(target[1:-1])] = value
    return out


@st.composite
def hostile_cases(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """``(surface, body, field path)``: a body from the schema, a prompt always (every surface but the job API needs
    one), and one value made hostile: text with a bad character put in a string, or in place of any value."""
    body = draw(from_schema(SCHEMA))
    body["prompt"] = "a " + draw(TEXT)
    surface = draw(st.sampled_from(["jobs", "estimate", "workers_ai", "workers_ai_wrapped", "openai",
                                    "openai_form"]))
    if surface == "openai_form":  # a form holds no nested items, and its UTF-8 has no surrogates
        body = {k: v for k, v in body.items() if not isinstance(v, list)}
    # Half the other cases put the hostile value inside a list's item (keyframes[i].…), so the nested fields are
    # reached whatever the schema's other fields make of the draws (a new top-level field once crowded them out).
    nested = surface != "openai_form" and draw(st.booleans())
    if nested and not any("[" in path for path in paths(body)):
        body["keyframes"] = draw(from_schema(SCHEMA["properties"]["keyframes"]["anyOf"][0]))
    path = draw(st.sampled_from([path for path in paths(body) if "[" in path or not nested]))
    chars = HOSTILE_CHARS[:-2] if surface == "openai_form" else HOSTILE_CHARS
    bad = draw(st.sampled_from(chars))
    old = eval_path(body, path)
    text = old if isinstance(old, str) and not old.startswith("data:") else draw(TEXT)
    at = draw(st.integers(0, len(text)))
    return surface, with_value(body, path, text[:at] + bad + text[at:]), path


def eval_path(body: dict[str, Any], path: str) -> Any:
    node: Any = body
    for step in re.findall(r"\w+|\[\d+\]", path):
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    return node


def post_json(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    """JSON as Python writes it: a lone surrogate as its ``\\ud800`` escape (httpx would refuse to encode it)."""
    return client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def send(client: httpx.Client, surface: str, body: dict[str, Any]) -> tuple[int, str | None]:
    """POST ``body`` the way ``surface`` takes it; ``(status, the field its error names)``."""
    if surface in ("jobs", "estimate"):
        answer = post_json(client, RUN if surface == "jobs" else RUN.replace("/run", "/estimate"), body)
        return answer.status_code, answer.json().get("field")
    if surface.startswith("workers_ai"):
        wrapped = surface == "workers_ai_wrapped"
        answer = post_json(client, "/client/v4/accounts/acc/ai/run" + ("" if wrapped else "/pixverse/v6"),
                           {"model": "pixverse/v6", "input": body} if wrapped else body)
        error = answer.json()["errors"][0]
        pointer = error.get("source", {}).get("pointer", "")
        return answer.status_code, pointer.removeprefix("/input" if wrapped else "").lstrip("/").replace("/", ".")
    if surface == "openai":
        answer = post_json(client, "/v1/videos", body)
    else:
        form = {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in body.items()}
        answer = client.post("/v1/videos", files={k: (None, v.encode("utf-8")) for k, v in form.items()})
    return answer.status_code, answer.json()["error"]["param"]


def test_generated_bodies_with_hostile_text_are_400s_naming_the_field_on_every_surface(hostile):
    key_id, client = fresh_client(hostile, credits=100)
    seen: list[tuple[str, str]] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile_cases())
    def refused(case: tuple[str, dict[str, Any], str]) -> None:
        surface, body, path = case
        status, field = send(client, surface, body)
        assert (status, field) == (400, path), (surface, body)
        seen.append((surface, path))

    with client:
        refused()
    assert key_state(hostile, key_id) == (100, 0)  # nothing charged, no job row
    assert {surface for surface, _ in seen} >= {"jobs", "estimate", "workers_ai", "workers_ai_wrapped", "openai",
                                                "openai_form"}
    assert any("keyframes[" in path for _, path in seen)  # nested fields were reached
    no_traceback(hostile)


def test_field_names_and_values_with_nul_are_refused_naming_them(hostile):
    key_id, client = fresh_client(hostile)
    with client:
        unknown = client.post(RUN, content=b'{"prompt": "a", "pro\\u0000mpt": 1}',
                              headers={"Content-Type": "application/json"})
        assert unknown.status_code == 400 and unknown.json()["field"] == "pro\x00mpt"
        form = client.post("/v1/videos", content=b"prompt=a%00b", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 400 and form.json()["error"]["param"] == "prompt"
        webhook = client.post(RUN, json={"prompt": "a", "webhook_url": "http://example.com/\x00"})
        assert webhook.status_code == 400 and webhook.json()["field"] == "webhook_url"
        null_model = client.post("/v1/videos", json={"prompt": "a", "model": None})  # the document says a string
        assert null_model.status_code == 400 and null_model.json()["error"]["param"] == "model"
        wrapped = client.post("/client/v4/accounts/acc/ai/run", json={"model": "pixverse/v6\x00", "input": {}})
        assert wrapped.status_code == 400 and wrapped.json()["errors"][0]["source"] == {"pointer": "/model"}
        for bad in (b'{"prompt": NaN}', b'{"prompt": "a", "seed": ' + b"9" * 5000 + b"}", b'{"prompt": "a\xff"}'):
            answer = client.post(RUN, content=bad, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400 and answer.json()["field"] == "body", answer.text
        for seconds in ("9" * 5000, "²", "٣"):  # a form's number is ASCII digits, bounded
            answer = client.post("/v1/videos", data={"prompt": "a", "seconds": seconds})
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "seconds", answer.text
            answer = client.post("/v1/videos", data={"prompt": "a", "seed": seconds})
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "seed", answer.text
    assert key_state(hostile, key_id) == (100, 0)
    no_traceback(hostile)


def test_idempotency_key_and_job_ids_never_reach_sql_unchecked(hostile):
    key_id, client = fresh_client(hostile)
    with client:
        for value in ("a\x85b", "x" * 256):  # a C1 control character (bytes 0x85 as latin-1), over 255 characters
            answer = client.post(RUN, json={"prompt": "a", "duration": 1},
                                 headers={"Idempotency-Key": value.encode("latin-1")})
            assert answer.status_code == 400 and answer.json()["field"] == "Idempotency-Key", answer.text
        assert client.get("/api/v1/jobs/job_0123456789abcdef0123456%00").status_code == 404
        for path, field in (("/api/v1/jobs?after=job_%00", "after"), ("/v1/videos?after=job_%00", "after"),
                            ("/api/v1/jobs?limit=" + "9" * 5000, "limit"), ("/v1/videos?limit=%C2%B2", "limit")):
            answer = client.get(path)
            named = answer.json().get("field") or answer.json().get("error", {}).get("param")
            assert (answer.status_code, named) == (400, field), answer.text
        for path in ("/v1/videos/job_%00", "/api/v1/jobs/%00/cancel", "/v1/videos/job_%00/content"):
            answer = client.request("POST" if path.endswith("cancel") else "GET", path)
            assert answer.status_code == 404, answer.text
    assert key_state(hostile, key_id) == (100, 0)
    no_traceback(hostile)


def test_nested_json_is_400_naming_the_body_on_every_json_route(hostile):
    key_id, client = fresh_client(hostile)
    job_id = hostile.job["jobId"]
    routes = [RUN, RUN.replace("/run", "/estimate"), f"/api/v1/jobs/{job_id}/extend", f"/api/v1/jobs/{job_id}/remix",
              f"/api/v1/jobs/{job_id}/retake", f"/api/v1/jobs/{job_id}/replay", "/client/v4/accounts/a/ai/run",
              "/client/v4/accounts/a/ai/run/pixverse/v6", "/v1/videos", "/v1/videos/extensions",
              f"/v1/videos/{job_id}/remix"]
    deep = [b'{"prompt": ' + b"[" * 1200 + b"]" * 1200 + b"}",  # 2 KB, past the depth bound
            b'{"prompt": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",  # past Python's own recursion limit
            b'{"prompt": [' + b"0," * 20_000 + b"0]}"]  # past the number of values
    with client:
        for route in routes:
            for body in deep:
                answer = client.post(route, content=body, headers={"Content-Type": "application/json"})
                assert answer.status_code == 400, (route, answer.text)
                error = answer.json()
                named = error.get("field") or (error.get("error") or {}).get("param") or \
                    error.get("errors", [{}])[0].get("source", {}).get("pointer", "").lstrip("/")
                assert named == "body", (route, answer.text)
    assert key_state(hostile, key_id) == (100, 0)
    no_traceback(hostile)


# -- media links and ranges ---------------------------------------------------------------------------------------
def test_media_link_exp_that_is_no_number_is_403_naming_exp_and_keeps_the_connection(hostile):
    link = hostile.job["output"]["video"]
    path = link.removeprefix(hostile.url)
    bare = path.split("?")[0]
    bad = ["%C2%B2", "9" * 4400, "-1", "%201", "1_0", "%D9%A3", "0x10", ""]
    requests = [http_get(f"{bare}?exp={exp}&sig=x") for exp in bad] + [http_get(path)]
    answers = raw_exchange(hostile.url, *requests)  # one connection: each refusal leaves it open for the next request
    for exp, answer in zip(bad, answers, strict=False):
        assert status_of(answer) == 403, (exp, answer[:300])
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["field"] == "exp"
        assert b"connection: close" not in answer.lower()
    assert status_of(answers[-1]) == 200  # the real link, on the same connection
    no_traceback(hostile)


def test_range_numbers_of_thousands_of_digits_are_416_or_the_file_never_500(hostile):
    link = hostile.job["output"]["video"]
    size = len(httpx.get(link).content)
    huge = "9" * 5000
    content = f"/v1/videos/{hostile.job['jobId']}/content"
    with httpx.Client(base_url=hostile.url, headers=hostile.headers) as client:
        for url in (link, content):
            past = client.get(url, headers={"Range": f"bytes={huge}-"})
            assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}", past.text
            error = past.json()
            assert (error.get("field") or error.get("error", {}).get("param")) == "Range"
            to_the_end = client.get(url, headers={"Range": f"bytes=0-{huge}"})
            assert to_the_end.status_code == 206 and len(to_the_end.content) == size
            last = client.get(url, headers={"Range": f"bytes=-{huge}"})
            assert last.status_code == 206 and len(last.content) == size
            other_digits = client.get(url, headers={"Range": "bytes=\u0663-".encode()})  # ٣: not a range: the file
            assert other_digits.status_code == 200 and len(other_digits.content) == size
    no_traceback(hostile)


# -- 401s and slow clients ----------------------------------------------------------------------------------------
def test_every_401_names_the_bearer_scheme_and_realm(hostile):
    job_id = hostile.job["jobId"]
    attempts = [("POST", RUN), ("GET", f"/api/v1/jobs/{job_id}"), ("POST", "/client/v4/accounts/a/ai/run/pixverse/v6"),
                ("POST", "/v1/videos"), ("GET", "/v1/videos"), ("GET", "/metrics")]
    for method, path in attempts:
        for headers in ({}, {"Authorization": "Bearer pxg_not-a-key"}):
            answer = httpx.request(method, hostile.url + path, headers=headers, json={"prompt": "a"})
            assert answer.status_code == 401, (path, answer.text)
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="pixgen"', path
    assert httpx.get(hostile.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200


def test_slow_loris_connections_are_closed_within_the_header_timeout(hostile):
    host, port = hostile.url.removeprefix("http://").split(":")
    started = time.monotonic()
    sockets = []
    for _ in range(20):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # headers begun, never ended
        sock.setblocking(False)
        sockets.append(sock)
    closed: dict[int, float] = {}
    while len(closed) < len(sockets) and time.monotonic() - started < HEADER_TIMEOUT + 5:
        for i, sock in enumerate(sockets):
            if i in closed:
                continue
            try:
                sock.send(b"X")  # a byte now and then: uvicorn's keep-alive timer alone would never fire
                if sock.recv(1024) == b"":
                    closed[i] = time.monotonic() - started
            except BlockingIOError:
                pass
            except OSError:  # reset by the server
                closed[i] = time.monotonic() - started
        assert httpx.get(hostile.url + "/health").status_code == 200  # the server answers others meanwhile
        time.sleep(0.2)
    for sock in sockets:
        sock.close()
    assert len(closed) == 20 and max(closed.values()) < HEADER_TIMEOUT + 1.5, closed


def test_a_request_whose_headers_came_in_time_is_not_cut_while_its_body_trickles(hostile):
    host, port = hostile.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "a slow upload", "duration": 1, "quality": "360p"}).encode()
    head = (f"POST {RUN.replace('/run', '/estimate')} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: {hostile.headers['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        started = time.monotonic()
        for i in range(0, len(body), 8):  # the body over more than the header timeout
            sock.sendall(body[i:i + 8])
            time.sleep(1.3 * HEADER_TIMEOUT / (len(body) / 8))
        assert time.monotonic() - started > HEADER_TIMEOUT
        answer = sock.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 200"), answer


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_the_header_timeout_holds_with_either_http_parser(parser):
    """``cli/header_timeout.py`` on uvicorn's two HTTP/1.1 implementations (``pixgen serve`` takes httptools when
    it is installed, h11 otherwise), around a bare ASGI app: a trickled header is cut, a keep-alive connection
    serves a second request, a slow answer is not cut."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(1.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    base = HttpToolsProtocol if parser == "httptools" else H11Protocol
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           http=with_header_timeout(base, 1.0), timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10, every=0.05)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            started = time.monotonic()
            while True:  # a header byte every 0.2 s: closed after about a second all the same
                try:
                    sock.sendall(b"X-A: b\r\n")
                except OSError:
                    break
                sock.settimeout(0.2)
                try:
                    if sock.recv(1024) == b"":
                        break
                except TimeoutError:
                    pass
                assert time.monotonic() - started < 4, "the trickled headers were never cut"
        served = raw_exchange(f"http://127.0.0.1:{port}", http_get("/slow"), http_get("/"), timeout=5)
        assert [status_of(a) for a in served] == [200, 200]  # a 1.5 s answer, then the same connection again
    finally:
        server.should_exit = True
        thread.join(timeout=10)

