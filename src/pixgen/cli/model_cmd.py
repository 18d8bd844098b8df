"""``pixgen model``: model folders. ``pixgen model tiny --out DIR`` builds the toy LTX-2 (random weights) into DIR;
``--generation 2.5`` the toy LTX-2.5 (with a duration head: ``duration: "auto"``)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("model", help="build or inspect model folders")
    sub = parser.add_subparsers(dest="model_command", required=True)
    tiny = sub.add_parser("tiny", help="build the toy-size LTX-2 (random weights, a few MB) into a folder")
    tiny.add_argument("--out", required=True, metavar="DIR", help="folder to build into (created)")
    tiny.add_argument("--generation", choices=("2.0", "2.5"), default="2.0",
                      help="2.0 (default), or 2.5: with LTX-2.5's duration head (duration \"auto\")")
    tiny.set_defaults(func=_tiny)


def _tiny(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pixgen.engine.ltx2.toy import build_tiny_model

    out = build_tiny_model(Path(args.out).expanduser(), args.generation)
    print(out.resolve())
    return 0
