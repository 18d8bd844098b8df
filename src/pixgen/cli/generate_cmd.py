"""`pixgen generate PROMPT -o OUT.mp4`: one video, in this process, no server."""

from __future__ import annotations

import argparse
import base64
import mimetypes
import sys
import time
from pathlib import Path

from pixgen.core.progress import Progress
from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES
from pixgen.core.spec import parse_request
from pixgen.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="make one video from a prompt (and optional start/end images)")
    p.add_argument("prompt", nargs="?", default="", help="what to generate")
    p.add_argument("-o", "--output", required=True, type=Path, help="where to write the MP4")
    p.add_argument("--duration", type=int, default=5, help="seconds, 1..15 (default 5)")
    p.add_argument("--aspect-ratio", choices=ASPECT_RATIOS, default=None, help="default 16:9, or the image's own")
    p.add_argument("--quality", choices=QUALITIES, default="720p")
    p.add_argument("--seed", type=int, default=None, help="0..2147483647; drawn at random when absent")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--no-audio", action="store_true", help="write no audio track")
    p.add_argument("--image", type=Path, default=None, help="start frame (PNG, JPEG or WebP)")
    p.add_argument("--end-image", type=Path, default=None, help="end frame; needs --image")
    p.add_argument("--style", default="none")
    p.add_argument("--camera", "--camera-movement", dest="camera_movement", default=None)
    p.add_argument("--thinking", default="auto", help="disabled | enabled | auto")
    p.add_argument("--multi-clip", action="store_true")
    p.add_argument("--model", default=None, help="tiny (default) or a diffusers-format LTX-2 folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def request_from_args(args: argparse.Namespace) -> dict:
    body: dict = {"prompt": args.prompt, "duration": args.duration, "quality": args.quality,
                  "generate_audio": not args.no_audio, "style": args.style, "thinking_type": args.thinking,
                  "multi_clip": args.multi_clip}
    for name in ("aspect_ratio", "seed", "negative_prompt", "camera_movement"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.image is not None:
        body["image_input"] = _data_uri(args.image, "image")
    if args.end_image is not None:
        body["end_image_input"] = _data_uri(args.end_image, "end_image")
    return body


def _data_uri(path: Path, field: str) -> str:
    if not path.is_file():
        raise InvalidRequest(f"{path} is not a file", field=field)
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


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
    request = parse_request(request_from_args(args))  # bad input fails before the model loads
    from pixgen.engine import load_engine

    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    bar(Progress("load", 0, 1))
    engine = load_engine(args.model)
    try:
        result = engine.generate(request, args.output, on_progress=bar)
    finally:
        bar.done()
    print(result.summary())
    return 0
