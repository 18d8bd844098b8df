"""Multi-clip: the prompt split into shots, each generated on its own, joined with hard cuts into one video.

Splitting: ``pixgen.engine.shots.split_shots`` (text rules, not LTX-specific).

Timing (``plan_shots``): the ``duration × 24 + 1`` frames are shared as evenly as possible, shot ``i`` of ``k``
covering frames ``[round(i·T/k), round((i+1)·T/k))``. Each shot is generated with the smallest 8k+1 frame count
(LTX-2's rule) that holds its share, plus ``RUN_ON_FRAMES`` for every shot but the last (their sound carries the
crossfade past the cut: LTX-2's audio ends ~30 ms short of its frames), and cut to its share: the total is exact.

Seeds: shot ``i`` uses ``(seed + i × SEED_STRIDE) mod 2³¹``; shot 0 the request's own seed.

Audio (``join_audio``): LTX-2 makes each shot's sound with its picture; the shot sounds are laid end to end on the
video's clock with a ``CROSSFADE_SECONDS`` equal-power crossfade at each cut (the outgoing shot's sound runs that
long past the cut under the incoming one), so the track has no gap or click and is exactly as long as the video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pixgen.core.sizes import FPS
from pixgen.core.spec import MAX_SEED, VideoRequest
from pixgen.engine.shots import max_shots, split_shots
from pixgen.media.audio import CROSSFADE_SECONDS, crossfade

SEED_STRIDE = 1_000_003
FRAME_STEP = 8  # LTX-2 frame counts are 8k+1
RUN_ON_FRAMES = 3  # generated past a cut, dropped from the picture; ≥ 30 ms audio shortfall + CROSSFADE_SECONDS


@dataclass(frozen=True)
class Shot:
    index: int
    prompt: str  # the shot's text, before thinking and presets
    seed: int
    start_frame: int  # first frame of the shot in the joined video
    num_frames: int  # frames it contributes
    run_on: int = 0  # frames generated past its end (for the sound across the next cut)

    @property
    def gen_frames(self) -> int:
        """Frames to generate: the smallest 8k+1 count that holds ``num_frames + run_on``."""
        return generation_frames(self.num_frames + self.run_on)

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.num_frames

    def describe(self, prompt_used: str) -> dict[str, object]:
        """The fields of a ``GenerationResult.shots`` entry (``ShotInfo``): times in seconds on the video's clock."""
        return {"index": self.index, "prompt": prompt_used, "start": round(self.start_frame / FPS, 4),
                "end": round(self.end_frame / FPS, 4)}


def generation_frames(num_frames: int) -> int:
    return max(1, math.ceil((num_frames - 1) / FRAME_STEP) * FRAME_STEP + 1)


def shot_seed(seed: int, index: int) -> int:
    return (seed + index * SEED_STRIDE) % (MAX_SEED + 1)


def plan_shots(request: VideoRequest, num_frames: int | None = None) -> list[Shot]:
    """The shots of ``request`` (with a seed): one covering everything unless ``multi_clip`` is set; ``num_frames``
    when the video's length is not the request's duration (a soundtrack's)."""
    if request.seed is None:
        raise ValueError("plan_shots needs a request with a seed (VideoRequest.with_seed())")
    total = request.num_frames if num_frames is None else num_frames
    if not request.multi_clip:
        return [Shot(0, request.prompt, request.seed, 0, total)]
    texts = split_shots(request.prompt, max_shots(request.seconds))
    k = len(texts)
    bounds = [(2 * i * total + k) // (2 * k) for i in range(k)] + [total]  # round(i·T/k), half up
    return [Shot(i, text, shot_seed(request.seed, i), bounds[i], bounds[i + 1] - bounds[i],
                 RUN_ON_FRAMES if i < k - 1 else 0) for i, text in enumerate(texts)]


# -- audio -----------------------------------------------------------------------------------------------------
def shot_sample_lengths(shots: list[Shot], sample_rate: int, seconds: float) -> list[int]:
    """Audio samples per shot on the video's clock; they add up to ``seconds`` of audio exactly."""
    starts = [round(s.start_frame * sample_rate / FPS) for s in shots] + [round(seconds * sample_rate)]
    return [b - a for a, b in zip(starts, starts[1:])]


def crossfade_samples(sample_rate: int) -> int:
    return round(CROSSFADE_SECONDS * sample_rate)


def join_audio(segments: list[np.ndarray], lengths: list[int], fade: int) -> np.ndarray:
    """Shot sounds end to end, ``lengths[i]`` samples each, with an equal-power crossfade of ``fade`` samples after
    each cut. ``segments[i]`` (channels, n) should hold ``lengths[i] + fade`` samples (its sound just past the cut;
    the last needs only ``lengths[-1]``); what is missing counts as silence."""
    channels = segments[0].shape[0]
    out = np.zeros((channels, sum(lengths)), dtype=np.float32)
    offset = 0
    tail = None
    for segment, length in zip(segments, lengths):
        body = segment[:, :length]
        out[:, offset : offset + body.shape[1]] = body
        if tail is not None and tail.shape[1] and length:
            n = min(tail.shape[1], length)
            out[:, offset : offset + n] = crossfade(tail[:, :n], out[:, offset : offset + n])
        tail = segment[:, length : length + fade]
        offset += length
    return out
