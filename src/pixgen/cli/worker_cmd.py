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
    from pixgen.jobs.group import leave
    from pixgen.jobs.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # ``pixgen worker`` is a process of its own (it runs until a signal): once it has stopped (its job finished or
    # handed back, its row marked stopped, the database let go), it exits without the interpreter's teardown of
    # torch and diffusers, a second or more that a stopping ``pixgen serve`` (or a restart) would wait for.
    leave(run_worker(settings_from_args(args)))
