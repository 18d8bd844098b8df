"""Where a job's frames are generated, and how the contract's exact size is cut out of them.

LTX-2 generates on a 32-pixel grid (64 for two-stage jobs, whose half-size stage 1 is on the 32 grid too). The
contract's sizes are not all on it (720p is 1280×720, 2:3 720p is 720×1080), so the generation size is the
smallest grid size that *covers* the output, and the output is its centre: frames are cropped, never stretched.

Conditioning images follow the same geometry: an image is fitted to the output size the way the contract says
(centre crop to the ratio, then resize), and the few pixels of border that the grid adds around it are filled by
mirroring its edges. The first output frame of an image-to-video job is then the image as fitted, not a slightly
zoomed or stretched copy, and an extension continues its source at exactly the source's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pixgen.core.sizes import GRID
from pixgen.media.images import fit_to_size


@dataclass(frozen=True)
class Geometry:
    width: int  # output
    height: int
    gen_width: int  # the (final-stage) generation size; covers the output
    gen_height: int
    two_stage: bool

    @property
    def left(self) -> int:
        return (self.gen_width - self.width) // 2

    @property
    def top(self) -> int:
        return (self.gen_height - self.height) // 2

    @property
    def stage_one_size(self) -> tuple[int, int]:
        """(width, height) of stage 1: half the generation size for two-stage jobs."""
        if self.two_stage:
            return self.gen_width // 2, self.gen_height // 2
        return self.gen_width, self.gen_height

    @property
    def full_size(self) -> tuple[int, int]:
        return self.gen_width, self.gen_height

    def describe(self) -> str:
        return f"{self.gen_width}x{self.gen_height}"

    def pad(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (F, height, width, 3) at the output size → (F, gen_height, gen_width, 3), the border mirrored."""
        bottom = self.gen_height - self.height - self.top
        right = self.gen_width - self.width - self.left
        return np.pad(frames, ((0, 0), (self.top, bottom), (self.left, right), (0, 0)), mode="symmetric")

    def condition_image(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """``image`` fitted to the output, its border mirrored out to the generation size, at ``size``
        (the generation size, or stage 1's half of it)."""
        fitted = np.asarray(fit_to_size(image.convert("RGB"), self.width, self.height))
        full = Image.fromarray(self.pad(fitted[None])[0])
        if full.size != size:
            full = full.resize(size, Image.Resampling.LANCZOS)
        return full


def plan_geometry(width: int, height: int, *, two_stage: bool) -> Geometry:
    """The smallest grid size covering ``width`` × ``height`` (on the 64 grid for two-stage jobs)."""
    unit = 2 * GRID if two_stage else GRID
    return Geometry(width, height, math.ceil(width / unit) * unit, math.ceil(height / unit) * unit, two_stage)
