"""Shared fixtures for the service: databases (SQLite and a fresh PostgreSQL database per run) and real servers.

- ``pg_url``: a fresh PostgreSQL database ``pixgen_test_<random>`` on 127.0.0.1:5432, dropped at the end.
  Missing server: skip, or fail when ``CI=true``.
- ``db_url``: parametrized over ``sqlite`` and ``postgres``; an empty, migrated database per test.
- ``api_server``: ``pixgen serve --workers 0`` on loopback (no model; jobs stay queued) — fast error/limit tests.
- ``server``: ``pixgen serve --workers 1`` with the toy model — the real end-to-end path.
Each server fixture gives a ``pixgen.testing.LocalServer`` (``url``, ``data_dir``, ``database_url``, ``new_key``).
"""

from __future__ import annotations

import os
import sys

import pytest

from pixgen.host_memory import reuse_freed_memory
from pixgen.testing import PG_HOST, PG_PORT, fresh_postgres_database, postgres_admin, start_server

LEASE_ENV = {"PIXGEN_LEASE_SECONDS": "10"}  # a killed test worker's job comes back within seconds, not a minute


# -- running in parallel (pytest-xdist: ``make test`` runs ``-n auto``; addopts ``--dist loadfile``) ----------------
# A module's tests share its module-scoped fixtures (a loaded engine, a server, a browser), so a module runs on one
# worker (loadfile; xdist's loadgroup would allow finer groups, but its group marks do not reach the node ids under
# pytest 9.2). HEAVY_FIRST (measured with --durations) starts the longest modules first, and xdist keeps that order
# (--no-loadscope-reorder): a long module picked up last would be the whole run's tail. The two bench plans (the
# longest tests) are modules of their own, so they run side by side. Order only: a module missing here costs time,
# never a result.
HEAVY_FIRST = (
    "test_bench_scripts.py", "test_bench_gpu_full_plan.py", "test_gpu_readiness.py", "test_engine.py",
    "test_memory_and_speed.py", "test_fp8.py", "test_compile.py", "test_retake.py", "test_control_video.py",
    "test_auto_duration.py", "test_sound.py", "test_audio_to_video_api.py", "test_audio_to_video.py",
    "test_engine_stages.py", "test_preview.py", "test_webhooks.py", "test_multiclip.py", "test_extend_remix_api.py",
    "test_parallel_engine.py", "test_parallel_group.py", "test_parallel_transformer.py", "test_prompting.py",
    "test_keyframes.py", "test_warmup.py", "test_extend.py", "test_web_page.py", "test_web_keyframes_retake.py",
    "test_fleet_nodes.py", "test_fleet.py", "test_decode_and_mp4.py", "test_overlap_jobs.py", "test_drain.py",
    "test_hostile_input.py",
)


def pytest_configure(config):
    """In an xdist worker: the cores shared out, so that two workers' torch (and the servers and commands they
    start, which inherit the environment) do not run two threads each on one core: oversubscribed, torch's
    OpenMP threads spin-wait on each other and every model test runs slower."""
    reuse_freed_memory()  # this process runs toy models in-process too, some of them without load_engine
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:  # read at torch's import; set it here too if something imported it already
            sys.modules["torch"].set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a module's own order is kept


# -- PostgreSQL ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_url():
    try:
        admin, _ = postgres_admin()
        admin.close()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is required when CI=true: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}: {exc}")
    with fresh_postgres_database("pixgen_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty, migrated database on each backend."""
    from pixgen.jobs.db import connect, migrate

    url = f"sqlite:///{tmp_path / 'pixgen.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    db = connect(url, pool_size=1)
    migrate(db)
    if request.param == "postgres":
        from sqlalchemy import text

        with db.write() as conn:
            conn.execute(text("TRUNCATE jobs, api_keys, workers, job_events, webhook_deliveries, submit_attempts, "
                              "pruned_totals "
                              "RESTART IDENTITY CASCADE"))
    db.dispose()
    return url


@pytest.fixture
def db(db_url):
    """A connection pool on ``db_url`` (each backend), disposed after the test."""
    from pixgen.jobs.db import connect

    database = connect(db_url, pool_size=4)
    yield database
    database.dispose()


class ManualClock:
    """A clock for ``JobStore(clock=...)`` that moves only when a test sets ``now``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# -- real servers (pixgen.testing) ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def api_server(tmp_path_factory):
    """API only (``--workers 0``): submitted jobs stay pending; small caps so limits are reachable."""
    server = start_server(tmp_path_factory.mktemp("api-server"), workers=0, env={
        **LEASE_ENV, "PIXGEN_MAX_BODY_BYTES": str(64 * 1024), "PIXGEN_RATE_LIMIT_PER_MINUTE": "5",
        "PIXGEN_MAX_CONCURRENT_JOBS": "3"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The whole service with one toy-model worker, ready when the worker has loaded the model."""
    server = start_server(tmp_path_factory.mktemp("server"), workers=1, env=LEASE_ENV, ready=True,
                          timeout=240)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fetch_server(tmp_path_factory):
    """API only, with 127.0.0.1 allow-listed for URLs fetched at submit (image_url, keyframes, control_video)."""
    server = start_server(tmp_path_factory.mktemp("fetch-server"), workers=0,
                          env={"PIXGEN_FETCH_ALLOW_HOSTS": "127.0.0.1", "PIXGEN_FETCH_TIMEOUT": "3"})
    yield server
    server.stop()


# -- the toy LTX-2 under another recipe ------------------------------------------------------------------------
def toy_variants(root):
    """``make(recipe, sampling, files)``: a folder under ``root`` with the toy's weights (linked, not copied), its own
    ``pixgen.json`` naming ``recipe`` with ``sampling`` overrides, and extra ``files`` ({name: bytes}) at its root."""
    import json

    from pixgen.engine import resolve_model_dir

    toy = resolve_model_dir("tiny")
    made = 0

    def make(recipe: str, sampling: dict | None = None, files: dict | None = None):
        nonlocal made
        made += 1
        folder = root / f"toy-variant-{made}"
        folder.mkdir()
        for item in toy.iterdir():
            if item.name == "loras":  # a folder of its own (tests add LoRAs), its files linked
                (folder / "loras").mkdir()
                for lora in item.iterdir():
                    (folder / "loras" / lora.name).symlink_to(lora)
            elif item.name != "pixgen.json":
                (folder / item.name).symlink_to(item)
        (folder / "pixgen.json").write_text(json.dumps({"recipe": recipe, "sampling": {
            "max_sequence_length": 64, **(sampling or {})}}))
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data)
        return folder

    return make


@pytest.fixture
def toy_variant(tmp_path):
    """``toy_variants`` in the test's own folder."""
    return toy_variants(tmp_path)


@pytest.fixture(scope="module")
def module_toy_variant(tmp_path_factory):
    """``toy_variants`` in a folder of the module's: for a model a module-scoped server or group shares."""
    return toy_variants(tmp_path_factory.mktemp("toy-variants"))


# -- a real browser (tests/web_browser.py) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through Playwright (skipped where missing, failed where CI=true)."""
    from web_browser import CHROMIUM, CHROMIUM_ARGS, require_browser

    with require_browser()() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def web_key(server) -> str:
    """A key with credits to spare for the page tests, on the shared toy-model ``server``."""
    return server.new_key(credits=100_000, name="web page test")


@pytest.fixture
def page(browser, server):
    """A fresh browser context on the ``server``'s page; the test fails on any JavaScript error."""
    from web_browser import page_on

    with page_on(browser, server) as opened:
        yield opened
