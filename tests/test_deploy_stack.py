"""compose.yaml's CPU profile run as local processes, as `docker compose --profile cpu up` would run it, without a
container engine: each pixgen service runs its own command with its own environment (the image's ENV, the .env an
operator makes from .env.example, the service's `environment`). What a container would give differently is
rewritten, and only that (``Network``): service host names and the published port become loopback addresses,
container folders become temporary ones. PostgreSQL is the local server (the role and database compose's
postgres service would create), MinIO is moto's S3 server, the bucket service's `mc mb` is one boto3 call.

A job submitted through the API completes on the worker with the toy model; its video is served from the bucket
(a presigned link), and /metrics counts it.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from deploy_tools import ENV_EXAMPLE, ROOT, compose_project, read_env_file, service_environment
from sqlalchemy.engine import make_url

from pixgen.media.probe import probe
from pixgen.testing import free_port, postgres_admin, stop_process, wait_for

PROFILE = "cpu"
# What an operator changes in .env for the cpu profile (.env.example says so).
OPERATOR = {"COMPOSE_PROFILES": PROFILE, "IMAGE_VARIANT": "cpu", "PIXGEN_MODEL": "tiny"}


def image_environment(variant: str) -> dict[str, str]:
    """The ENV lines of the Dockerfile's stage ``base-<variant>`` and of the final stage (the image's own)."""
    values: dict[str, str] = {}
    stage = None
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        if line.startswith("FROM "):
            stage = line.split(" AS ")[-1] if " AS " in line else "final"
        elif line.startswith("ENV ") and stage in (f"base-{variant}", "final"):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                values[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    values.pop("PATH", None)  # the image's venv is this test's interpreter
    return values


@dataclass
class Network:
    """What the compose network and the containers' folders are, for processes on this machine."""

    hosts: dict[str, str]  # "service:port" → "127.0.0.1:port"
    folders: dict[str, Path]  # container folder → folder here

    def rewrite(self, env: dict[str, str]) -> dict[str, str]:
        out = {}
        for key, value in env.items():
            for name, address in self.hosts.items():
                value = value.replace(f"@{name}/", f"@{address}/").replace(f"//{name}", f"//{address}")
            for inside, here in self.folders.items():
                if value == inside or value.startswith(inside + "/"):
                    value = str(here) + value[len(inside):]
            out[key] = value
        return out


