"""Run the real service on loopback: ``pixgen serve`` and ``pixgen worker`` as child processes, and fresh
PostgreSQL databases. The test suite and the benchmarks both use it; so can a user's own integration tests.

Nothing here is a stand-in: every helper starts the same command line an operator would run.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_USERS = ("postgres", "root")  # whichever the local server trusts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy (which is returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"not true within {timeout} s")


# -- processes -------------------------------------------------------------------------------------------------
def spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m pixgen ARGS`` with its output appended to ``log_path``."""
    return subprocess.Popen([sys.executable, "-m", "pixgen", *args], env={**os.environ, **(env or {})},
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 30) -> None:
    """Send ``sig``; SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LocalServer:
    url: str
    data_dir: Path
    database_url: str
    proc: subprocess.Popen
    log_path: Path

    def new_key(self, credits: int = 100, name: str = "local") -> str:
        """A new API key's secret, straight into the server's database."""
        from pixgen.jobs.db import connect
        from pixgen.jobs.keys import create_key

        db = connect(self.database_url, pool_size=1)
        try:
            return create_key(db, credits=credits, name=name)[1]
        finally:
            db.dispose()

    def log(self, tail: int = 5000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children() if "worker" in " ".join(c.cmdline())]

    def stop(self) -> None:
        stop_process(self.proc)


def start_server(data_dir: Path, *, workers: int, database_url: str | None = None,
                 env: dict[str, str] | None = None, ready: bool = False, timeout: float = 120,
                 port: int | None = None) -> LocalServer:
    """``pixgen serve`` on loopback (a free port unless given), SQLite in ``data_dir`` unless ``database_url``.

    Returns once ``/health`` answers, or with ``ready`` once a worker has loaded the model (``/health/ready``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    database_url = database_url or f"sqlite:///{data_dir / 'pixgen.db'}"
    log_path = data_dir / "server.log"
    proc = spawn(["serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers),
                  "--database-url", database_url], log_path, env)
    server = LocalServer(f"http://127.0.0.1:{port}", data_dir, database_url, proc, log_path)
    path = "/health/ready" if ready else "/health"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"pixgen serve exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"pixgen serve not ready in {timeout} s:\n{server.log()}")
        time.sleep(0.1)


def start_worker(data_dir: Path, database_url: str, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), log_name: str = "worker.log") -> subprocess.Popen:
    """``pixgen worker`` on ``database_url`` and the media under ``data_dir`` (its log next to them)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return spawn(["worker", "--data-dir", str(data_dir), "--database-url", database_url, *args],
                 data_dir / log_name, env)


# -- PostgreSQL ------------------------------------------------------------------------------------------------
def postgres_admin():  # noqa: ANN201 - a psycopg connection; psycopg is imported lazily
    """An autocommit connection to the local server's ``test`` database and the user it took."""
    import psycopg

    last: Exception | None = None
    for user in PG_ADMIN_USERS:
        try:
            return psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="test", autocommit=True,
                                   connect_timeout=3), user
        except psycopg.OperationalError as exc:
            last = exc
    raise last  # type: ignore[misc]


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A new database ``{prefix}_<random>`` on the local server, dropped afterwards; yields its URL."""
    admin, user = postgres_admin()
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
