"""One worker (or one ``pixgen generate``) over several GPUs, or several CPU processes over gloo: its ranks.

    pixgen worker --gpus 0,1                      parent (no torch): starts the ranks, restarts the group
      ├── rank 0  python -m pixgen.jobs.group --role worker --rank 0    claims, heartbeats, stores: a Worker
      └── rank 1  python -m pixgen.jobs.group --role worker --rank 1    runs each job with rank 0, writes nothing

Every rank loads the model on its own GPU and runs every job's engine code; the transformer's work is shared
(``engine/ltx2/parallel.py``) and rank 0 writes the video. Rank 0 hands each job to the others through the group's
store (``engine/distributed.Channel``), runs it with them (``LeaderEngine``, the ``Engine`` its ``Worker`` sees),
then waits for their answers.

Faults: a rank that dies or hangs makes rank 0's next collective fail or time out (``--collective-timeout``):
rank 0 hands the job back (``JobStore.retry_broken``: attempt counted, failed after ``--max-attempts``) and exits,
and the parent restarts the whole group (at once when it had got ready: a start that keeps failing backs off),
whose rank 0 claims the job again. A rank 0 that dies leaves its job's
lease to expire (any worker's housekeeping puts it back); the parent restarts the group. Nothing is charged twice:
the job moves only through ``JobStore._move``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pixgen.core.progress import ProgressCallback, no_progress
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import Engine, GenerationResult, PreviewCallback, never_cancelled
from pixgen.errors import Cancelled, ConfigError, PixgenError, RankGroupBroken
from pixgen.jobs.gpus import worker_environment
from pixgen.jobs.supervisor import FIRST_BACKOFF, HAND_BACK_GRACE, die_with_parent, restart_delay
from pixgen.quick_exit import leave
from pixgen.settings import Settings, load_settings

if TYPE_CHECKING:
    from pixgen.engine.distributed import Channel, RankGroup

log = logging.getLogger("pixgen.group")

FOLLOWER_EXIT_SECONDS = 10.0  # how long the others get to exit on their own once rank 0 is gone


# -- rank 0's engine ----------------------------------------------------------------------------------------------
class LeaderEngine:
    """The engine as rank 0's caller sees it: each job is handed to the other ranks first, then run here with
    them; their answers are awaited before the next. A seed is drawn here, once, for every rank."""

    def __init__(self, engine: Engine, channel: Channel, timeout: float,
                 stopping: Callable[[], bool] = lambda: False, on_broken: Callable[[], None] = lambda: None) -> None:
        self.engine, self.channel, self.timeout = engine, channel, timeout
        self.capabilities = engine.capabilities
        self.stopping, self.on_broken = stopping, on_broken
        self.broken = False

    def generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                 should_cancel: Callable[[], bool] = never_cancelled,
                 on_preview: PreviewCallback | None = None) -> GenerationResult:
        request = request.with_seed()
        return self._run({"op": "generate", "request": request.model_dump_json()}, should_cancel,
                         lambda cancel: self.engine.generate(request, out_path, on_progress, cancel, on_preview))

    def extend(self, source: Path, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        request = request.with_seed()
        return self._run({"op": "extend", "request": request.model_dump_json(), "source": str(source)},
                         should_cancel,
                         lambda cancel: self.engine.extend(source, request, out_path, on_progress, cancel))

    def retake(self, source: Path, request: VideoRequest, start: float, end: float, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        request = request.with_seed()
        return self._run({"op": "retake", "request": request.model_dump_json(), "source": str(source),
                          "start": start, "end": end}, should_cancel,
                         lambda cancel: self.engine.retake(source, request, start, end, out_path, on_progress,
                                                           cancel))

    def sound(self, source: Path | None, request: VideoRequest, out_path: Path,
              on_progress: ProgressCallback = no_progress,
              should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        request = request.with_seed()
        return self._run({"op": "sound", "request": request.model_dump_json(),
                          "source": None if source is None else str(source)}, should_cancel,
                         lambda cancel: self.engine.sound(source, request, out_path, on_progress, cancel))

    def _run(self, message: dict[str, Any], should_cancel: Callable[[], bool],
             call: Callable[[Callable[[], bool]], GenerationResult]) -> GenerationResult:
        if self.broken:
            raise RankGroupBroken("this worker's group of GPUs is restarting")
        seq = self.channel.send(message)
        parallel = getattr(self.engine, "parallel", None)
        if parallel is not None:  # read at every shared transformer call: a cancel ends the job on every rank
            parallel.cancel = should_cancel
        # Here alone only once the others are done with this job (no collective left to abandon them in).
        alone = lambda: self.channel.answered(seq) and should_cancel()  # noqa: E731
        try:
            result = call(alone)
        except RankGroupBroken:
            self._break()
            raise
        except BaseException:
            self._settle(seq)
            raise
        finally:
            if parallel is not None:
                parallel.cancel = never_cancelled
        self._settle(seq)
        return result

    def _settle(self, seq: int) -> None:
        """The others' answers to job ``seq``; none in time: the group restarts after this job."""
        try:
            answers = self.channel.answers(seq, self.timeout, self.stopping)
        except RankGroupBroken as exc:
            log.error("%s; the group restarts", exc.message)
            self._break()
            return
        for rank, answer in enumerate(answers, start=1):
            if not answer.get("ok") and not answer.get("cancelled"):
                log.warning("rank %d: the job failed there: %s", rank, answer.get("error"))

    def _break(self) -> None:
        self.broken = True
        self.on_broken()

    def close(self) -> None:
        """Tell the other ranks to exit."""
        try:
            self.channel.send({"op": "stop"})
        except Exception:  # they may be gone already
            log.debug("could not tell the other ranks to stop", exc_info=True)


