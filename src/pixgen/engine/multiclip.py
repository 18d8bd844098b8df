"""Multi-clip: the prompt split into shots, each generated on its own, joined with hard cuts into one video.

Splitting (``split_shots``):
- Explicit shots: "Shot 1: … Shot 2: …" (also "Scene N" / "Clip N", the number followed by ``:`` ``.`` ``)`` or a
  dash); text before the first label is shared context, put in front of every shot. Or "Cut to:" between shots.
- Otherwise by sentences (``.`` ``!`` ``?`` then a space, or a line break; "Mr." and the like do not split).
- One sentence only: the same scene in successive framings (wide, medium, close-up), so the video still cuts.
- At most ``MAX_SHOTS`` shots and at most one per whole second (every shot lasts at least 1 s): a 1 s video is
  one shot; surplus shots or sentences are merged, in order, into groups of near-equal count.

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
import re
from dataclasses import dataclass

import numpy as np

from pixgen.core.sizes import FPS
from pixgen.core.spec import MAX_SEED, VideoRequest

MAX_SHOTS = 4
MIN_SHOT_SECONDS = 1
SEED_STRIDE = 1_000_003
CROSSFADE_SECONDS = 0.05
FRAME_STEP = 8  # LTX-2 frame counts are 8k+1
RUN_ON_FRAMES = 3  # generated past a cut, dropped from the picture; ≥ 30 ms audio shortfall + CROSSFADE_SECONDS
FRAMINGS = ("Wide establishing shot", "Medium shot", "Close-up shot")

_SHOT_LABEL = re.compile(r"\b(?:shot|scene|clip)\s*#?\s*\d+\s*(?::|\.|\)|-|–|—)\s*", re.IGNORECASE)
_CUT_TO = re.compile(r"\bcut\s+to\s*(?::|-|–|—)\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_ABBREVIATIONS = ("mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.", "jr.", "sr.")


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
        """The entry of ``GenerationResult.extra["shots"]``: times in seconds on the video's clock."""
        return {"index": self.index, "prompt": prompt_used, "start": round(self.start_frame / FPS, 4),
                "end": round(self.end_frame / FPS, 4)}


def generation_frames(num_frames: int) -> int:
    return max(1, math.ceil((num_frames - 1) / FRAME_STEP) * FRAME_STEP + 1)


def shot_seed(seed: int, index: int) -> int:
    return (seed + index * SEED_STRIDE) % (MAX_SEED + 1)


def max_shots(duration: int) -> int:
    return max(1, min(MAX_SHOTS, duration // MIN_SHOT_SECONDS))


def plan_shots(request: VideoRequest) -> list[Shot]:
    """The shots of ``request`` (with a seed): one covering everything unless ``multi_clip`` is set."""
    if request.seed is None:
        raise ValueError("plan_shots needs a request with a seed (VideoRequest.with_seed())")
    total = request.num_frames
    if not request.multi_clip:
        return [Shot(0, request.prompt, request.seed, 0, total)]
    texts = split_shots(request.prompt, max_shots(request.duration))
    k = len(texts)
    bounds = [(2 * i * total + k) // (2 * k) for i in range(k)] + [total]  # round(i·T/k), half up
    return [Shot(i, text, shot_seed(request.seed, i), bounds[i], bounds[i + 1] - bounds[i],
                 RUN_ON_FRAMES if i < k - 1 else 0) for i, text in enumerate(texts)]


def split_shots(prompt: str, limit: int = MAX_SHOTS) -> list[str]:
    """The shot texts of ``prompt``, at most ``limit`` of them (rules in the module docstring)."""
    text = prompt.strip()
    if limit <= 1:
        return [_squash(text)]
    pieces = _SHOT_LABEL.split(text)
    if len(pieces) > 1:
        context = _squash(pieces[0])
        shots = [_squash(f"{context} {p}") for p in pieces[1:] if p.strip()]
        if shots:
            return _group(shots, limit)
    shots = [_squash(p) for p in _CUT_TO.split(text) if p.strip()]
    if len(shots) > 1:
        return _group(shots, limit)
    sentences = split_sentences(text)
    if len(sentences) <= 1:
        subject = sentences[0] if sentences else ""
        return [f"{framing}: {subject}" if subject else f"{framing}." for framing in FRAMINGS[:limit]]
    return _group(sentences, limit)


def split_sentences(text: str) -> list[str]:
    out: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        piece = _squash(piece)
        if not piece:
            continue
        if out and out[-1].lower().endswith(_ABBREVIATIONS):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _group(items: list[str], limit: int) -> list[str]:
    """``items`` in order, merged into at most ``limit`` contiguous groups of near-equal count."""
    if len(items) <= limit:
        return items
    base, extra = divmod(len(items), limit)
    groups, start = [], 0
    for i in range(limit):
        size = base + (1 if i < extra else 0)
        groups.append(" ".join(items[start : start + size]))
        start += size
    return groups


def _squash(text: str) -> str:
    return " ".join(text.split())


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
            t = (np.arange(n, dtype=np.float32) + 0.5) / n
            fade_in, fade_out = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)
            out[:, offset : offset + n] = out[:, offset : offset + n] * fade_in + tail[:, :n] * fade_out
        tail = segment[:, length : length + fade]
        offset += length
    return out
