"""Helpers shared by the service and fleet benchmarks: real servers and workers on loopback, keys, machine load,
HTTP load generation (``wrk`` when installed, else one asyncio client), result files.

Every benchmark prints its JSON and writes it under ``bench/results/`` (gitignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from pixgen import testing
from pixgen.testing import LocalServer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RUN = "/api/v1/models/pixverse-v6/run"
# Benchmarks measure speed, not the per-key limits: no rate limit, no concurrency cap, a short lease.
BENCH_ENV = {"PIXGEN_RATE_LIMIT_PER_MINUTE": "0", "PIXGEN_MAX_CONCURRENT_JOBS": "0"}


# -- machine ---------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU count and load averages: on a shared 2-core box, read every number next to these."""
    return {"cpus": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def write_results(name: str, results: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    path.write_text(text + "\n")
    print(text)
    print(f"written to {path}", file=sys.stderr)
    return path


def vm_hwm_bytes(pid: int | str = "self") -> int | None:
    """A process's peak RSS in bytes: ``VmHWM``, its own address space's high-water mark (Linux). None once it
    has exited. Not ``getrusage``: a child's ``ru_maxrss`` starts from its parent's mark at fork (the mark
    survives exec), so a child of a large process reads at least the parent's peak."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) * 1024 if line else None


# -- source trees (for before/after runs in the same conditions) -------------------------------------------------
@contextmanager
def source_tree(ref: str | None) -> Iterator[Path | None]:
    """``None``: the working tree. A git ref: that commit's ``src/`` extracted to a temporary folder."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="pixgen-src-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
                                 check=True, capture_output=True).stdout
        tar_path = Path(tmp) / "src.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / "src"


def _env(extra: dict[str, str] | None, src: Path | None) -> dict[str, str]:
    env = {**os.environ, **BENCH_ENV, **(extra or {})}
    env.setdefault("HF_HUB_OFFLINE", "1")
    if src is not None:  # PYTHONPATH comes before the editable install's path entry
        env["PYTHONPATH"] = str(src)
    return env


# -- servers, workers and databases: pixgen.testing, with the benchmark environment ---------------------------
def start_server(data_dir: Path, *, workers: int, database_url: str | None = None, src: Path | None = None,
                 env: dict[str, str] | None = None, ready: bool = False, timeout: float = 300) -> LocalServer:
    """``pixgen serve`` on loopback with BENCH_ENV; ``src``: run that source tree instead of the installed one."""
    return testing.start_server(data_dir, workers=workers, database_url=database_url, env=_env(env, src),
                                ready=ready, timeout=timeout)


def start_worker(data_dir: Path, database_url: str, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> subprocess.Popen:
    return testing.start_worker(data_dir, database_url, env=_env(env, None), args=args)


def new_key(server: LocalServer) -> str:
    """A key with credits enough for any run."""
    return server.new_key(credits=10 ** 9, name="bench")


@contextmanager
def postgres_database(prefix: str = "pixgen_bench") -> Iterator[str | None]:
    """A fresh database on 127.0.0.1:5432, dropped afterwards; None when there is no server (SQLite runs only)."""
    try:
        testing.postgres_admin()[0].close()
    except Exception:  # noqa: BLE001 - no driver or no server: the PostgreSQL numbers are left out
        yield None
        return
    with testing.fresh_postgres_database(prefix) as url:
        yield url


# -- HTTP load ---------------------------------------------------------------------------------------------------
def http_load(url: str, headers: dict[str, str], *, seconds: float, connections: int) -> dict[str, Any]:
    """Requests per second of GET ``url`` over ``connections`` keep-alive connections.

    ``wrk`` (C, one thread) when installed — it costs the 2-core machine far less than a Python client — else one
    asyncio ``httpx`` client in this process. Any non-200 answer fails the run.
    """
    if shutil.which("wrk"):
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
        if "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"wrk saw errors:\n{out}")
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        return {"client": "wrk -t1", "rps": round(rate, 1), "p50_ms": _ms(p50), "p99_ms": _ms(p99)}
    return asyncio.run(_httpx_load(url, headers, seconds, connections))


def _ms(match: re.Match | None) -> float | None:
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)


async def _httpx_load(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    count = 0
    async with httpx.AsyncClient(headers=headers, limits=limits) as client:
        stop = time.monotonic() + seconds

        async def one() -> None:
            nonlocal count
            while time.monotonic() < stop:
                response = await client.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return {"client": "httpx asyncio", "rps": round(count / elapsed, 1)}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
