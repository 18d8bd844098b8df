"""Shared fixtures for the service: databases (SQLite and a fresh PostgreSQL database per run) and real servers.

- ``pg_url``: a fresh PostgreSQL database ``pixgen_test_<random>`` on 127.0.0.1:5432, dropped at the end.
  Missing server: skip, or fail when ``CI=true``.
- ``db_url``: parametrized over ``sqlite`` and ``postgres``; an empty, migrated database per test.
- ``api_server``: ``pixgen serve --workers 0`` on loopback (no model; jobs stay queued) — fast error/limit tests.
- ``server``: ``pixgen serve --workers 1`` with the toy model — the real end-to-end path.
Each server fixture gives a ``Server`` with ``url``, ``data_dir``, ``database_url`` and ``new_key(credits)``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432


# -- PostgreSQL ------------------------------------------------------------------------------------------------
def _pg_admin_connect():  # noqa: ANN202
    import psycopg

    last = None
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="test", autocommit=True,
                                   connect_timeout=3), user
        except psycopg.OperationalError as exc:
            last = exc
    raise last  # type: ignore[misc]


@pytest.fixture(scope="session")
def pg_url():
    try:
        admin, user = _pg_admin_connect()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is required when CI=true: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}: {exc}")
    name = f"pixgen_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """An empty, migrated database on each backend."""
    from pixgen.jobs.db import connect, migrate

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pixgen.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    db = connect(url, pool_size=1)
    migrate(db)
    if request.param == "postgres":
        from sqlalchemy import text

        with db.write() as conn:
            conn.execute(text("TRUNCATE jobs, api_keys, workers RESTART IDENTITY CASCADE"))
    db.dispose()
    return url


# -- real servers ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    data_dir: Path
    database_url: str
    proc: subprocess.Popen
    log_path: Path

    def new_key(self, credits: int = 100, name: str = "test") -> str:
        from pixgen.jobs.db import connect
        from pixgen.jobs.keys import create_key

        db = connect(self.database_url, pool_size=1)
        try:
            return create_key(db, credits=credits, name=name)[1]
        finally:
            db.dispose()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def start_server(data_dir: Path, *, workers: int, database_url: str | None = None,
                 extra_env: dict[str, str] | None = None, wait_ready: bool = False, timeout: float = 120,
                 port: int | None = None) -> Server:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{data_dir / 'pixgen.db'}"
    env = {**os.environ, "PIXGEN_LEASE_SECONDS": "10", **(extra_env or {})}
    log_path = data_dir / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixgen", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--workers", str(workers), "--database-url", database_url],
        env=env, stdout=log_path.open("a"), stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", data_dir=data_dir, database_url=database_url, proc=proc,
                    log_path=log_path)
    deadline = time.monotonic() + timeout
    path = "/health/ready" if wait_ready else "/health"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pixgen serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"pixgen serve did not get ready in {timeout} s:\n{server.log()}")
        time.sleep(0.2)


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="session")
def api_server(tmp_path_factory):
    """API only (``--workers 0``): submitted jobs stay pending; small caps so limits are reachable."""
    server = start_server(tmp_path_factory.mktemp("api-server"), workers=0, extra_env={
        "PIXGEN_MAX_BODY_BYTES": str(64 * 1024), "PIXGEN_RATE_LIMIT_PER_MINUTE": "5",
        "PIXGEN_MAX_CONCURRENT_JOBS": "3"})
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The whole service with one toy-model worker, ready when the worker has loaded the model."""
    server = start_server(tmp_path_factory.mktemp("server"), workers=1, wait_ready=True, timeout=240)
    yield server
    stop_server(server)


def wait_for(predicate, timeout: float, every: float = 0.2):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns something truthy (which is returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s")
