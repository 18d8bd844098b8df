"""``pixgen worker``: one more worker process, on this machine or any other that reaches the database and media."""

from __future__ import annotations

import argparse
import logging

from pixgen.settings import SERVICE_FLAGS, add_arguments, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run one model worker",
                                   description="Load the model once, then claim and run jobs until SIGTERM; then "
                                               "claim no more and finish the running job within --drain-seconds, "
                                               "else hand it back.")
    add_arguments(parser, SERVICE_FLAGS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pixgen.jobs.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_worker(settings_from_args(args))
