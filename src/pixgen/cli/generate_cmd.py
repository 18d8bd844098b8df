"""`pixgen generate PROMPT -o OUT.mp4`: one video, in this process, no server.

Settings (the model, the toy model's cache folder) come as for ``serve`` and ``worker``: flags over ``PIXGEN_*``
environment variables over defaults, through ``pixgen.settings.load_settings``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from pixgen.core.progress import Progress
from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.engine.warmup import parse_warmup
from pixgen.errors import InvalidRequest, PixgenError
from pixgen.media.control_video import check_control_video, video_data_uri
from pixgen.media.images import data_uri_from_bytes
from pixgen.settings import add_arguments, load_settings

# The request fields the command line sets, one row each: (field, flags, argparse keywords). Each argument's dest
# is its field, so ``args.<field>`` holds it; errors name the field by its first flag. Absent (None) → the
# request's default.
REQUEST_OPTIONS: tuple[tuple[str, tuple[str, ...], dict], ...] = (
    ("duration", ("--duration",), {"type": int, "default": 5, "help": "seconds, 1..15 (default 5)"}),
    ("aspect_ratio", ("--aspect-ratio",), {"choices": ASPECT_RATIOS, "help": "default 16:9, or the image's own"}),
    ("quality", ("--quality",), {"choices": QUALITIES, "default": "720p"}),
    ("seed", ("--seed",), {"type": int, "help": "0..2147483647; drawn at random when absent"}),
    ("negative_prompt", ("--negative-prompt",), {"metavar": "TEXT"}),
    ("generate_audio", ("--no-audio",), {"action": "store_false", "help": "write no audio track"}),
    ("image_input", ("--image",), {"type": Path, "metavar": "FILE", "help": "start frame (PNG, JPEG or WebP)"}),
    ("end_image_input", ("--end-image",), {"type": Path, "metavar": "FILE", "help": "end frame; needs --image"}),
    ("style", ("--style",), {"default": "none"}),
    ("camera_movement", ("--camera", "--camera-movement"), {"metavar": "MOVEMENT"}),
    ("thinking_type", ("--thinking",), {"default": "auto", "metavar": "MODE", "help": "disabled | enabled | auto"}),
    ("multi_clip", ("--multi-clip",), {"action": "store_true"}),
    ("control_video", ("--control-video",), {"type": Path, "metavar": "FILE",
                                             "help": "an MP4 to follow (IC-LoRA); needs --control-type"}),
    ("control_type", ("--control-type",), {"metavar": "TYPE",
                                           "help": "depth, pose, canny, ...: a type the model folder has an "
                                                   "IC-LoRA for"}),
)
FLAG_FOR_FIELD = {field: flags[0] for field, flags, _ in REQUEST_OPTIONS} | {"keyframes": "--keyframe"}
IMAGE_FIELDS = ("image_input", "end_image_input")  # given as files, sent as data URIs
SETTINGS_FLAGS = ("model", "cache_dir", "device", "dtype", "memory", "compile", "attention_backend",
                  "step_cache", "fp8_compute", "overlap", "warmup")  # the settings generate uses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="make one video from a prompt (and optional start/end images)")
    p.add_argument("prompt", nargs="?", default="", help="what to generate")
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the MP4")
    for field, flags, keywords in REQUEST_OPTIONS:
        p.add_argument(*flags, dest=field, **keywords)
    p.add_argument("--keyframe", action="append", default=[], metavar="SECONDS=FILE",
                   help="a picture the video shows at that time (PNG, JPEG or WebP); up to 8, repeat the flag")
    add_arguments(p, SETTINGS_FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def request_from_args(args: argparse.Namespace) -> dict:
    """The request body the flags describe; image files become data URIs."""
    body: dict = {"prompt": args.prompt}
    for field, _, _ in REQUEST_OPTIONS:
        value = getattr(args, field)
        if value is None:
            continue
        if field in IMAGE_FIELDS:
            value = _data_uri(value, FLAG_FOR_FIELD[field])
        elif field == "control_video":
            value = _video_data_uri(value, FLAG_FOR_FIELD[field])
        body[field] = value
    if args.keyframe:
        body["keyframes"] = [_keyframe(spec) for spec in args.keyframe]
    return body


def _keyframe(spec: str) -> dict:
    """``SECONDS=FILE`` → ``{"image": data URI, "time": seconds}``."""
    seconds, sep, path = spec.partition("=")
    try:
        time_value = float(seconds)
    except ValueError:
        time_value = None
    if not sep or time_value is None:
        raise InvalidRequest(f"{spec!r} is not SECONDS=FILE (e.g. 2.5=lighthouse.png)", field="--keyframe")
    return {"image": _data_uri(Path(path), "--keyframe"), "time": time_value}


def parse_args_request(args: argparse.Namespace) -> VideoRequest:
    """The validated request, or ``InvalidRequest`` naming the flag the user typed rather than the field."""
    body = request_from_args(args)
    try:
        return parse_request(body)
    except InvalidRequest as exc:
        message = exc.message.removeprefix(f"{exc.field}: ")  # the field is named once, in the error's label
        field = (exc.field or "").split("[")[0]  # keyframes[1].time → the --keyframe flag
        raise InvalidRequest(_flags_for_fields(message), field=FLAG_FOR_FIELD.get(field, exc.field)) from None


_FIELD_NAMES = re.compile(r"\b(" + "|".join(sorted(FLAG_FOR_FIELD, key=len, reverse=True)) + r")\b")


def _flags_for_fields(message: str) -> str:
    """``end_image_input needs image_input`` → ``--end-image needs --image`` (validation messages hold no input)."""
    return _FIELD_NAMES.sub(lambda m: FLAG_FOR_FIELD[m.group(1)], message)


def _data_uri(path: Path, flag: str) -> str:
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a file", field=flag)
    return data_uri_from_bytes(path.read_bytes(), field=flag, name=str(path))


def _video_data_uri(path: Path, flag: str) -> str:
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a file", field=flag)
    uri = video_data_uri(path.read_bytes(), field=flag)
    check_control_video(uri, field=flag)
    return uri


class ProgressBar:
    """One line, redrawn in place: stage, a bar, and the denoising step."""

    def __init__(self, stream=sys.stderr, enabled: bool = True) -> None:
        self.stream, self.enabled = stream, enabled
        self.start = time.perf_counter()

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * p.percent / 100)
        detail = f"step {p.step}/{p.total}" if p.stage == "denoise" else f"{p.step}/{p.total}"
        line = (f"\r{p.stage:<8} [{'#' * filled}{'.' * (width - filled)}] {p.percent:3d}%  {detail:<14}"
                f"{time.perf_counter() - self.start:6.1f}s")
        self.stream.write(line)
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    request = parse_args_request(args)  # bad input fails before the model loads
    # Signs nothing, so no signing secret (and no ./data folder) is made.
    settings = load_settings({name: getattr(args, name) for name in SETTINGS_FLAGS}, secret=False)
    from pixgen.engine import load_engine

    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    bar(Progress("load", 0, 1))
    try:
        engine = load_engine(settings.model, cache_dir=settings.cache_dir, options=settings.engine_options())
    except PixgenError as exc:
        bar.done()
        if exc.field in SETTINGS_FLAGS:  # name where the setting came from: the flag, else its variable
            exc.field = _flag(exc.field) if getattr(args, exc.field) is not None else f"PIXGEN_{exc.field.upper()}"
        raise
    if parse_warmup(settings.warmup) and hasattr(engine, "warm_up"):  # one job: warm only the shapes named
        engine.warm_up(settings.warmup)
    try:
        result = engine.generate(request, args.output, on_progress=bar)
    finally:
        bar.done()
    print(result.summary())
    return 0


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
