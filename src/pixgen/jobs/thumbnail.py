"""A JPEG thumbnail from the first frame of a finished video."""

from __future__ import annotations

from pathlib import Path

THUMB_MAX_SIDE = 480


def make_thumbnail(video: Path, out: Path, max_side: int = THUMB_MAX_SIDE) -> Path:
    from PIL import Image

    from pixgen.media.probe import first_frame

    image = Image.fromarray(first_frame(video))
    image.thumbnail((max_side, max_side))
    image.save(out, format="JPEG", quality=85)
    return out
