"""A job id is one checked type (``pixgen.jobs.ids.JobId``: ``job_`` + 24 hex): every route's path and query parameter
takes it, and the store checks it before any SQL. Garbage, NUL bytes or 4 KB of text in an id are a 404 (a path:
no job has that name) or a 400 (a query), naming the parameter, on SQLite and PostgreSQL — never a 500."""

from __future__ import annotations

import httpx
import pytest

from pixgen.jobs.ids import JobId
from pixgen.testing import fresh_postgres_database, start_server

BAD_IDS = ["job_%00" + "a" * 23, "%00", "x" * 4000, "job_" + "A" * 24, "job_" + "a" * 25, "job_nope", "a%20b",
           "job_%C2%B2" + "a" * 23]
JOB = "job_" + "0" * 24  # well formed, and no job
# (method, path with {id}, the error body's field) for every route that names a job in its path.
PATHS = [
    ("GET", "/api/v1/jobs/{id}", "jobId"), ("POST", "/api/v1/jobs/{id}/cancel", "jobId"),
    ("GET", "/api/v1/jobs/{id}/events", "jobId"), ("POST", "/api/v1/jobs/{id}/extend", "jobId"),
    ("POST", "/api/v1/jobs/{id}/remix", "jobId"), ("POST", "/api/v1/jobs/{id}/retake", "jobId"),
    ("GET", "/api/v1/jobs/{id}/manifest", "jobId"), ("POST", "/api/v1/jobs/{id}/replay", "jobId"),
    ("GET", "/v1/videos/{id}", "video_id"), ("DELETE", "/v1/videos/{id}", "video_id"),
    ("GET", "/v1/videos/{id}/content", "video_id"), ("POST", "/v1/videos/{id}/remix", "video_id"),
]
BODIES = {"/extend": {}, "/remix": {"prompt": "a fox"}, "/retake": {"start": 0, "end": 1}}


def test_the_type_takes_ids_as_they_are_made_and_nothing_else():
    made = JobId.new()
    assert JobId.is_valid(made) and len(made) == 28 and made.startswith("job_")
    assert not any(JobId.is_valid(v) for v in ("job_" + "a" * 23 + "\x00", "job_" + "a" * 23 + "\n", None, 5))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def id_server(request, tmp_path_factory):
    """An API-only server on each database."""
    folder = tmp_path_factory.mktemp(f"ids-{request.param}")
    if request.param == "sqlite":
        server = start_server(folder, workers=0)
        yield server
        server.stop()
        return
    request.getfixturevalue("pg_url")  # skips or fails (CI=true) without the server
    with fresh_postgres_database("pixgen_ids") as url:
        server = start_server(folder, workers=0, database_url=url)
        yield server
        server.stop()


def _body(path: str, field: str, response: httpx.Response) -> dict:
    body = response.json()
    return body if field == "jobId" else {"field": body["error"]["param"], "code": body["error"]["code"]}


@pytest.mark.parametrize(("method", "path", "field"), PATHS, ids=[f"{m} {p}" for m, p, _ in PATHS])
def test_a_path_that_names_no_job_is_404_naming_the_parameter(id_server, method, path, field):
    key = id_server.new_key(credits=10)
    with httpx.Client(base_url=id_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        body = next((b for suffix, b in BODIES.items() if path.endswith(suffix)), None)
        for bad in [*BAD_IDS, JOB]:
            r = c.request(method, path.format(id=bad), json=body)
            assert r.status_code == 404, (bad, r.text)
            shown = _body(path, field, r)
            assert shown["code"] == "not_found", (bad, r.text)
            if bad != JOB:  # the form is wrong: the parameter is named
                assert shown["field"] == field, (bad, r.text)
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 10  # nothing charged


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/v1/videos"])
def test_a_cursor_that_is_no_job_id_is_400_naming_after(id_server, path):
    key = id_server.new_key(credits=10)
    with httpx.Client(base_url=id_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        for bad in ["job_\x00" + "a" * 23, "x" * 4000, "job_nope", JOB]:
            r = c.get(path, params={"after": bad})
            assert r.status_code == 400, (bad, r.text)
            body = r.json()
            param = body["field"] if path.startswith("/api") else body["error"]["param"]
            assert param == "after", r.text


def test_an_openai_video_refuses_a_null_model_as_the_document_says_string(id_server):
    key = id_server.new_key(credits=10)
    with httpx.Client(base_url=id_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        for path, body in (("/v1/videos", {"model": None, "prompt": "a fox"}),
                           ("/v1/videos/extensions", {"model": None, "prompt": "a fox", "video": JOB})):
            r = c.post(path, json=body)
            assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text
        assert c.get("/api/v1/jobs").json()["creditsRemaining"] == 10
