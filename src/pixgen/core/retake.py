"""Retake: which frames of a finished video are regenerated, and the window of frames generated around them.

The API checks and snaps a range with this rule at submit time (so the job reports, and is charged for, the
range actually retaken); the engine runs the same rule on the source file.

- ``[start, end)`` seconds is the frames ``[round(24·start), round(24·end))``; an end on the video's last frame
  takes the range to the end (the last frame included). At least ``MIN_FRAMES`` frames (one latent frame), at most
  ``MAX_SECONDS``.
- The window generated: up to 17 source frames just before the range (8k+1: latents 0..k, the way an extension
  starts) pinned at latent index 0, then the range, then up to three single source frames after it (the first
  frame after the range, 8 and 16 frames later), each pinned at its own latent. LTX-2's latents hold 8 frames, so
  the range must end where a latent ends: a range inside the video has its end moved later by at most 7 frames
  (0.29 s). A range that reaches the video's end needs no frames after it and keeps its length.
- Everything outside the (snapped) range is the source's, frame for frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pixgen.core.keyframes import FRAMES_PER_LATENT
from pixgen.core.sizes import FPS
from pixgen.errors import InvalidRequest

BEFORE_FRAMES = 17  # 8k+1: the source frames before the range that the window starts from
AFTER_FRAMES = 3  # single frames after the range, one latent apart
MIN_FRAMES = FRAMES_PER_LATENT  # one latent frame
MAX_SECONDS = 15  # as long as one generation


@dataclass(frozen=True)
class RetakeWindow:
    num_frames: int  # the source's
    start: int  # first frame regenerated
    end: int  # first frame kept after the range (``num_frames``: to the end)
    before: int  # source frames [start - before, start) pinned at latent 0 (0: none, the range starts the video)
    after: tuple[int, ...]  # source frames pinned after the range, at latents after_latent, after_latent + 1, ...
    after_latent: int  # the latent of the first of ``after``
    gen_frames: int  # frames generated (8k+1): before + range + what the frames after need

    @property
    def window_start(self) -> int:
        """The source frame the window's first frame stands for."""
        return self.start - self.before

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def start_seconds(self) -> float:
        return self.start / FPS

    @property
    def end_seconds(self) -> float:
        """The range's end on the video's clock; a range to the end ends on the last frame's time."""
        return (min(self.end, self.num_frames - 1)) / FPS

    @property
    def seconds(self) -> float:
        return self.frames / FPS


def before_frames(start: int) -> int:
    """How many source frames before ``start`` pin the window's start: 17, the largest 8k+1 there is, or 0."""
    return 0 if start == 0 else min(BEFORE_FRAMES, (start - 1) // FRAMES_PER_LATENT * FRAMES_PER_LATENT + 1)


def plan_window(num_frames: int, start: int, end: int) -> RetakeWindow:
    """The window that regenerates source frames ``[start, end)`` of a ``num_frames`` video (see the module)."""
    if end >= num_frames - 1:
        end = num_frames
    before = before_frames(start)
    if end < num_frames:
        # The first frame after the range must start a latent: before + range ≡ 1 (mod 8).
        end += (1 - before - (end - start)) % FRAMES_PER_LATENT
    if end >= num_frames - 1:
        end = num_frames
    if end == num_frames:  # to the end: generate 8k+1 frames, the ones past the video's end dropped
        gen = before + end - start
        gen += (1 - gen) % FRAMES_PER_LATENT
        return RetakeWindow(num_frames, start, end, before, (), 0, gen)
    after = tuple(f for f in range(end, end + AFTER_FRAMES * FRAMES_PER_LATENT, FRAMES_PER_LATENT)
                  if f < num_frames)
    after_latent = (before + end - start - 1) // FRAMES_PER_LATENT + 1
    gen = FRAMES_PER_LATENT * (after_latent + len(after) - 1) + 1
    return RetakeWindow(num_frames, start, end, before, after, after_latent, gen)


def plan_range(start: object, end: object, num_frames: int) -> RetakeWindow:
    """Check ``start`` / ``end`` (seconds) against a ``num_frames`` video and plan its window; ``InvalidRequest``
    naming ``start`` or ``end`` otherwise."""
    seconds = (num_frames - 1) / FPS
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"{name} must be a number of seconds", field=name)
    assert isinstance(start, (int, float)) and isinstance(end, (int, float))
    if not 0 <= start < seconds:
        raise InvalidRequest(f"start must be 0 to {seconds:g} s (the video's length), before end", field="start")
    if end > seconds + 0.5 / FPS:
        raise InvalidRequest(f"end is {end:g} s, past the video's end ({seconds:g} s)", field="end")
    first, stop = round(start * FPS), round(end * FPS)
    if stop - first < MIN_FRAMES and not (stop >= num_frames - 1 and num_frames - first >= MIN_FRAMES):
        raise InvalidRequest(f"the range must be at least {MIN_FRAMES} frames ({MIN_FRAMES / FPS:.2f} s) long, "
                             f"end after start", field="end")
    window = plan_window(num_frames, first, stop)
    if window.seconds > MAX_SECONDS + 1 / FPS:
        raise InvalidRequest(f"the range is {window.seconds:g} s long; at most {MAX_SECONDS} s can be retaken",
                             field="end")
    return window
