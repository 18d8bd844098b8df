"""The early preview of a two-stage job: stage 1's latents, decoded at half size into a small silent MP4.

Why this draft: a two-stage job has, after stage 1, latents of the whole video at half the generation size. The
refine only sharpens them (few steps from a low noise level), so their decode shows the final's motion and layout.
Decoding them costs a VAE decode at a quarter of the final's pixels plus an encode of a quarter-size video, and
nothing is re-run. One-stage qualities get no preview: their only cheap picture would be an x0 guess from the middle
of denoising, which shows a blur rather than the video.

Multi-shot jobs preview their first shot (the first stage 1 to finish), not the whole video.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pixgen.engine.base import Preview
from pixgen.engine.ltx2.decode import Crop
from pixgen.engine.ltx2.geometry import Geometry
from pixgen.media.mp4 import Mp4Writer

PREVIEW_CRF = 28  # a draft: small beats sharp


def preview_path(out_path: Path) -> Path:
    """Where the draft of ``out_path`` is written: beside it, ``<stem>-preview.mp4``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}-preview.mp4")


def preview_crop(geometry: Geometry) -> Crop:
    """The output's place in stage 1's half-size frames, width and height even (yuv420p)."""
    width, height = geometry.width // 2 // 2 * 2, geometry.height // 2 // 2 * 2
    return Crop(geometry.left // 2, geometry.top // 2, width, height)


def write_preview(path: Path, crop: Crop, frames: Iterable[np.ndarray], *, num_frames: int) -> Preview:
    """Encode the uint8 frame chunks (``stream_frames``) into ``path``: at most ``num_frames`` frames, no sound."""
    with Mp4Writer(path, crop.width, crop.height, crf=PREVIEW_CRF) as writer:
        for chunk in frames:
            left = num_frames - writer.frames_written
            writer.write_frames(chunk[:left])
            if writer.frames_written >= num_frames:
                break
        written = writer.frames_written
    return Preview(path=Path(path), width=crop.width, height=crop.height, num_frames=written, source="stage1")
