"""The one canonical request spec behind every surface and the command line.

``parse_request`` is the only way in: it turns any mapping into a frozen ``VideoRequest`` or raises
``InvalidRequest`` naming the first offending field. Types are strict: ``"5"`` is not a duration.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

from pixgen.core.keyframes import Keyframe, check_keyframes
from pixgen.core.sizes import num_frames, output_size
from pixgen.errors import InvalidRequest

MAX_SEED = 2_147_483_647
MAX_PROMPT = 2048
DEFAULT_NEGATIVE_PROMPT = (
    "blurry, distortion, low quality, grainy, warped faces, deformed hands, extra limbs, watermark, text, signature"
)

AspectRatio = Literal["16:9", "4:3", "1:1", "3:4", "9:16", "2:3", "3:2", "21:9"]
Quality = Literal["360p", "540p", "720p", "1080p"]
Style = Literal["none", "anime", "3d_animation", "clay", "comic", "cyberpunk", "realistic"]
ThinkingType = Literal["disabled", "enabled", "auto"]
CameraMovement = Literal[
    "zoom_in", "zoom_out", "pan_left", "pan_right", "tilt_up", "tilt_down", "crane_up", "crane_down",
    "dolly_in", "dolly_out", "orbit_left", "orbit_right", "whip_pan", "handheld", "static", "auto_camera",
]

DATA_URI_PATTERN = r"^data:image/(png|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]+$"  # image_input's form
_DATA_URI = re.compile(DATA_URI_PATTERN)
_VIDEO_DATA_URI = re.compile(r"^data:video/mp4;base64,[A-Za-z0-9+/=\s]+$")
CONTROL_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # depth, pose, canny, ...: what the model folder carries


class VideoRequest(BaseModel):
    """A video request, validated. ``aspect_ratio`` None means "16:9, or the start image's own ratio"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: StrictStr = ""
    negative_prompt: StrictStr = Field(DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT)
    duration: StrictInt = Field(5, ge=1, le=15)
    aspect_ratio: AspectRatio | None = None
    quality: Quality = "720p"
    seed: StrictInt | None = Field(None, ge=0, le=MAX_SEED)
    generate_audio: StrictBool = True
    image_input: StrictStr | None = None
    end_image_input: StrictStr | None = None
    multi_clip: StrictBool = False
    style: Style = "none"
    thinking_type: ThinkingType = "auto"
    camera_movement: CameraMovement | None = None
    control_video: StrictStr | None = None  # an MP4 data URI: the video the IC-LoRA of ``control_type`` follows
    control_type: StrictStr | None = Field(None, pattern=CONTROL_TYPE_PATTERN)
    keyframes: tuple[Keyframe, ...] | None = None  # pictures at given times (``core/keyframes.py``)

    @model_validator(mode="before")
    @classmethod
    def _trim_prompt(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("prompt"), str):
            data = {**data, "prompt": data["prompt"].strip()}
        return data

    @model_validator(mode="after")
    def _check(self) -> "VideoRequest":
        if len(self.prompt) > MAX_PROMPT:
            raise InvalidRequest(f"prompt is {len(self.prompt)} characters; at most {MAX_PROMPT}", field="prompt")
        if not self.prompt and self.image_input is None:
            raise InvalidRequest("prompt is required (1 to 2048 characters) unless image_input is given",
                                 field="prompt")
        for name in ("image_input", "end_image_input"):
            value = getattr(self, name)
            if value is not None and not _is_data_uri(value):
                raise InvalidRequest(f"{name} must be a data:image/(png|jpeg|webp);base64,... URI", field=name)
        if self.end_image_input is not None and self.image_input is None:
            raise InvalidRequest("end_image_input needs image_input (a start frame)", field="end_image_input")
        self._check_control()
        if self.keyframes is not None:
            self._check_keyframes()
        return self

    def _check_control(self) -> None:
        video, kind = self.control_video, self.control_type
        if video is not None and not _VIDEO_DATA_URI.match(video[:64] + video[-8:] if len(video) > 80 else video):
            raise InvalidRequest("control_video must be a data:video/mp4;base64,... URI (or, on the job API, an "
                                 "http(s) URL)", field="control_video")
        if video is not None and kind is None:
            raise InvalidRequest("control_video needs control_type (depth, pose, canny, ...)", field="control_type")
        if kind is not None and video is None:
            raise InvalidRequest("control_type needs control_video", field="control_video")
        if video is not None and self.multi_clip:
            raise InvalidRequest("multi_clip cannot be combined with control_video", field="multi_clip")

    def _check_keyframes(self) -> None:
        assert self.keyframes is not None
        if self.multi_clip:
            raise InvalidRequest("keyframes cannot be combined with multi_clip", field="keyframes")
        for i, keyframe in enumerate(self.keyframes):
            if not _is_data_uri(keyframe.image):
                raise InvalidRequest(f"keyframes[{i}].image must be a data:image/(png|jpeg|webp);base64,... URI",
                                     field=f"keyframes[{i}].image")
        check_keyframes(self.keyframes, self.duration, start_image=self.image_input is not None,
                        end_image=self.end_image_input is not None)

    # -- derived values -------------------------------------------------------------------------------------
    @property
    def ratio(self) -> str:
        return self.aspect_ratio or "16:9"

    @property
    def size(self) -> tuple[int, int]:
        return output_size(self.ratio, self.quality)

    @property
    def num_frames(self) -> int:
        return num_frames(self.duration)

    def with_seed(self) -> "VideoRequest":
        """The same request with a seed: the given one, or one drawn at random (reported with the result)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})


def _is_data_uri(value: str) -> bool:
    return bool(_DATA_URI.match(value[:64] + value[-8:] if len(value) > 80 else value))


def parse_request(data: Mapping[str, Any]) -> VideoRequest:
    """Validate ``data`` into a ``VideoRequest``; raise ``InvalidRequest`` naming the field on any problem."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    try:
        return VideoRequest.model_validate(dict(data))
    except InvalidRequest:
        raise
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """The first pydantic error as an ``InvalidRequest`` with the field named and a readable message."""
    err = exc.errors()[0]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, InvalidRequest):
        return ctx_error
    field = _field_path(err.get("loc", ()))
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif kind == "missing":
        message = f"{field} is required"
    else:
        message = f"{field}: {err.get('msg', 'invalid value')}"
    return InvalidRequest(message, field=field)


def _field_path(loc: tuple) -> str:
    """pydantic's error location as the client wrote it: ``keyframes[1].time``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"
