"""New sound under a video's own frames: the source's video packets copied into a new MP4 (a remux, no re-encode)
beside a freshly encoded AAC track, so the picture is the source's bit for bit.

``read_sound_source`` is the look a sound-for-video job takes first (size, frame count, frame rate, the codec);
``replace_sound`` writes the result. No torch here: the engine hands over the waveform.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from pixgen.core.spec import VideoRequest
from pixgen.errors import InvalidRequest
from pixgen.media.control_video import MAX_PIXELS, decode_video_uri

FIELD = "video"  # the field named when a source video is refused
CODECS = ("h264",)  # the contract's video codec: the copied stream is the output's


@dataclass(frozen=True)
class SoundSource:
    """A video that gets new sound: what its video stream is, from its container and a count of its packets."""

    path: Path | None  # None: read from memory (a data URI checked at submit)
    width: int
    height: int
    num_frames: int
    fps: Fraction  # the stream's average frame rate
    codec: str

    @property
    def seconds(self) -> float:
        """The video's length as pixgen counts it, first frame to last: (frames - 1) / fps (a 5 s video of the
        contract has 121 frames)."""
        return float((self.num_frames - 1) / self.fps)

    @property
    def whole_seconds(self) -> int:
        """``seconds`` rounded up to whole seconds, at least 1: what a job's ``duration`` says and is charged."""
        return max(1, math.ceil(self.seconds - 1e-6))


def check_sound_video(uri: str, *, field: str = FIELD) -> SoundSource:
    """A ``video`` data URI checked at submit (400 naming ``field``): an MP4 within the byte limit (the control
    video's), within ``MAX_PIXELS``, that ``read_sound_source`` can remux, whose first frame decodes."""
    data = decode_video_uri(uri, field=field)
    facts = read_sound_source(io.BytesIO(data), field=field)
    if facts.width * facts.height > MAX_PIXELS:
        raise InvalidRequest(f"{field} is {facts.width}x{facts.height}; at most {MAX_PIXELS:,} pixels", field=field)
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            next(container.decode(container.streams.video[0]))
    except (StopIteration, av.error.FFmpegError, ValueError):
        raise InvalidRequest(f"{field} is not a readable MP4 video", field=field) from None
    return facts


def read_sound_source(path: Path | BinaryIO, *, field: str = FIELD) -> SoundSource:
    """The facts of ``path``'s first video stream; ``InvalidRequest`` naming ``field`` for what cannot be remuxed
    (not a readable MP4, no video, another codec than H.264, no frames)."""
    try:
        with av.open(path if not isinstance(path, Path | str) else str(path), mode="r") as container:
            if not container.streams.video:
                raise InvalidRequest(f"{field} has no video track", field=field)
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in CODECS:
                raise InvalidRequest(f"{field} is {codec}; new sound keeps the picture as it is, so it must be "
                                     f"H.264", field=field)
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = sum(1 for packet in container.demux(stream) if packet.size)
            rate = stream.average_rate or stream.guessed_rate or Fraction(24)
    except InvalidRequest:
        raise
    except (av.error.FFmpegError, ValueError, OSError):
        raise InvalidRequest(f"{field} is not a readable MP4 video", field=field) from None
    if frames < 1 or not width or not height:
        raise InvalidRequest(f"{field} has no frames", field=field)
    return SoundSource(Path(path) if isinstance(path, Path | str) else None, width, height, frames, Fraction(rate),
                       codec)


@contextmanager
def video_from_request(source: Path | None, request: VideoRequest, scratch: Path) -> Iterator[Path]:
    """The video a sound job works on as a file: ``source`` (a finished job's), or the request's ``video`` data URI
    written into ``scratch`` for the job's length (removed after)."""
    if source is not None:
        yield Path(source)
        return
    if request.video is None:
        raise InvalidRequest("new sound needs a video", field=FIELD)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".mp4", dir=scratch, delete=False) as file:
        file.write(decode_video_uri(request.video, field=FIELD))
    try:
        yield Path(file.name)
    finally:
        Path(file.name).unlink(missing_ok=True)


def replace_sound(source: Path, out_path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """``out_path``: ``source``'s video packets as they are (same bytes, same timestamps) and ``audio`` (float32
    (2, n) in [-1, 1]) as its one AAC track; the source's own sound, if any, is left out. Removed if it fails."""
    out_path = Path(out_path)
    samples = np.ascontiguousarray(np.clip(np.nan_to_num(np.asarray(audio, np.float32)), -1.0, 1.0))
    try:
        with av.open(str(source), mode="r") as src, \
                av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            video_in = src.streams.video[0]
            video_out = out.add_stream_from_template(video_in)
            sound = out.add_stream("aac", rate=sample_rate, layout="stereo")
            sound.time_base = Fraction(1, sample_rate)
            for packet in src.demux(video_in):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = video_out
                out.mux(packet)
            step = 1024 * 64
            for start in range(0, samples.shape[1], step):
                frame = av.AudioFrame.from_ndarray(samples[:, start:start + step], format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = sample_rate, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise


def video_packets(path: Path) -> list[tuple[bytes, int | None, int | None]]:
    """``(bytes, pts, dts)`` of every packet of ``path``'s first video stream, in file order (what a remux keeps)."""
    with av.open(str(path), mode="r") as container:
        stream = container.streams.video[0]
        return [(bytes(p), p.pts, p.dts) for p in container.demux(stream) if p.size]
