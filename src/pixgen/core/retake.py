"""Retake: which frames of a finished video are regenerated, and the window of frames generated around them.

The API checks and snaps a range with this rule at submit time (so the job reports, and is charged for, the
range actually retaken); the engine runs the same rule on the source file. The numbers are the backend's
(``RetakeRule``, in its ``Capabilities.retake``): this module knows no model.

- ``[start, end)`` seconds is the frames ``[round(24·start), round(24·end))``; an end on the video's last frame
  takes the range to the end (the last frame included). At least one latent frame (``rule.frames_per_latent``
  frames), at most ``rule.max_seconds``.
- The window generated: up to ``rule.before_frames`` source frames just before the range (k·n+1: latents 0..k, the
  way an extension starts) pinned at latent index 0, then the range, then up to ``rule.after_frames`` single source
  frames after it (the first frame after the range, and one latent apart after that), each pinned at its own
  latent. The range must end where a latent ends: a range inside the video has its end moved later by less than a
  latent's frames. A range that reaches the video's end needs no frames after it and keeps its length.
- Everything outside the (snapped) range is the source's, frame for frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pixgen.core.sizes import FPS
from pixgen.errors import InvalidRequest


@dataclass(frozen=True)
class RetakeRule:
    """A backend's retake numbers (LTX-2's: 8 frames a latent, 17 frames before, 3 after, 15 s)."""

    frames_per_latent: int  # the latent clock: latent 0 is the first frame alone, each later one this many frames
    before_frames: int  # at most this many source frames before the range pin its start (k·frames_per_latent + 1)
    after_frames: int  # single source frames after the range, one latent apart
    max_seconds: int  # the longest range

    @property
    def min_frames(self) -> int:
        """The shortest range: one latent frame."""
        return self.frames_per_latent


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


def before_frames(start: int, rule: RetakeRule) -> int:
    """How many source frames before ``start`` pin the window's start: ``rule.before_frames``, the largest
    k·frames_per_latent + 1 there is, or 0."""
    n = rule.frames_per_latent
    return 0 if start == 0 else min(rule.before_frames, (start - 1) // n * n + 1)


def plan_window(num_frames: int, start: int, end: int, rule: RetakeRule) -> RetakeWindow:
    """The window that regenerates source frames ``[start, end)`` of a ``num_frames`` video (see the module)."""
    n = rule.frames_per_latent
    if end >= num_frames - 1:
        end = num_frames
    before = before_frames(start, rule)
    if end < num_frames:
        # The first frame after the range must start a latent: before + range ≡ 1 (mod n).
        end += (1 - before - (end - start)) % n
    if end >= num_frames - 1:
        end = num_frames
    if end == num_frames:  # to the end: generate k·n+1 frames, the ones past the video's end dropped
        gen = before + end - start
        gen += (1 - gen) % n
        return RetakeWindow(num_frames, start, end, before, (), 0, gen)
    after = tuple(f for f in range(end, end + rule.after_frames * n, n) if f < num_frames)
    after_latent = (before + end - start - 1) // n + 1
    gen = n * (after_latent + len(after) - 1) + 1
    return RetakeWindow(num_frames, start, end, before, after, after_latent, gen)


def plan_range(start: object, end: object, num_frames: int, rule: RetakeRule) -> RetakeWindow:
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
    first, stop, shortest = round(start * FPS), round(end * FPS), rule.min_frames
    if stop - first < shortest and not (stop >= num_frames - 1 and num_frames - first >= shortest):
        raise InvalidRequest(f"the range must be at least {shortest} frames ({shortest / FPS:.2f} s) long, "
                             f"end after start", field="end")
    window = plan_window(num_frames, first, stop, rule)
    if window.seconds > rule.max_seconds + 1 / FPS:
        raise InvalidRequest(f"the range is {window.seconds:g} s long; at most {rule.max_seconds} s can be "
                             f"retaken", field="end")
    return window
