"""`pixgen generate PROMPT -o OUT.mp4`: one video, in this process, no server.

Settings (the model, the toy model's cache folder) come as for ``serve`` and ``worker``: flags over ``PIXGEN_*``
environment variables over defaults, through ``pixgen.settings.load_settings``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pixgen.core.fields import Flag, Media, choices, item_model, role_of, roles, scalar_type
from pixgen.core.keyframes import check_keyframe_latents
from pixgen.core.progress import Progress
from pixgen.core.spec import VideoRequest, parse_request
from pixgen.engine import backend
from pixgen.engine.warmup import parse_warmup
from pixgen.errors import InvalidRequest, PixgenError
from pixgen.media.kinds import kind as kind_of
from pixgen.settings import add_arguments, load_settings

# The request fields the command line sets: each field's ``Role.cli`` (``core/fields.py``). Each argument's dest is
# its field, so ``args.<field>`` holds it; errors name the field by its first flag. Absent (None) → the request's
# default.
FLAGS: dict[str, Flag] = {name: role.cli for name, role in roles(VideoRequest).items() if role.cli is not None}
FLAG_FOR_FIELD = {field: flag.name for field, flag in FLAGS.items()}
SETTINGS_FLAGS = ("model", "cache_dir", "device", "dtype", "memory", "compile", "attention_backend",
                  "step_cache", "fp8_compute", "overlap", "warmup", "gpus", "parallel", "guidance_parallel",
                  "sequence_exchange", "collective_timeout")  # the settings generate uses


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="make one video from a prompt (and optional start/end images)")
    p.add_argument("prompt", nargs="?", default="", help="what to generate")
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the MP4")
    for field, flag in FLAGS.items():
        p.add_argument(*flag.flags, dest=field, default=None, **_argument(VideoRequest.model_fields[field], flag))
    add_arguments(p, SETTINGS_FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _argument(info: FieldInfo, flag: Flag) -> dict[str, Any]:
    """argparse keywords for a field's flag, from the field's own type: a switch for a boolean, an integer for an
    integer, a FILE for media, one ``KEY=FILE`` per repeat for a field of items."""
    values = choices(info)
    help_text = flag.help + (f" ({' | '.join(map(str, values))})" if values else "")
    keywords: dict[str, Any] = {"help": help_text}
    kind = scalar_type(info)
    if kind is bool:
        keywords["action"] = "store_false" if flag.negate else "store_true"
        return keywords
    if item_model(info) is not None:
        keywords["action"] = "append"
    elif role_of(info).media is not None:
        keywords["type"] = Path
    elif kind in (int, float):
        keywords["type"] = kind
    keywords["metavar"] = flag.metavar or ("FILE" if role_of(info).media is not None else None)
    return keywords


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The request body the flags describe; media files become data URIs of their kind."""
    body: dict[str, Any] = {"prompt": args.prompt}
    for field, flag in FLAGS.items():
        value = getattr(args, field)
        if value is None:
            continue
        info = VideoRequest.model_fields[field]
        inner, media = item_model(info), role_of(info).media
        if inner is not None:
            value = [_item(inner, spec, flag) for spec in value]
        elif media is not None:
            value = _file_data_uri(Path(value), media, flag.name)
        body[field] = value
    return body


def _item(model: type[BaseModel], spec: str, flag: Flag) -> dict[str, Any]:
    """``KEY=FILE`` → one item of ``model``: FILE fills its media field, KEY its first other required field
    (``SECONDS=FILE`` → ``{"image": data URI, "time": seconds}``)."""
    media_field = next(name for name, role in roles(model).items() if role.media is not None)
    key_field = next(name for name, info in model.model_fields.items()
                     if info.is_required() and name != media_field)
    key, sep, path = spec.partition("=")
    kind = scalar_type(model.model_fields[key_field]) or str
    try:
        key_value = kind(key)
    except ValueError:
        key_value = None
    if not sep or key_value is None:
        example = f" (e.g. {flag.example})" if flag.example else ""
        raise InvalidRequest(f"{spec!r} is not {flag.metavar}{example}", field=flag.name)
    media = roles(model)[media_field].media
    assert media is not None
    return {media_field: _file_data_uri(Path(path), media, flag.name), key_field: key_value}


def parse_args_request(args: argparse.Namespace) -> VideoRequest:
    """The validated request, or ``InvalidRequest`` naming the flag the user typed rather than the field. Keyframes
    are checked on the latent clock of the backend ``run`` loads (its capabilities, read without loading it)."""
    body = request_from_args(args)
    try:
        request = parse_request(body)
        if request.keyframes:
            check_keyframe_latents(request.keyframes, request.seconds, backend().capabilities.frames_per_latent,
                                   start_image=request.image_input is not None,
                                   end_image=request.end_image_input is not None)
        return request
    except InvalidRequest as exc:
        message = exc.message.removeprefix(f"{exc.field}: ")  # the field is named once, in the error's label
        field = (exc.field or "").split("[")[0]  # keyframes[1].time → the --keyframe flag
        raise InvalidRequest(_flags_for_fields(message), field=FLAG_FOR_FIELD.get(field, exc.field)) from None


_FIELD_NAMES = re.compile(r"\b(" + "|".join(sorted(FLAG_FOR_FIELD, key=len, reverse=True)) + r")\b")


def _flags_for_fields(message: str) -> str:
    """``end_image_input needs image_input`` → ``--end-image needs --image`` (validation messages hold no input)."""
    return _FIELD_NAMES.sub(lambda m: FLAG_FOR_FIELD[m.group(1)], message)


def _file_data_uri(path: Path, media: Media, flag: str) -> str:
    """A media file as a data URI of its kind (typed by its bytes; a video also opened), or 400 naming the flag."""
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a file", field=flag)
    return kind_of(media, flag).from_bytes(path.read_bytes(), flag, str(path))


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

    if settings.gpu_list:  # --gpus N: that GPU only, before CUDA starts
        from pixgen.jobs.gpus import worker_environment

        os.environ.update(worker_environment(settings.gpus, os.environ))
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    bar(Progress("load", 0, 1))
    if settings.ranks > 1:  # one video over several GPUs (or CPU processes): this process is rank 0
        from pixgen.jobs.group import generate_over_group

        try:
            result = generate_over_group(settings, request, args.output, bar)
        finally:
            bar.done()
        print(result.summary())
        return 0
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