# -- the other ranks ----------------------------------------------------------------------------------------------
def follow(engine: Engine, channel: Channel, stop: Callable[[], bool] = lambda: False) -> None:
    """Run every job rank 0 hands over, until it says stop (or ``stop()``); write nothing."""
    channel.ready()
    with tempfile.TemporaryDirectory(prefix="pixgen-rank-") as scratch:
        out = Path(scratch) / "unused.mp4"  # the engine writes no video on these ranks
        while (message := channel.receive(stop)) is not None and message["op"] != "stop":
            request = VideoRequest.model_validate_json(message["request"])
            try:
                if message["op"] == "generate":
                    engine.generate(request, out)
                elif message["op"] == "extend":
                    engine.extend(Path(message["source"]), request, out)
                elif message["op"] == "sound":
                    engine.sound(Path(message["source"]) if message["source"] else None, request, out)
                else:
                    engine.retake(Path(message["source"]), request, message["start"], message["end"], out)
            except Cancelled:
                channel.answer({"ok": False, "cancelled": True})
            except RankGroupBroken:
                raise
            except Exception as exc:  # the job's own failure: rank 0 reports it
                log.exception("job failed on this rank")
                channel.answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            else:
                channel.answer({"ok": True})


# -- starting ranks -----------------------------------------------------------------------------------------------
def rank_environment(settings: Settings) -> dict[str, str]:
    """What every rank of a group runs with: this environment, the settings, and all the group's GPUs visible
    (rank ``r`` takes ``cuda:r``)."""
    gpus = ",".join(settings.gpu_list)
    return {**os.environ, **settings.to_env(), **worker_environment(gpus or None, os.environ)}


