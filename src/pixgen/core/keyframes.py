"""Keyframes: pictures the video must show at given times, and where on LTX-2's latent clock they land.

LTX-2's video latents hold 8 frames each, the first latent the first frame alone: latent ``k`` ≥ 1 holds frames
``8k-7 .. 8k``. A keyframe at ``time`` seconds is the frame ``round(time × 24)`` and conditions the latent that
holds it (``latent_index``). The start frame (``image_input``) is a keyframe at 0, the end frame
(``end_image_input``) one at the video's end; two pictures that land on the same latent are refused, since one
latent can only be pinned to one picture.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from pixgen.core.fields import Media, Role
from pixgen.core.sizes import FPS
from pixgen.errors import InvalidRequest

MAX_KEYFRAMES = 8
FRAMES_PER_LATENT = 8  # LTX-2's video VAE: 8 frames a latent, the first latent the first frame alone


class Keyframe(BaseModel):
    """One picture at one time; ``strength`` 1 pins the latent, less lets the model drift from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a data:image/...;base64 URI (the job API also takes an http(s) URL, fetched at submit)
    image: Annotated[StrictStr, Role(media=Media.IMAGE, url=True)]
    time: float = Field(ge=0, strict=True)  # seconds; strict: a number, not "1.5" (ints are taken)
    strength: float = Field(1.0, gt=0, le=1, strict=True)


def latent_index(frame: int) -> int:
    """The latent that holds ``frame``: 0 for the first frame, ``ceil(frame / 8)`` after it."""
    return math.ceil(frame / FRAMES_PER_LATENT)


def frame_at(seconds: float) -> int:
    return round(seconds * FPS)


def check_keyframes(keyframes: tuple[Keyframe, ...], duration: int, *, start_image: bool, end_image: bool) -> None:
    """1..8 keyframes, each inside ``[0, duration]`` s, no two (start and end frames included) on one latent;
    ``InvalidRequest`` naming ``keyframes[i].time`` (or ``keyframes``) otherwise."""
    if not 1 <= len(keyframes) <= MAX_KEYFRAMES:
        raise InvalidRequest(f"keyframes takes 1 to {MAX_KEYFRAMES} entries, got {len(keyframes)}",
                             field="keyframes")
    taken: dict[int, str] = {}
    if start_image:
        taken[0] = "image_input (the start frame)"
    if end_image:
        taken[latent_index(frame_at(duration))] = "end_image_input (the end frame)"
    for i, keyframe in enumerate(keyframes):
        field = f"keyframes[{i}].time"
        if keyframe.time > duration:
            raise InvalidRequest(f"{field} is {keyframe.time:g} s, past the video's end ({duration} s)", field=field)
        index = latent_index(frame_at(keyframe.time))
        if index in taken:
            raise InvalidRequest(f"{field} ({keyframe.time:g} s) lands on the same latent frame as {taken[index]}; "
                                 f"one latent frame holds {FRAMES_PER_LATENT} frames "
                                 f"({FRAMES_PER_LATENT / FPS:.2f} s), "
                                 f"so move one of them",
                                 field=field)
        taken[index] = f"keyframes[{i}] ({keyframe.time:g} s)"
