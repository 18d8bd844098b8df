"""``pixgen serve``: the HTTP API plus N worker processes (restarted when they die); on SIGTERM it drains
(``draining_server.DrainingServer``)."""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from pixgen.settings import API_FLAGS, SERVICE_FLAGS, add_arguments, settings_from_args

log = logging.getLogger("pixgen.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the HTTP API and worker processes",
                                   description="Serve the job API, the Cloudflare and OpenAI forms and the web "
                                               "page, with --workers N model workers (default 1; 0 = API only).")
    add_arguments(parser, API_FLAGS + SERVICE_FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pixgen.api import create_app
    from pixgen.api.health import shutdown_state
    from pixgen.cli.draining_server import DrainingServer
    from pixgen.cli.header_timeout import http_protocol
    from pixgen.jobs.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = settings_from_args(args)
    app = create_app(settings)  # creates or upgrades the schema before any worker starts
    supervisor = Supervisor(settings, settings.workers)
    # Open SSE streams and Cloudflare-style waits get 5 s to finish on shutdown.
    # No access log: uvicorn formats each line's arguments even when the level filters it out.
    # A client gets --header-timeout seconds to send its request's headers (slow-loris: cli/header_timeout.py).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                            proxy_headers=True, timeout_graceful_shutdown=5,
                            http=http_protocol(settings.header_timeout))
    server = DrainingServer(config, supervisor, shutdown_state(app))
    # uvicorn re-raises the SIGTERM it caught once it has shut down; turn that into an exit that runs `finally`.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    supervisor.start()
    log.info("serving on http://%s:%d with %d worker(s); data in %s", settings.host, settings.port,
             settings.workers, settings.data_dir)
    try:
        server.run()
    finally:
        supervisor.stop()
    return 0


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