def start_rank(rank: int, world: int, port: int, role: str, env: dict[str, str],
               ready_file: Path | None = None) -> subprocess.Popen[bytes]:
    """One rank's process; a worker's rank 0 creates ``ready_file`` once every rank has loaded the model."""
    extra = ["--ready-file", str(ready_file)] if ready_file is not None else []
    return subprocess.Popen([sys.executable, "-m", "pixgen.jobs.group", "--role", role, "--rank", str(rank),
                             "--world", str(world), "--port", str(port), *extra], env=env,
                            preexec_fn=die_with_parent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _device(settings: Settings, rank: int) -> str:
    return f"cuda:{rank}" if settings.gpu_list else "cpu"


def _engine_device(settings: Settings) -> str:
    """Where the engine loads: plain ``cuda`` is this rank's GPU once joining has made it the current device, and
    lets the weights stream straight to it (the memory modes load ``cuda:N`` for N > 0 through host memory, which
    several ranks at once could not afford)."""
    return "cuda" if settings.gpu_list else "cpu"


def _join(settings: Settings, rank: int, port: int) -> RankGroup:
    """Join the group as ``rank`` (torch arrives here)."""
    import torch

    from pixgen.engine.distributed import init_rank_group

    device = torch.device(_device(settings, rank))
    if device.type == "cpu":  # the ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.ranks))
    return init_rank_group(rank, settings.ranks, port=port, device=device, timeout=settings.collective_timeout)


def _load(settings: Settings) -> Engine:
    from pixgen.engine import load_engine

    options = replace(settings.engine_options(), device=_engine_device(settings))
    return load_engine(settings.model, backend_id=settings.engine, cache_dir=settings.cache_dir, options=options)


# -- pixgen generate over a group: this process is rank 0 ----------------------------------------------------------
@contextmanager
def leading(settings: Settings) -> Iterator[LeaderEngine]:
    """This process as rank 0 of a group of ``settings.ranks``: the other ranks started here (and ended on leaving),
    the model loaded on every rank; jobs go through the ``LeaderEngine`` it yields."""
    import torch

    from pixgen.engine.distributed import leave_rank_group

    if torch.distributed.is_initialized():
        raise RankGroupBroken("this process is already a rank of a group")
    world, port = settings.ranks, free_port()
    env = rank_environment(settings)
    os.environ.update({k: v for k, v in env.items() if k.startswith("CUDA_")})  # before CUDA starts here
    threads = torch.get_num_threads()
    others = [start_rank(r, world, port, "follow", env) for r in range(1, world)]
    leader: LeaderEngine | None = None
    try:
        group = _join(settings, 0, port)
        engine = _load(settings)
        channel = group.channel()
        if not channel.wait_ready(lambda: any(p.poll() is not None for p in others)):
            raise RankGroupBroken("a rank exited while loading the model")
        leader = LeaderEngine(engine, channel, group.timeout)
        yield leader
    finally:
        if leader is not None:
            leader.close()
        _end(others)
        leave_rank_group()
        torch.set_num_threads(threads)


def generate_over_group(settings: Settings, request: VideoRequest, out_path: Path,
                        on_progress: ProgressCallback = no_progress) -> GenerationResult:
    """``pixgen generate --gpus 0,1 …`` / ``--device cpu --parallel 2``: one video over the group."""
    with leading(settings) as leader:
        return leader.generate(request, out_path, on_progress)


def _end(procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + FOLLOWER_EXIT_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- pixgen worker over a group: the parent ----------------------------------------------------------------------
class GroupSupervisor:
    """Starts a worker's ranks and starts them all again when any exits, until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="pixgen-group-") as scratch:
            return self._run(Path(scratch) / "ready")

    def _run(self, ready_file: Path) -> int:
        backoff = FIRST_BACKOFF
        while not self.stopping.is_set():
            world, port = self.settings.ranks, free_port()
            env = rank_environment(self.settings)
            ready_file.unlink(missing_ok=True)
            self.procs = [start_rank(r, world, port, "worker", env, ready_file if r == 0 else None)
                          for r in range(world)]
            started = time.monotonic()
            where = f"GPUs {self.settings.gpus}" if self.settings.gpu_list else f"{world} CPU processes (gloo)"
            log.info("worker group of %d ranks on %s: pids %s", world, where, [p.pid for p in self.procs])
            while not self.stopping.is_set() and all(p.poll() is None for p in self.procs):
                self.stopping.wait(0.2)
            gone = [(r, p.returncode) for r, p in enumerate(self.procs) if p.poll() is not None]
            self._stop_ranks()
            if self.stopping.is_set():
                break
            if ready_file.exists():  # it loaded the model and took jobs: a fault (a rank died or hung), not a
                delay, backoff = 0.0, FIRST_BACKOFF  # start that keeps failing: its jobs wait for no backoff
            else:
                delay, backoff = restart_delay(time.monotonic() - started, backoff)
            log.warning("rank(s) %s exited; the group restarts in %.0f s", gone, delay)
            self.stopping.wait(delay)
        return 0

    def _stop_ranks(self) -> None:
        """Rank 0 first (SIGTERM: it drains — finishes its job within ``--drain-seconds``, else hands it back — then
        tells the others to exit), then the others get a while to exit on their own, then rank 0 if still there
        (SIGTERM, then SIGKILL: a hung rank may ignore the first) and the others still there (SIGKILL).

        The others' while is at most ``--collective-timeout``: rank 0 gone, a rank's next collective fails at once
        or times out within it (no rank of a working group computes longer than that between two collectives: the
        others would time out waiting), and its wait for the next job fails with rank 0's store; one still there
        after it is hung. They write nothing and handle no SIGTERM, so SIGKILL ends them as SIGTERM would, and also
        where SIGTERM cannot (a stopped process)."""
        leader, others = self.procs[0], self.procs[1:]
        _signal(leader, signal.SIGTERM)
        _wait(leader, self.settings.drain_seconds + HAND_BACK_GRACE)
        deadline = time.monotonic() + min(FOLLOWER_EXIT_SECONDS, self.settings.collective_timeout)
        for proc in others:
            _wait(proc, max(0.1, deadline - time.monotonic()))
        _signal(leader, signal.SIGTERM)
        if not _wait(leader, 5):
            leader.kill()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def run_group_worker(settings: Settings) -> int:
    """``pixgen worker`` whose jobs each run over several ranks: start them, restart them, stop them on SIGTERM."""
    supervisor = GroupSupervisor(settings)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("worker group: signal %d, stopping", signum)
        supervisor.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return supervisor.run()


# -- a rank process --------------------------------------------------------------------------------------------------
def _lead_worker(settings: Settings, port: int, ready_file: Path | None = None) -> int:
    """Rank 0 of a worker group: a ``Worker`` whose engine is the group's; ``ready_file`` is created once every rank
    has loaded the model (the parent then restarts a group that breaks without a backoff)."""
    from pixgen.jobs.worker import Worker

    group = _join(settings, 0, port)
    leader: LeaderEngine | None = None
    worker: Worker

    def engine_factory() -> Engine:
        nonlocal leader
        engine = _load(settings)
        channel = group.channel()
        if not channel.wait_ready(worker.stop.is_set):
            raise RankGroupBroken("stopped while the other ranks were loading the model")
        leader = LeaderEngine(engine, channel, group.timeout, stopping=worker.stop.is_set, on_broken=worker.stop.set)
        if ready_file is not None:
            ready_file.touch()
        return cast(Engine, leader)  # the Engine's job methods, as the Worker calls them

    worker = Worker(settings, engine_factory=engine_factory)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("rank 0: signal %d, draining", signum)
        worker.drain()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the group on Ctrl-C
    try:
        worker.run()
    finally:
        if leader is not None:
            leader.close()
    return 1 if leader is not None and leader.broken else 0


def _follow(settings: Settings, rank: int, port: int) -> int:
    group = _join(settings, rank, port)
    follow(_load(settings), group.channel())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixgen.jobs.group", description="one rank of a pixgen group")
    parser.add_argument("--role", choices=("worker", "follow"), required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, help="rank 0 of a worker: created once the group is ready")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{args.rank} %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every rank; rank 0 or the parent decides
    leads = args.role == "worker" and args.rank == 0
    settings = load_settings(secret=leads)  # from the PIXGEN_* variables the starter passed
    if settings.ranks != args.world:
        raise ConfigError(f"rank started for a group of {args.world}, but the settings make {settings.ranks}",
                          field="parallel")
    try:
        return _lead_worker(settings, args.port, args.ready_file) if leads else _follow(settings, args.rank, args.port)
    except RankGroupBroken as exc:
        log.error("%s", exc.message)
        return 3
    except PixgenError as exc:
        log.error("%s", exc.message)
        return 2


if __name__ == "__main__":
    try:
        code = main()
    except Exception:  # noqa: BLE001 - reported as Python would (exit status 1), then the same quick exit
        traceback.print_exc()
        code = 1
    leave(code)
