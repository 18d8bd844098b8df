"""Retake: reading what a retake needs from its source, and splicing the new sound in (no model here).

The rule of the window is ``pixgen.core.retake``; ``LTX2Engine.retake`` runs it. Frames outside the range are the
source's decoded frames, handed to the encoder as they decode (``extend.iter_source_frames``); the sound outside
the range is the source's sample for sample, the new sound inside it, with an equal-power crossfade just inside
each join (``splice_audio``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pixgen.core.retake import RetakeWindow, plan_range
from pixgen.core.sizes import FPS
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.engine.ltx2.extend import SOURCE_FIELD, read_audio_track, source_stream
from pixgen.errors import InvalidRequest
from pixgen.media.audio import crossfade
from pixgen.media.mp4 import fit_audio


@dataclass(frozen=True)
class RetakeSource:
    path: Path
    width: int
    height: int
    window: RetakeWindow
    before: np.ndarray | None  # uint8 (window.before, H, W, 3): the frames just before the range
    after: tuple[np.ndarray, ...]  # uint8 (H, W, 3): the frames window.after
    audio: np.ndarray | None  # float32 (2, n) at the engine's rate, (num_frames - 1) / FPS s; None: no track


def read_retake_source(path: Path, start: float, end: float, *, sample_rate: int) -> RetakeSource:
    """Count the source's frames, plan the window for ``[start, end)`` s, and keep the frames it pins and the
    sound (two passes over the file; memory holds only the pinned frames)."""
    path = Path(path)
    try:
        num_frames, width, height = _count_frames(path)
        assert LTX2_CAPABILITIES.retake is not None
        window = plan_range(start, end, num_frames, LTX2_CAPABILITIES.retake)
        wanted = set(range(window.window_start, window.start)) | set(window.after)
        kept = {i: f for i, f in enumerate_frames(path, wanted)}
        audio = read_audio_track(path, sample_rate)
    except av.FFmpegError as exc:
        raise InvalidRequest(f"the source video cannot be read: {exc}", field=SOURCE_FIELD) from None
    before = np.stack([kept[i] for i in range(window.window_start, window.start)]) if window.before else None
    if audio is not None:
        audio = fit_audio(audio, sample_rate, (num_frames - 1) / FPS)
    return RetakeSource(path, width, height, window, before, tuple(kept[i] for i in window.after), audio)


def _count_frames(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        stream = source_stream(container, "retaken")
        count = sum(1 for packet in container.demux(stream) if packet.size)  # the flush packet is empty
        return count, stream.codec_context.width, stream.codec_context.height


def enumerate_frames(path: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, rgb frame)`` for the source frames whose index is in ``wanted``."""
    last = max(wanted, default=-1)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i > last:
                return
            if i in wanted:
                yield i, frame.to_ndarray(format="rgb24")


def splice_audio(source: np.ndarray, new: np.ndarray, *, start: int, end: int, offset: int,
                 fade: int) -> np.ndarray:
    """``source`` with samples ``[start, end)`` taken from ``new``, whose first sample is sample ``offset`` of the
    source's clock. The first and last ``fade`` samples of the range are equal-power crossfades (source into new,
    new into source), so neither join clicks and every sample outside the range is the source's."""
    out = source.astype(np.float32, copy=True)
    needed = end - offset
    if new.shape[1] < needed:
        new = np.pad(new, ((0, 0), (0, needed - new.shape[1])))
    piece = new[: out.shape[0], start - offset : end - offset].astype(np.float32, copy=True)
    n = min(fade, (end - start) // 2)
    if n and start > 0:
        piece[:, :n] = crossfade(out[:, start : start + n], piece[:, :n])
    if n and end < out.shape[1]:
        piece[:, -n:] = crossfade(piece[:, -n:], out[:, end - n : end])
    out[:, start:end] = piece
    return out
