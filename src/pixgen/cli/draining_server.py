"""uvicorn's server with pixgen's shutdown order (``pixgen serve``).

On the first SIGTERM / Ctrl-C: readiness (``/health/ready``) answers 503 at once while every other route still
answers; the workers drain (each finishes its job within ``--drain-seconds``, else hands it back); once a readiness
probe has seen the 503 (when something probes at all) and the workers are done, the server stops accepting and
finishes the requests in flight. A second signal hurries: running jobs are handed back now and the server stops.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn

from pixgen.api.health import ShutdownState
from pixgen.jobs.supervisor import Supervisor

log = logging.getLogger("pixgen.serve")

# The longest the API keeps accepting after a shutdown began, waiting for a readiness probe to see the 503 (only
# when probes come at all: Kubernetes or a load balancer checks every few seconds).
READY_NOTICE_SECONDS = 10.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, supervisor: Supervisor, shutdown: ShutdownState) -> None:
        super().__init__(config)
        self.supervisor, self.shutdown_state = supervisor, shutdown
        self._drain_thread: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_thread is None:  # first signal: readiness off now, stop accepting once drained
            self.shutdown_state.begin()
            self._drain_thread = threading.Thread(target=self._drain, args=(sig,), name="pixgen-drain", daemon=True)
            self._drain_thread.start()
        else:  # again: jobs back to the queue now, and stop
            log.info("signal %d again: handing running jobs back and stopping now", sig)
            self.supervisor.hurry()
            super().handle_exit(sig, frame)

    def _drain(self, sig: int) -> None:
        log.info("shutting down: readiness answers 503; draining the workers (%g s for a running job)",
                 self.supervisor.settings.drain_seconds)
        workers = threading.Thread(target=self.supervisor.stop, name="pixgen-stop-workers", daemon=True)
        workers.start()
        if self.shutdown_state.probed.is_set() and not self.shutdown_state.seen.wait(READY_NOTICE_SECONDS):
            log.warning("no readiness probe came within %g s of the shutdown", READY_NOTICE_SECONDS)
        workers.join()
        log.info("workers stopped; no longer accepting connections")
        super().handle_exit(sig, None)
