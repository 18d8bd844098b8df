"""Keyframes: pictures the video must show at given times, and where on a backend's latent clock they land.

A keyframe at ``time`` seconds is the frame ``round(time × 24)``. The request itself takes 1 to 8 keyframes within
its duration (``check_keyframes``, in the spec). Where a backend generates on a latent clock (``Capabilities.
frames_per_latent``: the first latent the first frame alone, each later one ``n`` frames, so latent ``k`` ≥ 1 holds
frames ``n·k−n+1 .. n·k``), a keyframe conditions the latent that holds its frame (``latent_index``); the start frame
(``image_input``) is a keyframe at 0, the end frame (``end_image_input``) one at the video's end, and two pictures
that land on the same latent are refused (``check_keyframe_latents``, with the backend's capabilities): one latent
can only be pinned to one picture.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from pixgen.core.fields import Media, Role
from pixgen.core.sizes import FPS
from pixgen.core.text import CheckedStr
from pixgen.errors import InvalidRequest

MAX_KEYFRAMES = 8


class Keyframe(BaseModel):
    """One picture at one time; ``strength`` 1 pins the latent, less lets the model drift from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a data:image/...;base64 URI (the job API also takes an http(s) URL, fetched at submit)
    image: Annotated[CheckedStr, Role(media=Media.IMAGE, url=True)]
    time: float = Field(ge=0, strict=True)  # seconds; strict: a number, not "1.5" (ints are taken)
    strength: float = Field(1.0, gt=0, le=1, strict=True)


def latent_index(frame: int, frames_per_latent: int) -> int:
    """The latent that holds ``frame``: 0 for the first frame, ``ceil(frame / frames_per_latent)`` after it."""
    return math.ceil(frame / frames_per_latent)


def frame_at(seconds: float) -> int:
    return round(seconds * FPS)


def check_keyframes(keyframes: tuple[Keyframe, ...], duration: int) -> None:
    """1..8 keyframes, each inside ``[0, duration]`` s; ``InvalidRequest`` naming ``keyframes[i].time`` (or
    ``keyframes``) otherwise."""
    if not 1 <= len(keyframes) <= MAX_KEYFRAMES:
        raise InvalidRequest(f"keyframes takes 1 to {MAX_KEYFRAMES} entries, got {len(keyframes)}",
                             field="keyframes")
    for i, keyframe in enumerate(keyframes):
        if keyframe.time > duration:
            raise InvalidRequest(f"keyframes[{i}].time is {keyframe.time:g} s, past the video's end ({duration} s)",
                                 field=f"keyframes[{i}].time")


def check_keyframe_latents(keyframes: tuple[Keyframe, ...], duration: int, frames_per_latent: int, *,
                           start_image: bool, end_image: bool) -> None:
    """No two pictures (start and end frames included) on one latent of a clock of ``frames_per_latent`` frames;
    ``InvalidRequest`` naming ``keyframes[i].time`` otherwise."""
    taken: dict[int, str] = {}
    if start_image:
        taken[0] = "image_input (the start frame)"
    if end_image:
        taken[latent_index(frame_at(duration), frames_per_latent)] = "end_image_input (the end frame)"
    for i, keyframe in enumerate(keyframes):
        field = f"keyframes[{i}].time"
        index = latent_index(frame_at(keyframe.time), frames_per_latent)
        if index in taken:
            raise InvalidRequest(f"{field} ({keyframe.time:g} s) lands on the same latent frame as {taken[index]}; "
                                 f"one latent frame holds {frames_per_latent} frames "
                                 f"({frames_per_latent / FPS:.2f} s), so move one of them", field=field)
        taken[index] = f"keyframes[{i}] ({keyframe.time:g} s)"
