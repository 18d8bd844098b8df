"""Run the real service on loopback: ``pixgen serve`` and ``pixgen worker`` as child processes, and fresh
PostgreSQL databases. The test suite and the benchmarks both use it; so can a user's own integration tests.

Nothing here is a stand-in for pixgen: every helper starts the same command line an operator would run. The one
stand-in is for the model: ``FakeEngine`` implements the whole ``Engine`` protocol (capabilities, load, generate,
extend, retake, progress, cancel) and writes real MP4s of solid colour, fast, so tests of everything around the model
need no weights (as httpx ships ``MockTransport``). It is no production backend: ``pixgen serve --engine
pixgen.testing:FAKE_BACKEND`` (``FAKE_ENGINE``) runs it in real workers.
``WebhookReceiver`` is the other end of a ``webhook_url``: a real HTTP server on loopback that records what the
service POSTs.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import numpy as np

from pixgen.core.progress import Progress, ProgressCallback, no_progress
from pixgen.core.retake import RetakeRule, plan_range
from pixgen.core.sizes import FPS, frames_for_audio, nearest_aspect_ratio, output_size
from pixgen.core.spec import VideoRequest
from pixgen.engine import Backend
from pixgen.engine.base import (
    Capabilities,
    EngineOptions,
    Extension,
    Finish,
    GenerationResult,
    PreviewCallback,
    Retake,
    ShotInfo,
    Timings,
    never_cancelled,
)
from pixgen.errors import Cancelled, GenerationError, InvalidRequest
from pixgen.media.audio import check_audio

if TYPE_CHECKING:
    import psycopg

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


# -- the model stand-in ----------------------------------------------------------------------------------------
FAKE_CAPABILITIES = Capabilities(
    extend=True, end_frame=True, multi_clip=True, audio=True, sound_for_video=True,
    retake=RetakeRule(frames_per_latent=1, before_frames=0, after_frames=0, max_seconds=15),
    stages=(("text", 0.05), ("denoise", 0.75), ("encode", 0.2)))


class FakeEngine:
    """The ``Engine`` protocol in full, without a model: ``steps`` "denoising" steps of ``step_seconds`` each
    (``should_cancel`` checked before every one, ``Progress`` after it), then a real H.264 MP4 of the contract's
    frame count, one colour per seed, with a quiet AAC tone unless ``generate_audio`` is false. ``extend`` appends
    such frames to the source's, ``retake`` puts them in place of its range (the rest is the source's frames).

    ``scale`` shrinks the contract's size (``0.25``: 1280×720 → 320×180) for speed; ``fail`` makes every job fail
    with that message after its steps; ``on_step(step)`` is called after each step (tests use it to act mid-job);
    ``encode_seconds``: a pause before each second of frames is written (the MP4 is then half written for a while:
    tests kill a worker there).
    """

    name = "fake"  # the backend as its manifests name it
    capabilities = FAKE_CAPABILITIES
    SAMPLE_RATE = 16_000

    def __init__(self, *, steps: int = 4, step_seconds: float = 0.0, scale: float = 1.0, fail: str | None = None,
                 on_step: Callable[[int], None] | None = None, encode_seconds: float = 0.0) -> None:
        self.steps, self.step_seconds, self.scale, self.fail, self.on_step = steps, step_seconds, scale, fail, on_step
        self.encode_seconds = encode_seconds
        self.steps_run = 0
        self.jobs_run = 0

    @classmethod
    def load(cls, source: Path, options: EngineOptions = EngineOptions()) -> FakeEngine:
        """``source``: ``tiny`` for the defaults, or options ``steps=20,step_seconds=0.2,scale=0.25,fail=TEXT,
        encode_seconds=0.5``
        (what ``--model`` holds with ``--engine pixgen.testing:FAKE_BACKEND``)."""
        text = str(source)
        if text in ("", "tiny", "."):
            return cls()
        given: dict[str, Any] = {}
        kinds = {"steps": int, "step_seconds": float, "scale": float, "fail": str, "encode_seconds": float}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if name.strip() not in kinds:
                raise InvalidRequest(f"the fake engine takes {', '.join(kinds)}; not {name.strip()!r}", field="model")
            given[name.strip()] = kinds[name.strip()](value.strip())
        return cls(**given)

    def generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                 should_cancel: Callable[[], bool] = never_cancelled,
                 on_preview: PreviewCallback | None = None) -> GenerationResult:
        """As the protocol says; it makes no early draft (``on_preview`` is never called)."""
        return self.start_generate(request, out_path, on_progress, should_cancel, on_preview)()

    finishes_aside = True  # nothing is shared between one job's writing and the next job's steps

    def start_generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                       should_cancel: Callable[[], bool] = never_cancelled,
                       on_preview: PreviewCallback | None = None) -> Finish:
        """The steps now; the returned ``Finish`` writes the MP4 (``FinishesAside``)."""
        started = time.perf_counter()
        req = request.with_seed()
        ratio = req.aspect_ratio or self._image_ratio(req) or "16:9"
        width, height = self._size(*output_size(ratio, req.quality))
        # A request that follows its soundtrack is as long as it (the sound itself is not written here).
        frames = frames_for_audio(check_audio(req.audio)) if req.follows_audio and req.audio else req.num_frames
        began = self._denoise(on_progress, should_cancel)
        denoised = time.perf_counter()

        def finish() -> GenerationResult:
            encode_started = time.perf_counter()
            self._write(Path(out_path), width, height, [(frames, req.fixed_seed)], req.generate_audio, on_progress,
                        should_cancel)
            shots: tuple[ShotInfo, ...] = ()
            if req.multi_clip:
                cut = frames // 2
                shots = (ShotInfo(0, req.prompt, 0.0, cut / FPS), ShotInfo(1, req.prompt, cut / FPS, frames / FPS))
            self.jobs_run += 1
            return GenerationResult(
                path=Path(out_path), width=width, height=height, num_frames=frames, seconds=frames / FPS,
                seed=req.fixed_seed, has_audio=req.generate_audio, prompt=f"{req.prompt} (fake)",
                original_prompt=request.prompt, negative_prompt=req.negative_prompt, aspect_ratio=ratio,
                quality=req.quality, generation_size=(width, height), shots=shots,
                timings=Timings(prepare=began - started, denoise=denoised - began,
                                encode=time.perf_counter() - encode_started))

        return finish

    def extend(self, source: Path, request: VideoRequest, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        import av

        started = time.perf_counter()
        req = request.with_seed()
        try:
            with av.open(str(source)) as container:
                stream = container.streams.video[0]
                width, height = stream.codec_context.width, stream.codec_context.height
                source_frames = sum(1 for _ in container.decode(stream))
        except (av.FFmpegError, IndexError, OSError):
            raise InvalidRequest("the video to extend cannot be read", field="video") from None
        new_frames = req.seconds * FPS
        self._denoise(on_progress, should_cancel)
        encode_started = time.perf_counter()
        self._write(Path(out_path), width, height, [SourceFrames(Path(source), 0, source_frames),
                                                    (new_frames, req.fixed_seed)],
                    req.generate_audio, on_progress, should_cancel)
        total = source_frames + new_frames
        self.jobs_run += 1
        return GenerationResult(
            path=Path(out_path), width=width, height=height, num_frames=total, seconds=total / FPS, seed=req.fixed_seed,
            has_audio=req.generate_audio, prompt=f"{req.prompt} (fake)", original_prompt=request.prompt,
            negative_prompt=req.negative_prompt, quality=req.quality, generation_size=(width, height),
            extension=Extension(source_frames=source_frames, new_frames=new_frames, context_frames=1),
            timings=Timings(denoise=encode_started - started, encode=time.perf_counter() - encode_started))

    def retake(self, source: Path, request: VideoRequest, start: float, end: float, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """The source with ``[start, end)`` s (by ``capabilities.retake``'s rule) in the seed's colour, the other
        frames the source's own, the tone all along unless the source has no sound."""
        import av

        started = time.perf_counter()
        req = request.with_seed()
        try:
            with av.open(str(source)) as container:
                stream = container.streams.video[0]
                width, height = stream.codec_context.width, stream.codec_context.height
                has_audio = bool(container.streams.audio)
                source_frames = sum(1 for _ in container.decode(stream))
        except (av.FFmpegError, IndexError, OSError):
            raise InvalidRequest("the video to retake cannot be read", field="video") from None
        assert self.capabilities.retake is not None
        window = plan_range(start, end, source_frames, self.capabilities.retake)
        self._denoise(on_progress, should_cancel)
        encode_started = time.perf_counter()
        self._write(Path(out_path), width, height, [SourceFrames(Path(source), 0, window.start),
                                                    (window.frames, req.fixed_seed),
                                                    SourceFrames(Path(source), window.end, source_frames)],
                    has_audio, on_progress, should_cancel)
        self.jobs_run += 1
        return GenerationResult(
            path=Path(out_path), width=width, height=height, num_frames=source_frames,
            seconds=source_frames / FPS, seed=req.fixed_seed, has_audio=has_audio, prompt=f"{req.prompt} (fake)",
            original_prompt=request.prompt, negative_prompt=req.negative_prompt, quality=req.quality,
            generation_size=(width, height),
            retake=Retake(start_frame=window.start, end_frame=window.end, source_frames=source_frames),
            timings=Timings(denoise=encode_started - started, encode=time.perf_counter() - encode_started))

    def sound(self, source: Path | None, request: VideoRequest, out_path: Path,
              on_progress: ProgressCallback = no_progress,
              should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """The source's video stream copied as it is, and a tone whose pitch follows the seed as its sound."""
        from pixgen.media.remux import read_sound_source, replace_sound, video_from_request

        started = time.perf_counter()
        req = request.with_seed()
        with video_from_request(source, req, Path(out_path).parent) as path:
            src = read_sound_source(path)
            self._denoise(on_progress, should_cancel)
            encode_started = time.perf_counter()
            t = np.arange(round(src.seconds * self.SAMPLE_RATE)) / self.SAMPLE_RATE
            tone = (0.05 * np.sin(2 * np.pi * (110 + req.fixed_seed % 880) * t)).astype(np.float32)
            replace_sound(path, Path(out_path), np.stack([tone, tone]), self.SAMPLE_RATE)
        self.jobs_run += 1
        return GenerationResult(
            path=Path(out_path), width=src.width, height=src.height, num_frames=src.num_frames,
            seconds=src.num_frames / FPS, seed=req.fixed_seed, has_audio=True, prompt=f"{req.prompt} (fake)",
            original_prompt=request.prompt, negative_prompt=req.negative_prompt, quality=req.quality,
            generation_size=(src.width, src.height), sound_only=True,
            timings=Timings(denoise=encode_started - started, encode=time.perf_counter() - encode_started))

    # -- parts ------------------------------------------------------------------------------------------------
    def _report(self, on_progress: ProgressCallback, stage: str, step: int, total: int) -> None:
        on_progress(Progress(stage, step, total, self.capabilities.stages))

    def _size(self, width: int, height: int) -> tuple[int, int]:
        return max(2, round(width * self.scale / 2) * 2), max(2, round(height * self.scale / 2) * 2)

    @staticmethod
    def _image_ratio(req: VideoRequest) -> str | None:
        if req.image_input is None:
            return None
        from pixgen.media.images import image_from_data_uri

        image = image_from_data_uri(req.image_input)
        return nearest_aspect_ratio(*image.size)

    def _denoise(self, on_progress: ProgressCallback, should_cancel: Callable[[], bool]) -> float:
        """The steps; returns when they began (``time.perf_counter``)."""
        self._report(on_progress, "text", 1, 1)
        began = time.perf_counter()
        for step in range(self.steps):
            if should_cancel():
                raise Cancelled("cancelled")
            time.sleep(self.step_seconds)
            self.steps_run += 1
            self._report(on_progress, "denoise", step + 1, self.steps)
            if self.on_step is not None:
                self.on_step(step)
        if self.fail is not None:
            raise GenerationError(self.fail)
        return began

    def _write(self, out_path: Path, width: int, height: int, parts: list[tuple[int, int] | SourceFrames],
               audio: bool, on_progress: ProgressCallback, should_cancel: Callable[[], bool]) -> None:
        """``parts`` in order: ``(frames, seed)`` runs of the seed's colour, or a source video's own frames."""
        from pixgen.media.mp4 import Mp4Writer

        total = sum(p.stop - p.start if isinstance(p, SourceFrames) else p[0] for p in parts)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with Mp4Writer(out_path, width, height, audio_sample_rate=self.SAMPLE_RATE if audio else None) as writer:
            if audio:
                t = np.arange(round(total / FPS * self.SAMPLE_RATE)) / self.SAMPLE_RATE
                tone = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
                writer.write_audio(np.stack([tone, tone]))
            for part in parts:
                blocks = part.frames() if isinstance(part, SourceFrames) else _colour_blocks(*part, width, height)
                for block in blocks:
                    if should_cancel():
                        raise Cancelled("cancelled while encoding")
                    time.sleep(self.encode_seconds)
                    writer.write_frames(block)
                    self._report(on_progress, "encode", writer.frames_written, total)


class SourceFrames(NamedTuple):
    """A video's own frames ``[start, stop)``."""

    path: Path
    start: int
    stop: int

    def frames(self) -> Iterator[np.ndarray]:
        import av

        with av.open(str(self.path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= self.stop:
                    break
                if i >= self.start:
                    yield frame.to_ndarray(format="rgb24")[None]


def _colour_blocks(count: int, seed: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``count`` frames of the seed's colour, a second at a time."""
    colour = np.array([seed % 251, (seed // 251) % 251, (seed // 63001) % 251], dtype=np.uint8)
    block = np.broadcast_to(colour, (min(count, FPS), height, width, 3))
    for written in range(0, count, FPS):
        yield block[:min(FPS, count - written)]


# The fake engine as a backend: what ``--engine pixgen.testing:FAKE_BACKEND`` (``FAKE_ENGINE``) loads; ``--model``
# carries its options (``steps=20,step_seconds=0.2,scale=0.25``, or ``tiny`` for the defaults).
FAKE_BACKEND = Backend("pixgen.testing:FAKE_BACKEND", "solid-colour MP4s for tests (pixgen.testing.FakeEngine)",
                       FAKE_CAPABILITIES, "pixgen.testing:FakeEngine", lambda model, _cache: Path(model or "tiny"))
FAKE_ENGINE = FAKE_BACKEND.id


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
        """SIGTERM, then readiness probes until one is answered "shutting down", as the load balancer in front of a
        server would send them: once probed (``start_server(ready=True)`` probes), ``serve`` keeps accepting for up
        to 10 s after the signal, until a probe has seen the 503 (``cli/draining_server.py``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    answer = httpx.get(self.url + "/health/ready", timeout=2)
                    if answer.status_code == 503 and answer.json().get("reason") == "shutting down":
                        break
                except (httpx.HTTPError, ValueError):
                    break  # no longer accepting (or not answering readiness at all): nothing to wait for
                time.sleep(0.05)
        stop_process(self.proc)


class ReceivedWebhook(NamedTuple):
    at: float  # time.time() when it arrived
    headers: dict[str, str]  # names lower-cased
    body: bytes


class WebhookReceiver:
    """An HTTP server on loopback that records every POST in ``received`` and answers 200. Give its ``url`` as a
    job's ``webhook_url`` (with ``PIXGEN_FETCH_ALLOW_HOSTS=127.0.0.1``: the SSRF guard refuses loopback otherwise).
    Not started, its port refuses connections: a receiver that is down."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[ReceivedWebhook] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(ReceivedWebhook(time.time(), {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


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
def postgres_admin() -> tuple[psycopg.Connection[Any], str]:
    """An autocommit connection to the local server's ``test`` database and the user it took."""
    import psycopg

    last: Exception | None = None
    for user in PG_ADMIN_USERS:
        try:
            return psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="test", autocommit=True,
                                   connect_timeout=3), user
        except psycopg.OperationalError as exc:
            last = exc
    raise last or RuntimeError("no PostgreSQL user to try")


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
