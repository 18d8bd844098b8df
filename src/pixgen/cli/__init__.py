"""`pixgen` command line: one module per sub-command, each exposing ``register(subparsers)``.

A sub-command's ``register`` adds its parser and sets ``func`` (called with the parsed args, returns an exit code).
Heavy imports (torch, the model) happen inside ``func``, so ``pixgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pixgen.errors import PixgenError

SUBCOMMANDS = ("generate", "model", "serve", "worker", "keys", "status")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixgen", description="Self-hosted text/image-to-video with sound.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"pixgen.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"pixgen.cli.{name}_cmd":
                continue  # sub-command not built yet
            raise
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
