"""Runs N ``pixgen worker`` subprocesses next to the API (``pixgen serve --workers N``), each on its own GPU, or
its own ``--gpus-per-worker`` GPUs (``gpus.py``), and restarts dead ones."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from pixgen.jobs.gpus import assign_gpus, parse_gpus, visible_gpus, worker_environment
from pixgen.settings import Settings, env_name

log = logging.getLogger("pixgen.supervisor")

FIRST_BACKOFF = 0.5  # seconds; doubled before each restart that follows a short life (1, 2, 4... MAX_BACKOFF)
MAX_BACKOFF = 30.0
HAND_BACK_GRACE = 20.0  # seconds a worker gets, past its drain, to hand back its job and exit before SIGKILL


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        gpus = parse_gpus(settings.gpus) if settings.gpus else visible_gpus()
        self.gpus = assign_gpus(count, gpus, share=settings.share_gpus,  # raises before anything starts
                                per_worker=settings.gpus_per_worker)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._backoff = [FIRST_BACKOFF] * count
        self._started = [0.0] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pixgen-supervisor", daemon=True)

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        self._thread.start()

    def environment(self, slot: int) -> dict[str, str]:
        """The environment of the worker in ``slot``: this one, the settings, and its own GPU(s) (several: it runs
        each job over them)."""
        return {**os.environ, **self.settings.to_env(), env_name("gpus"): self.gpus[slot] or "",
                **worker_environment(self.gpus[slot], os.environ)}

    def _spawn(self, slot: int) -> None:
        # Its own process group: a Ctrl-C in the terminal reaches the supervisor only, which then drains its workers
        # with one SIGTERM each (a second would hand their jobs back at once).
        proc = subprocess.Popen([sys.executable, "-m", "pixgen", "worker"], env=self.environment(slot),
                                preexec_fn=die_with_parent, process_group=0)
        self._procs[slot] = proc
        self._started[slot] = time.monotonic()
        gpu = f"GPU {self.gpus[slot]}" if self.gpus[slot] is not None else "the CPU (no GPU)"
        log.info("worker slot %d: started pid %d on %s", slot, proc.pid, gpu)

    def _watch(self) -> None:
        due: dict[int, float] = {}
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for slot, proc in enumerate(self._procs):
                if proc is None or proc.poll() is None:
                    continue
                if slot not in due:
                    delay, self._backoff[slot] = restart_delay(now - self._started[slot], self._backoff[slot])
                    due[slot] = now + delay
                    log.warning("worker slot %d: pid %d exited with %s; restarting", slot, proc.pid,
                                proc.returncode)
                if now >= due[slot] and not self._stop.is_set():
                    del due[slot]
                    self._spawn(slot)

    def stop(self) -> None:
        """SIGTERM every worker: each drains (finishes its job within ``--drain-seconds``, else hands it back);
        SIGKILL what is left ``HAND_BACK_GRACE`` seconds past the drain."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        live = [p for p in self._procs if p is not None and p.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + self.settings.drain_seconds + HAND_BACK_GRACE
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


    def hurry(self) -> None:
        """A second SIGTERM to every live worker: each hands its running job back now instead of finishing it."""
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()


def restart_delay(lived: float, backoff: float) -> tuple[float, float]:
    """How long to wait before starting again what exited after living ``lived`` seconds, and the backoff to pass
    next time (``FIRST_BACKOFF`` at first): at once after a long life, else twice the last wait (up to
    ``MAX_BACKOFF``): something that dies soon after starting (bad model folder, database down...) is not started
    in a tight loop."""
    if lived > 60:
        return 0.0, FIRST_BACKOFF * 2
    backoff = min(MAX_BACKOFF, backoff * 2)
    return backoff, backoff


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it if the supervisor dies (even by SIGKILL).

    Linux ties this to the spawning *thread*; workers are spawned by the main thread and the watcher thread,
    both of which live as long as the supervisor does.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a worker outlives a SIGKILLed supervisor (stop() still ends it on a clean exit)
