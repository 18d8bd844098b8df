"""`pixgen retake SOURCE.mp4 --start S --end E --prompt TEXT -o OUT.mp4`: regenerate a time range of a video file,
in this process, no server. The range follows ``pixgen.core.retake``; the output is the whole video.

(On a server, the same is ``POST /api/v1/jobs/{id}/retake`` on a finished job.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av

from pixgen.cli.generate_cmd import ProgressBar
from pixgen.core.progress import Progress
from pixgen.core.retake import RetakeRule, RetakeWindow, plan_range
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.errors import InvalidRequest
from pixgen.settings import add_arguments, load_settings

SETTINGS_FLAGS = ("model", "cache_dir", "device", "dtype", "memory", "compile", "attention_backend", "step_cache")
FLAGS = {"start": "--start", "end": "--end", "prompt": "--prompt", "seed": "--seed", "video": "SOURCE"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retake", help="regenerate [start, end) seconds of a video, keeping the rest frame for frame")
    p.add_argument("source", type=Path, help="the MP4 to retake (24 fps)")
    p.add_argument("--start", type=float, required=True, help="seconds: the first moment regenerated")
    p.add_argument("--end", type=float, required=True, help="seconds: the first moment kept after the range")
    p.add_argument("--prompt", required=True, help="what the retaken range shows")
    p.add_argument("--seed", type=int, help="0..2147483647; drawn at random when absent")
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the whole new MP4")
    add_arguments(p, SETTINGS_FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check(args: argparse.Namespace, rule: RetakeRule) -> tuple[VideoRequest, RetakeWindow]:
    """The request and the planned range (by the backend's ``rule``), checked before the model loads; errors name
    the flag."""
    if not args.source.is_file():
        raise InvalidRequest(f"{args.source} is not a file", field="SOURCE")
    try:
        with av.open(str(args.source)) as container:
            frames = sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, IndexError):
        raise InvalidRequest(f"{args.source} is not a readable video", field="SOURCE") from None
    try:
        window = plan_range(args.start, args.end, frames, rule)
        body = {"prompt": args.prompt, "thinking_type": "disabled"}
        if args.seed is not None:
            body["seed"] = args.seed
        return parse_request(body), window
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, field=FLAGS.get(exc.field or "", exc.field)) from None


def run(args: argparse.Namespace) -> int:
    settings = load_settings({name: getattr(args, name) for name in SETTINGS_FLAGS}, secret=False)
    from pixgen.engine import backend, load_engine

    rule = backend().capabilities.retake  # the backend load_engine loads, read without loading it
    assert rule is not None, "the default backend retakes"
    request, window = check(args, rule)

    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    bar(Progress("load", 0, 1))
    engine = load_engine(settings.model, cache_dir=settings.cache_dir, options=settings.engine_options())
    try:
        result = engine.retake(args.source, request, args.start, args.end, args.output, on_progress=bar)
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, field=FLAGS.get(exc.field or "", exc.field)) from None
    finally:
        bar.done()
    print(f"retook {window.start_seconds:.3f}–{window.end_seconds:.3f} s: {result.summary()}")
    return 0
