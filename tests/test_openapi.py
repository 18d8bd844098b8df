"""The OpenAPI document tells the truth: schemathesis drives every operation from ``/openapi.json`` and checks each
answer: a documented status, a body that matches its documented schema, no 5xx. Twice: in-process (the app on
ASGI, a fake-engine worker on a thread; data that fits the document and data that does not), and the schemathesis
command against ``pixgen serve`` on loopback with all its phases, links followed. Plus the parts of the document
clients rely on, checked directly."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from pixgen.api import create_app
from pixgen.core.spec import MAX_PROMPT
from pixgen.jobs.keys import create_key
from pixgen.jobs.worker import Worker
from pixgen.settings import load_settings
from pixgen.testing import FAKE_ENGINE, FakeEngine, start_server

# No 5xx, no status the document does not list, bodies and headers as documented, 405 with Allow.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, unsupported_method]
EXAMPLES = 12  # per operation and phase: the whole run stays well under a minute on two cores


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The app on a fresh data folder, a key with credits to spare, and a fake-engine worker on a thread (the
    Workers AI routes wait for the video)."""
    data = tmp_path_factory.mktemp("openapi")
    config = load_settings({"data_dir": data, "engine": FAKE_ENGINE, "rate_limit_per_minute": 0,
                            "max_concurrent_jobs": 0, "poll_interval": 0.05}, environ={})
    app = create_app(config)
    key = create_key(app.state.ctx.db, credits=10**9, name="schemathesis")[1]
    worker = Worker(config, engine_factory=lambda: FakeEngine(steps=1, scale=0.05))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield app, key
    worker.stop.set()
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_schema(service):
    app, _ = service
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_documented_and_matches_its_schema(api_schema, service, mode):
    """Data that fits the document (positive) and data that does not (negative), for every operation."""
    _, key = service
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # noqa: BLE001 - every operation is run; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_schemathesis_on_pixgen_serve_finds_nothing_in_any_phase(tmp_path):
    """The schemathesis command against a real ``pixgen serve`` on loopback (fake-engine worker), every phase:
    coverage (boundaries, undeclared methods: 405 with a true Allow), fuzzing, and stateful runs that follow the
    links from created jobs and videos (answers about completed, failed, cancelled and deleted jobs; what was
    created can be fetched, what was deleted is gone; a request without the key is refused). Excluded: the checks
    that schema-valid data is always accepted and invalid data always refused, which no document can promise
    here (an image must decode, a URL must answer, a cursor must name a job; unknown query parameters are
    ignored)."""
    server = start_server(tmp_path / "data", workers=1, ready=True, env={
        "PIXGEN_ENGINE": FAKE_ENGINE, "PIXGEN_MODEL": "steps=1,scale=0.05", "PIXGEN_RATE_LIMIT_PER_MINUTE": "0",
        "PIXGEN_MAX_CONCURRENT_JOBS": "0"})
    try:
        key = server.new_key(credits=10**9)
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{server.url}/openapi.json",
             "-H", f"Authorization: Bearer {key}", "--phases", "examples,coverage,fuzzing,stateful",
             "--exclude-checks", "positive_data_acceptance,negative_data_rejection", "-n", "8",
             "--request-timeout", "30", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    assert "24 selected / 24 total" in run.stdout and "Stateful" in run.stdout  # every operation


# -- the document itself ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def document(service):
    app, _ = service
    return app.openapi()


def operations(document):
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_no_route_documents_fastapi_422(document):
    assert all("422" not in op["responses"] for _, op in operations(document))
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_route_that_reads_a_body_documents_it(document):
    posts = {name: op for name, op in operations(document)
             if name.startswith("POST ") and not name.endswith("/cancel")}  # a cancel takes no body
    assert len(posts) == 12 and all("requestBody" in op for op in posts.values())
    replay = posts["POST /api/v1/jobs/{job_id}/replay"]["requestBody"]
    assert replay["required"] is False  # a replay's body is optional: webhook_url / webhook_events only
    run = document["components"]["schemas"]["JobRunRequest"]
    assert run["additionalProperties"] is False
    # seconds 1..15, or none (a soundtrack's length); the toy 2.0 model has no duration head, so no "auto"
    duration = {o.get("type"): o for o in run["properties"]["duration"]["anyOf"]}
    assert set(duration) == {"integer", "null"}
    assert duration["integer"]["minimum"] == 1 and duration["integer"]["maximum"] == 15
    assert run["properties"]["prompt"]["maxLength"] == MAX_PROMPT
    assert "21:9" in run["properties"]["aspect_ratio"]["anyOf"][0]["enum"]
    create = posts["POST /v1/videos"]["requestBody"]["content"]
    assert set(create) == {"application/json", "multipart/form-data"}
    sizes = document["components"]["schemas"]["VideoCreateRequest"]["properties"]["size"]["enum"]
    assert "1280x720" in sizes and "1920x1080" in sizes


def test_each_surface_documents_its_own_error_body(document):
    errors = {name: op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
              for name, op in operations(document) if "401" in op["responses"]}
    assert errors["GET /api/v1/jobs/{job_id}"] == "JobApiError"
    assert errors["GET /v1/videos/{video_id}"] == "ErrorResponse"
    assert errors["POST /client/v4/accounts/{account_id}/ai/run"] == "WorkersAIErrorResponse"
    ready = dict(operations(document))["GET /health/ready"]["responses"]
    assert set(ready) == {"200", "400", "503"}


def test_a_created_job_links_to_the_routes_that_take_its_id(document):
    ops = dict(operations(document))
    links = ops["POST /api/v1/models/{model_id}/run"]["responses"]["200"]["links"]
    by_id = {op["operationId"]: name for name, op in ops.items()}
    assert by_id[links["GetJob"]["operationId"]] == "GET /api/v1/jobs/{job_id}"
    assert links["GetJob"]["parameters"] == {"job_id": "$response.body#/jobId"}
    video_links = ops["POST /v1/videos"]["responses"]["200"]["links"]
    assert by_id[video_links["DownloadContent"]["operationId"]] == "GET /v1/videos/{video_id}/content"
