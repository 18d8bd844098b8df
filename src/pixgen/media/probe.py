"""Reading an MP4 back: the facts a test or a user checks (codec, size, frames, audio length)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Mp4Facts:
    video_codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    num_frames: int
    audio_codec: str | None = None  # the audio fields: None without an audio track
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_seconds: float | None = None

    @property
    def video_seconds(self) -> float:
        return self.num_frames / self.fps


def probe(path: Path | str) -> Mp4Facts:
    """Decode the whole file once and count what is really there (not what the header claims)."""
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(vstream))
        rate = vstream.average_rate or vstream.guessed_rate
        if rate is None:
            raise ValueError(f"{path}: the video stream has no frame rate")
        video = Mp4Facts(video_codec=vstream.codec_context.name, pix_fmt=vstream.codec_context.pix_fmt or "",
                         width=vstream.codec_context.width, height=vstream.codec_context.height, fps=float(rate),
                         num_frames=frames)
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return video
        astream = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(astream))
        return replace(video, audio_codec=astream.codec_context.name, audio_sample_rate=astream.rate,
                       audio_channels=astream.codec_context.channels, audio_seconds=samples / astream.rate)


def read_frames(path: Path | str) -> np.ndarray:
    """All frames as uint8 RGB (N, H, W, 3); for tests on short clips."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_audio(path: Path | str) -> np.ndarray | None:
    """The decoded audio track as float32 (channels, n), or None when the file has none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        return np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)


def first_frame(path: Path | str) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path} has no video frames")
