"""Output sizes of the contract and the model's 32-pixel generation grid."""

from __future__ import annotations

from fractions import Fraction

ASPECT_RATIOS: tuple[str, ...] = ("16:9", "4:3", "1:1", "3:4", "9:16", "2:3", "3:2", "21:9")
QUALITIES: tuple[str, ...] = ("360p", "540p", "720p", "1080p")
FPS = 24
GRID = 32  # LTX-2 needs width and height divisible by 32


def ratio_value(aspect_ratio: str) -> Fraction:
    w, h = aspect_ratio.split(":")
    return Fraction(int(w), int(h))


def output_size(aspect_ratio: str, quality: str) -> tuple[int, int]:
    """(width, height) of the contract: short edge = quality, long edge = short × ratio rounded to even."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"unknown aspect ratio {aspect_ratio!r}")
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}")
    short = int(quality[:-1])
    ratio = ratio_value(aspect_ratio)
    if ratio >= 1:
        return _round_even(short * ratio), short
    return short, _round_even(short / ratio)


def _round_even(x: Fraction) -> int:
    return int(2 * round(Fraction(x) / 2))


def grid_size(width: int, height: int, grid: int = GRID) -> tuple[int, int]:
    """The nearest size on the model's grid; the decoded frames are resized from it to (width, height)."""
    return max(grid, round(width / grid) * grid), max(grid, round(height / grid) * grid)


def num_frames(duration: int) -> int:
    """``duration × 24 + 1`` frames; always 8k+1 as LTX-2 requires."""
    return duration * FPS + 1


def frames_for_audio(seconds: float, longest: int = 15) -> int:
    """Frames of a video as long as a soundtrack of ``seconds``: its length rounded up to whole frames, plus the
    first frame (``(frames − 1) / 24`` s is the video's clock, as for ``num_frames``), at least 1 s and at most
    ``longest`` s."""
    import math

    spans = math.ceil(round(seconds * FPS, 3))  # round first: 2.0 s measured as 2.0000001 is still 48 frames
    return min(max(spans, FPS), longest * FPS) + 1


def whole_seconds(frames: int) -> int:
    """The whole seconds a video of ``frames`` spans (what a job's duration records)."""
    return -(-(frames - 1) // FPS)
def frames_duration(frames: int) -> float:
    """The seconds ``frames`` stand for on the contract's clock (``duration × 24 + 1`` frames): a duration chosen by
    the model (``duration: "auto"``, 8k+1 frames) need not be whole seconds."""
    return (frames - 1) / FPS


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The listed ratio nearest an image's own, compared on a log scale so 2:1 and 1:2 are equally far from 1:1."""
    import math

    own = math.log(width / height)
    return min(ASPECT_RATIOS, key=lambda r: abs(math.log(float(ratio_value(r))) - own))
