"""`pixgen` command line: one module per sub-command, each exposing ``register(subparsers)``.

A sub-command's ``register`` adds its parser and sets ``func`` (called with the parsed args, returns an exit code).
Heavy imports (torch, the model) happen inside ``func``, so ``pixgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from pixgen.cli import generate_cmd, keys_cmd, model_cmd, serve_cmd, status_cmd, webhooks_cmd, worker_cmd
from pixgen.errors import PixgenError

SUBCOMMANDS = (generate_cmd, model_cmd, serve_cmd, worker_cmd, keys_cmd, status_cmd, webhooks_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixgen", description="Self-hosted text/image-to-video with sound.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PixgenError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"pixgen: error{where}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
