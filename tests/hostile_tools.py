"""What the hostile-input tests (``tests/test_hostile_*.py``) share: a real ``pixgen serve`` on SQLite or a fresh
PostgreSQL database, keys whose id the test knows, the database read straight (credits, job rows), raw HTTP on a
socket, and small images."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from pixgen.jobs.db import connect
from pixgen.jobs.keys import create_key
from pixgen.jobs.schema import api_keys, jobs
from pixgen.testing import LocalServer, fresh_postgres_database, postgres_admin, start_server

DATABASES = ["sqlite", "postgres"]


@contextlib.contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    """A database URL: SQLite in ``data_dir``, or a fresh PostgreSQL database (``kind``) dropped after."""
    if kind == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{data_dir / 'pixgen.db'}"
        return
    try:
        postgres_admin()[0].close()
    except Exception as exc:  # noqa: BLE001 - any failure to connect: no server
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required when CI=true: {exc}")
        pytest.skip(f"no PostgreSQL: {exc}")
    with fresh_postgres_database("pixgen_hostile") as url:
        yield url


@contextlib.contextmanager
def served(kind: str, data_dir: Path, *, workers: int, env: dict[str, str]) -> Iterator[LocalServer]:
    """``pixgen serve`` on SQLite in ``data_dir`` or on a fresh PostgreSQL database (``kind``), stopped after."""
    with database(kind, data_dir) as url:
        server = start_server(data_dir, workers=workers, database_url=url, env=env)  # no readiness probe: it would
        # hold the shutdown 10 s for a probe to see the 503 (cli/draining_server.py)
        try:
            yield server
        finally:
            server.stop()


def new_key(server: LocalServer, credits: int) -> tuple[str, str]:
    """A new key straight into the server's database: ``(id, secret)``."""
    db = connect(server.database_url, pool_size=1)
    try:
        record, secret = create_key(db, credits=credits, name="hostile")
    finally:
        db.dispose()
    return record.id, secret


def key_state(server: LocalServer, key_id: str) -> tuple[int, int]:
    """``(credits, job rows)`` of a key, read from the database itself (deleted jobs counted too)."""
    db = connect(server.database_url, pool_size=1)
    try:
        with db.read() as conn:
            credits = conn.execute(select(api_keys.c.credits).where(api_keys.c.id == key_id)).scalar_one()
            rows = conn.execute(select(func.count()).select_from(jobs).where(jobs.c.key_id == key_id)).scalar_one()
    finally:
        db.dispose()
    return int(credits), int(rows)


def raw_exchange(url: str, *requests: bytes, timeout: float = 10) -> list[bytes]:
    """Send ``requests`` one after the other on ONE connection to the server at ``url``, reading each answer
    (``Content-Length`` bodies) before the next; an answer is ``b""`` once the server has closed the connection."""
    host, port = url.removeprefix("http://").split(":")
    answers = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        for request in requests:
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                answers.append(b"")
                continue
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = stream.readline()
                if not line:
                    break
                head += line
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            answers.append(head + stream.read(length) if head else b"")
    return answers


def http_get(path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: test", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def png_uri(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
