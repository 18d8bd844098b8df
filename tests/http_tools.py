"""Small HTTP helpers shared by test modules: a loopback server over a folder, and waiting out a job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


@contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """The files of ``root`` over HTTP on a loopback port (quietly); yields the base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_completed(c: httpx.Client, job_id: str, timeout: float = 240) -> dict:
    """The job's JSON once it has ended; it must have completed, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (job := c.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job["status"] == "completed", job
    return job