@pytest.fixture
def moto_s3():
    """moto's S3 server as its own process, in MinIO's place."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url), timeout=30)
    yield url
    stop_process(proc)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def compose_database(pg_url):
    """The role and database compose's postgres service makes (POSTGRES_USER / POSTGRES_DB), on the local
    server: a fresh database per run, owned by that role (trust authentication: the password is not checked)."""
    admin, _ = postgres_admin()
    name = f"pixgen_stack_{secrets.token_hex(4)}"
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pixgen'").fetchone() is None:
        admin.execute("CREATE ROLE pixgen LOGIN")
    admin.execute(f'CREATE DATABASE "{name}" OWNER pixgen')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def active_services(project: dict[str, Any]) -> list[str]:
    return [name for name, s in project["services"].items() if not s.get("profiles") or PROFILE in s["profiles"]]


def test_the_cpu_profile_runs_a_job_from_the_api_to_the_bucket_and_metrics(tmp_path, moto_s3, compose_database):
    env_file = {**read_env_file(ENV_EXAMPLE), **OPERATOR}
    project = compose_project(env_file)
    services = project["services"]
    assert active_services(project) == ["postgres", "minio", "bucket", "api", "worker-cpu"]
    pixgen_services = [n for n in active_services(project) if services[n].get("image", "").startswith("pixgen:")]
    assert pixgen_services == ["api", "worker-cpu"]

    # MinIO → moto; the bucket service's job
    bucket_command = services["bucket"]["command"]
    assert bucket_command[0] == "mb"
    bucket = bucket_command[-1].split("/", 1)[1]
    api_env = service_environment(project, "api", env_file)
    boto3.client("s3", endpoint_url=moto_s3, aws_access_key_id=api_env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=api_env["AWS_SECRET_ACCESS_KEY"],
                 region_name=api_env["AWS_REGION"]).create_bucket(Bucket=bucket)

    # the database compose's postgres service holds: its user and password, this run's database name
    compose_url = make_url(api_env["PIXGEN_DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert (compose_url.username, compose_url.password, compose_url.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    api_port = free_port()
    published = services["api"]["ports"][0].rsplit(":", 1)[-1]  # "8000:8000" → the container's port
    procs: list[subprocess.Popen[bytes]] = []
    try:
        envs = {}
        for name in pixgen_services:
            network = Network(
                hosts={"postgres:5432": "127.0.0.1:5432", urlsplit(api_env["PIXGEN_S3_ENDPOINT_URL"]).netloc:
                       moto_s3.removeprefix("http://"), "minio:9000": moto_s3.removeprefix("http://")},
                folders={"/data/cache": Path(os.environ.get("PIXGEN_CACHE_DIR", Path.home() / ".cache" / "pixgen")),
                         "/data": tmp_path / name, "/models": tmp_path / "models"})
            env = network.rewrite({**image_environment(env_file["IMAGE_VARIANT"]),
                                   **service_environment(project, name, env_file)})
            env["PIXGEN_DATABASE_URL"] = make_url(env["PIXGEN_DATABASE_URL"]).set(
                database=compose_database).render_as_string(hide_password=False)
            env.update(PIXGEN_HOST="127.0.0.1", PIXGEN_PORT=str(api_port) if env["PIXGEN_PORT"] == published
                       else env["PIXGEN_PORT"])  # the published port, on loopback only
            envs[name] = env
            (tmp_path / name).mkdir()
            command = [sys.executable, "-m", "pixgen", *services[name]["command"]]  # ENTRYPOINT ["pixgen"]
            procs.append(subprocess.Popen(command, cwd=tmp_path / name, env={**os.environ, **env},
                                          stdout=(tmp_path / f"{name}.log").open("wb"), stderr=subprocess.STDOUT))
        assert envs["worker-cpu"]["PIXGEN_MODEL"] == "tiny" and envs["api"]["PIXGEN_MODEL"] == "tiny"
        url = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: _ready(url, procs, tmp_path), timeout=240, every=0.5)

        # `docker compose exec api pixgen keys create --credits 100`
        made = subprocess.run([sys.executable, "-m", "pixgen", "keys", "create", "--credits", "100"],
                              env={**os.environ, **envs["api"]}, cwd=tmp_path / "api", capture_output=True,
                              text=True, timeout=120)
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}

        submitted = httpx.post(f"{url}/api/v1/models/pixverse-v6/run", headers=headers, timeout=30,
                               json={"prompt": "a paper boat on a pond", "duration": 1, "quality": "360p"})
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()["jobId"]
        job = wait_for(lambda: _finished(url, job_id, headers), timeout=300, every=0.5)
        assert job["status"] == "completed", job

        video_url = job["output"]["video"]
        assert video_url.startswith(f"{moto_s3}/{bucket}/videos/")  # presigned, served by the bucket itself
        video = httpx.get(video_url, timeout=30)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        (tmp_path / "video.mp4").write_bytes(video.content)
        facts = probe(tmp_path / "video.mp4")
        assert (facts.width, facts.height) == (640, 360) and abs(facts.num_frames - 25) <= 1

        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert re.search(r'^pixgen_jobs_total\{outcome="completed",quality="360p",surface="[a-z]+"\} 1\.0$',
                         metrics, re.MULTILINE), metrics[:3000]
        assert re.search(r"^pixgen_workers_live 1\.0$", metrics, re.MULTILINE)
    finally:
        for proc in reversed(procs):
            stop_process(proc, grace=60)


def _ready(url: str, procs: list[subprocess.Popen[bytes]], logs: Path) -> bool:
    for proc in procs:
        if proc.poll() is not None:
            raise AssertionError(f"a service exited with {proc.returncode}:\n" + "\n".join(
                p.read_text(errors="replace")[-3000:] for p in logs.glob("*.log")))
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200  # the API up, the worker live
    except httpx.HTTPError:
        return False


def _finished(url: str, job_id: str, headers: dict[str, str]) -> dict[str, Any] | None:
    job = httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
    return job if job["status"] in ("completed", "failed", "cancelled") else None
