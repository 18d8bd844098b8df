"""Control videos (``control_video``): an MP4 given as a data URI, checked at submit and read as frames by the engine.

At submit (API process, no torch): the bytes are an MP4 (``ftyp`` box) under ``MAX_CONTROL_VIDEO_BYTES`` that
PyAV opens, with a video stream within ``MAX_PIXELS`` whose first frame decodes. In the engine: ``read_frames``
samples it on the output's 24 fps clock (a shorter video holds its last frame, a longer one is cut) and fits each
frame to the generation size by centre crop, one frame in memory at a time before the fit.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

from pixgen.core.sizes import FPS
from pixgen.errors import InvalidRequest
from pixgen.media.images import decode_base64_uri, fit_to_size

FIELD = "control_video"
MAX_CONTROL_VIDEO_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
_DATA_URI = re.compile(r"^data:video/mp4;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ControlVideoFacts:
    width: int
    height: int
    seconds: float | None  # as the container says; None when it does not


def is_mp4(data: bytes) -> bool:
    """An ISO-BMFF file (MP4, MOV): its first box is ``ftyp``."""
    return len(data) >= 12 and data[4:8] == b"ftyp"


def video_data_uri(data: bytes, *, field: str = FIELD) -> str:
    """MP4 bytes (typed by their bytes, not a declared type) as a ``data:video/mp4;base64,...`` URI."""
    if not is_mp4(data):
        raise InvalidRequest(f"{field} is not an MP4 video", field=field)
    return "data:video/mp4;base64," + base64.b64encode(data).decode("ascii")


def decode_video_uri(uri: str, *, field: str = FIELD) -> bytes:
    data = decode_base64_uri(uri, _DATA_URI, "data:video/mp4;base64,...", MAX_CONTROL_VIDEO_BYTES, field=field)
    if not is_mp4(data):
        raise InvalidRequest(f"{field} is not an MP4 video", field=field)
    return data


def check_control_video(uri: str, *, field: str = FIELD) -> ControlVideoFacts:
    """Refuse (400 naming ``field``) what the engine could not read: not MP4, no video, too many pixels, undecodable."""
    data = decode_video_uri(uri, field=field)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidRequest(f"{field} has no video track", field=field)
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height or width * height > MAX_PIXELS:
                raise InvalidRequest(f"{field} is {width}x{height}; at most {MAX_PIXELS:,} pixels", field=field)
            next(container.decode(stream))
            seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    except InvalidRequest:
        raise
    except (StopIteration, av.error.FFmpegError, ValueError):
        raise InvalidRequest(f"{field} is not a readable MP4 video", field=field) from None
    return ControlVideoFacts(width, height, seconds)


def read_frames(uri: str, num_frames: int, size: tuple[int, int], *, field: str = FIELD) -> np.ndarray:
    """``num_frames`` uint8 RGB frames (F, H, W, 3) at ``size`` (width, height): output frame ``i`` is the control
    video's frame showing at ``i / 24`` s (its last one once it has ended)."""
    return read_frames_from(io.BytesIO(decode_video_uri(uri, field=field)), num_frames, size, field=field)


def read_frames_from(file: BinaryIO | str, num_frames: int, size: tuple[int, int], *,
                     field: str = FIELD) -> np.ndarray:
    """``read_frames`` of an MP4 file (a path, or one in memory)."""
    out = np.empty((num_frames, size[1], size[0], 3), np.uint8)
    filled, shown, fitted = 0, None, None  # shown: the source frame on screen; fitted: it at ``size``, once needed
    eps = 0.25 / FPS
    try:
        with av.open(file, mode="r") as container:
            stream = container.streams.video[0]
            for index, frame in enumerate(container.decode(stream)):
                pts, base = frame.pts, stream.time_base
                when = float(pts * base) if pts is not None and base is not None else index / FPS
                while shown is not None and filled < num_frames and filled / FPS < when - eps:
                    if fitted is None:
                        fitted = np.asarray(fit_to_size(shown.to_image(), *size))
                    out[filled] = fitted
                    filled += 1
                if filled == num_frames:
                    break
                shown, fitted = frame, None
    except (av.error.FFmpegError, ValueError):
        raise InvalidRequest(f"{field} is not a readable MP4 video", field=field) from None
    if shown is None:
        raise InvalidRequest(f"{field} has no frames", field=field)
    if filled < num_frames:
        out[filled:] = fitted if fitted is not None else np.asarray(fit_to_size(shown.to_image(), *size))
    return out
