"""Extend: the pieces of continuing a finished video that do not need the model.

The rule (``LTX2Engine.extend`` runs it):
- The source's last ``context_frames(N)`` frames (17, or the largest 8k+1 that the source has when it is shorter)
  condition ``LTX2ConditionPipeline`` at latent index 0, and ``context + duration × 24`` frames are generated
  (8k+1, as LTX-2 needs). The first ``context`` generated frames re-draw the source's last frames; they are
  dropped and the other ``duration × 24`` appended.
- The result is the whole video: ``N + duration × 24`` frames at the source's own size (the request's
  ``aspect_ratio`` and ``quality`` do not apply), the source frames re-encoded as they decode.
- Audio: the source's audio, then the new audio from the same moment on the generated clock, with a short
  equal-power crossfade into the join (``stitch_audio``): ``(N + duration × 24 − 1) / 24`` s in all. A source
  without audio counts as silence; with ``generate_audio`` false the new part is silent, and the result has no
  audio track only when the source has none either.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pixgen.core.sizes import FPS
from pixgen.errors import InvalidRequest
from pixgen.media.audio import crossfade
from pixgen.media.mp4 import fit_audio

CONTEXT_FRAMES = 17  # 8k+1: the source frames the continuation is conditioned on
SOURCE_FIELD = "video"  # the field named when the source video is refused


@dataclass(frozen=True)
class SourceVideo:
    path: Path
    width: int
    height: int
    num_frames: int
    tail: np.ndarray  # uint8 (context, H, W, 3): the last frames, oldest first
    audio: np.ndarray | None  # float32 (2, n) at the engine's sample rate, (num_frames - 1) / FPS s; None: no track

    @property
    def seconds(self) -> float:
        return (self.num_frames - 1) / FPS


def context_frames(num_frames: int) -> int:
    """How many of the source's last frames condition the continuation: 17, or the largest 8k+1 it has."""
    if num_frames < 1:
        raise InvalidRequest("the source video has no frames", field=SOURCE_FIELD)
    return min(CONTEXT_FRAMES, (num_frames - 1) // 8 * 8 + 1)


def read_source(path: Path, *, sample_rate: int) -> SourceVideo:
    """One pass over ``path``: size, frame count, the last frames, and the audio resampled to ``sample_rate``."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = source_stream(container, "extended")
            tail: deque[np.ndarray] = deque(maxlen=CONTEXT_FRAMES)
            count = 0
            for frame in container.decode(stream):
                tail.append(frame.to_ndarray(format="rgb24"))
                count += 1
        audio = read_audio_track(path, sample_rate)
    except av.FFmpegError as exc:
        raise InvalidRequest(f"the source video cannot be read: {exc}", field=SOURCE_FIELD) from exc
    if count == 0:
        raise InvalidRequest("the source video has no frames", field=SOURCE_FIELD)
    context = context_frames(count)
    frames = np.stack(list(tail)[-context:])
    height, width = frames.shape[1:3]
    if audio is not None:
        audio = fit_audio(audio, sample_rate, (count - 1) / FPS)
    return SourceVideo(path, width, height, count, frames, audio)


def source_stream(container: av.container.InputContainer, verb: str) -> av.video.stream.VideoStream:
    """The source's video stream; a video without one, or not at pixgen's frame rate, cannot be ``verb``."""
    if not container.streams.video:
        raise InvalidRequest("the source has no video track", field=SOURCE_FIELD)
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if abs(fps - FPS) > 0.01:
        raise InvalidRequest(f"the source video runs at {fps:g} fps; only {FPS} fps videos can be {verb}",
                             field=SOURCE_FIELD)
    return stream


def read_audio_track(path: Path, sample_rate: int) -> np.ndarray | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(container.streams.audio[0]):
            chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else np.zeros((2, 0), np.float32)


def iter_source_frames(path: Path, batch: int = 8, *, start: int = 0,
                       stop: int | None = None) -> Iterator[np.ndarray]:
    """The source's frames ``[start, stop)`` again, uint8 (n ≤ batch, H, W, 3), a few at a time (memory stays
    flat)."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if stop is not None and i >= stop:
                break
            if i >= start:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == batch:
                    yield np.stack(frames)
                    frames = []
    if frames:
        yield np.stack(frames)


def stitch_audio(source: np.ndarray, new: np.ndarray, *, start: int, length: int, fade: int) -> np.ndarray:
    """``source`` then ``new[start : start + length]``; the last ``fade`` samples of the source are crossfaded
    (equal power) with the ``fade`` samples of ``new`` just before ``start``, the same moment on its clock."""
    channels = source.shape[0]
    needed = start + length
    if new.shape[1] < needed:
        new = np.pad(new, ((0, 0), (0, needed - new.shape[1])))
    out = np.concatenate([source, new[:, start:needed]], axis=1).astype(np.float32)
    n = min(fade, start, source.shape[1])
    if n:
        join = source.shape[1]
        out[:, join - n : join] = crossfade(source[:, -n:], new[:channels, start - n : start])
    return out
