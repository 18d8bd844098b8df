"""The one canonical request spec behind every surface and the command line.

``parse_request`` is the only way in: it turns any mapping into a frozen ``VideoRequest`` or raises
``InvalidRequest`` naming the first offending field. Types are strict: ``"5"`` is not a duration.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from pixgen.core.fields import Flag, Media, Need, Role, item_model, media_values
from pixgen.core.keyframes import MAX_KEYFRAMES, Keyframe, check_keyframes
from pixgen.core.sizes import num_frames, output_size
from pixgen.core.surfaces import ApiSurface
from pixgen.core.text import TEXT_CHECK, CheckedStr
from pixgen.errors import InvalidRequest

MAX_SEED = 2_147_483_647
AUTO = "auto"  # ``duration: "auto"``
MAX_DURATION = 15  # seconds
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

DATA_URI_PATTERN = Media.IMAGE.data_uri_pattern  # image_input's form
CONTROL_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # depth, pose, canny, ...: what the model folder carries
ControlType = Annotated[StrictStr, StringConstraints(pattern=CONTROL_TYPE_PATTERN), TEXT_CHECK]


# Fields that make or shape a picture, which a sound-only request (the frames are its ``video``'s) cannot take.
SOUND_ONLY_EXCLUDES = ("image_input", "end_image_input", "keyframes", "control_video", "multi_clip",
                       "camera_movement", "audio")


class VideoRequest(BaseModel):
    """A video request, validated. ``aspect_ratio`` None means "16:9, or the start image's own ratio".

    Each field's roles (media, URL on the job API, private, CLI flag, surface names, capability) are its ``Role``
    (``core/fields.py``), read by the generic code of every surface: adding a field is ARCHITECTURE.md's recipe.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # at most MAX_PROMPT characters once trimmed (``_check``: the limit is on the trimmed text, so not a constraint)
    prompt: Annotated[CheckedStr, Role(private=True)] = Field("", description="1 to 2048 characters (trimmed)",
                                                             json_schema_extra={"maxLength": MAX_PROMPT})
    negative_prompt: Annotated[CheckedStr, Role(private=True, cli=Flag(("--negative-prompt",), metavar="TEXT"))] = \
        Field(DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT)
    # The length: whole seconds; None only with ``audio`` (as long as the soundtrack: ``_follow_audio``); "auto": the
    # model folder's duration head chooses it from the prompt (LTX-2.5; ``engine/ltx2/duration.py``).
    duration: Annotated[Annotated[StrictInt, Field(ge=1, le=MAX_DURATION)] | Literal["auto"] | None, Role(
        cli=Flag(("--duration",), metavar="SECONDS", help="seconds, 1..15 (default 5; with --audio, the audio's "
                 "length), or auto: the model's duration head chooses from the prompt"),
        names={ApiSurface.OPENAI: "seconds"}, offered="durations",
        needs=Need("auto_duration", 'duration "auto" (its folder has no duration head)', value=AUTO))] = \
        Field(5, description='seconds, 1 to 15 (default 5); with audio and no duration, the audio\'s length rounded '
                             'up to whole frames; or "auto": chosen from the prompt by the model\'s duration head '
                             '(LTX-2.5 folders), on the 8k+1 frame grid within 1 to 15 s')
    aspect_ratio: Annotated[AspectRatio | None, Role(
        cli=Flag(("--aspect-ratio",), help="default 16:9, or the image's own"), names={ApiSurface.OPENAI: "size"},
        offered="aspect_ratios")] = None
    quality: Annotated[Quality, Role(cli=Flag(("--quality",), help="default 720p"),
                                     aliases={ApiSurface.JOBS: "resolution"}, names={ApiSurface.OPENAI: "size"},
                                     offered="qualities")] = "720p"
    seed: Annotated[StrictInt | None, Role(cli=Flag(("--seed",), help="0..2147483647; drawn at random when absent"))] \
        = Field(None, ge=0, le=MAX_SEED)
    generate_audio: Annotated[StrictBool, Role(cli=Flag(("--no-audio",), negate=True, help="write no audio track"))] \
        = True
    image_input: Annotated[CheckedStr | None, Role(
        media=Media.IMAGE, url="image_url", names={ApiSurface.OPENAI: "input_reference"},
        cli=Flag(("--image",), metavar="FILE", help="start frame (PNG, JPEG or WebP)"))] = None
    end_image_input: Annotated[CheckedStr | None, Role(
        media=Media.IMAGE, url="end_image_url", needs=Need("end_frame", "an end frame"),
        cli=Flag(("--end-image",), metavar="FILE", help="end frame; needs --image"))] = None
    image_strength: Annotated[float, Role(cli=Flag(("--image-strength",), metavar="0..1", help="how firmly the "
                                                   "start frame is held: 1 (default) pins it, less lets the video "
                                                   "drift from it; needs --image"))] = \
        Field(1.0, gt=0, le=1, strict=True, description="how firmly image_input is held as the first frame: 1 pins "
              "it, less lets the video drift from it (its latent is noised to 1 - strength of the rest's level at each "
              "step, as a keyframe's strength)")
    multi_clip: Annotated[StrictBool, Role(cli=Flag(("--multi-clip",), help="several shots with cuts, in one video"),
                                           needs=Need("multi_clip", "multi-clip videos"))] \
        = False
    style: Annotated[Style, Role(cli=Flag(("--style",)))] = "none"
    thinking_type: Annotated[ThinkingType, Role(cli=Flag(("--thinking",), metavar="MODE"))] = "auto"
    camera_movement: Annotated[CameraMovement | None, Role(cli=Flag(("--camera", "--camera-movement"),
                                                                    metavar="MOVEMENT"))] = None
    control_video: Annotated[CheckedStr | None, Role(
        media=Media.VIDEO, url=True, needs=Need("control_types", "a control video"),
        cli=Flag(("--control-video",), metavar="FILE", help="an MP4 to follow (IC-LoRA); needs --control-type"))] \
        = Field(None, description="an MP4 data URI whose structure or motion the video follows; needs control_type")
    control_type: Annotated[ControlType | None, Role(
        offered="control_types", cli=Flag(("--control-type",), metavar="TYPE", help="depth, pose, canny, ...: a "
                                          "type the model folder has an IC-LoRA for"))] = \
        Field(None, description="the IC-LoRA to follow control_video with")
    keyframes: Annotated[tuple[Keyframe, ...] | None, Role(
        needs=Need("keyframes", "keyframes"),
        cli=Flag(("--keyframe",), metavar="SECONDS=FILE", example="2.5=lighthouse.png",
                 help="a picture the video shows at that time (PNG, JPEG or WebP); up to 8, repeat the flag"))] = \
        Field(None, min_length=1, max_length=MAX_KEYFRAMES, description="pictures the video passes through, each "
              "at its time (seconds within the duration; two may not share a latent frame)")

    audio: Annotated[CheckedStr | None, Role(
        media=Media.AUDIO, url=True, needs=Need("audio_to_video", "a soundtrack to make the video to"),
        cli=Flag(("--audio",), metavar="FILE", help="a soundtrack (WAV, MP3, AAC/M4A, FLAC or Ogg; at most 15 s) "
                 "the video is made to and carries; without --duration the video is as long as it"))] = \
        Field(None, description="a soundtrack (at most 15 s) the video is made to: the MP4 carries it as given; "
              "without duration, the video is as long as it")

    video: Annotated[CheckedStr | None, Role(
        media=Media.VIDEO, url=True, needs=Need("sound_for_video", "new sound for a video"),
        cli=Flag(("--video",), metavar="FILE", help="an H.264 MP4 (at most 15 s) to give new sound; needs "
                 "--sound-only"))] = \
        Field(None, description="an H.264 MP4 data URI (at most 15 s) whose frames are kept bit for bit and whose "
                                "sound is made anew from the prompt; needs sound_only")
    sound_only: Annotated[StrictBool, Role(
        needs=Need("sound_for_video", "new sound for a video"),
        cli=Flag(("--sound-only",), help="make only new sound for --video, keeping its frames"))] = \
        Field(False, description="true: make new sound for video (its frames kept; duration, size and quality "
                                 "are the video's)")

    @model_validator(mode="before")
    @classmethod
    def _trim_prompt(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("prompt"), str):
            data = {**data, "prompt": data["prompt"].strip()}
        return data

    @model_validator(mode="before")
    @classmethod
    def _follow_audio(cls, data: Any) -> Any:
        """A soundtrack without a duration sets the length: ``duration`` None (the engine measures the audio)."""
        if isinstance(data, Mapping) and data.get("audio") is not None and "duration" not in data:
            data = {**data, "duration": None}
        return data

    @model_validator(mode="after")
    def _check(self) -> VideoRequest:
        if len(self.prompt) > MAX_PROMPT:
            raise InvalidRequest(f"prompt is {len(self.prompt)} characters; at most {MAX_PROMPT}", field="prompt")
        if not self.prompt and self.image_input is None:
            raise InvalidRequest("prompt is required (1 to 2048 characters) unless image_input is given",
                                 field="prompt")
        check_media_forms(self)
        if self.end_image_input is not None and self.image_input is None:
            raise InvalidRequest("end_image_input needs image_input (a start frame)", field="end_image_input")
        if self.image_strength != 1 and self.image_input is None:
            raise InvalidRequest("image_strength needs image_input (the start frame it holds)", field="image_strength")
        self._check_control()
        self._check_sound_only()
        self._check_audio()
        if self.duration == AUTO:
            self._check_auto_duration()
        if self.keyframes is not None:
            if self.multi_clip:
                raise InvalidRequest("keyframes cannot be combined with multi_clip", field="keyframes")
            if self.duration is None:
                raise InvalidRequest("keyframes with audio need a duration (their times are checked against it)",
                                     field="duration")
            check_keyframes(self.keyframes, self.seconds)
        return self

    def _check_audio(self) -> None:
        if self.duration is None and self.audio is None:
            raise InvalidRequest("duration is required (1 to 15 seconds) unless audio gives the length",
                                 field="duration")
        if self.audio is None:
            return
        if self.multi_clip:
            raise InvalidRequest("multi_clip cannot be combined with audio", field="multi_clip")

    def _check_auto_duration(self) -> None:
        """``duration: "auto"`` is one clip whose length the model chooses: nothing else may set or need it first."""
        for other, why in (("keyframes", "keyframe times are seconds within a known duration"),
                           ("multi_clip", "the shots are cut from a known duration"),
                           ("control_video", "the control video is followed frame for frame over a known duration"),
                           ("audio", "the soundtrack sets the length; omit duration to follow it"),
                           ("sound_only", "the video sets the length")):
            if getattr(self, other):
                raise InvalidRequest(f'duration "auto" cannot be combined with {other} ({why}); give duration in '
                                     f"seconds", field="duration")

    def _check_control(self) -> None:
        video, kind = self.control_video, self.control_type
        if video is not None and kind is None:
            raise InvalidRequest("control_video needs control_type (depth, pose, canny, ...)", field="control_type")
        if kind is not None and video is None:
            raise InvalidRequest("control_type needs control_video", field="control_video")
        if video is not None and self.multi_clip:
            raise InvalidRequest("multi_clip cannot be combined with control_video", field="multi_clip")

    def _check_sound_only(self) -> None:
        """``video`` and ``sound_only`` go together, and with nothing that makes or shapes a picture."""
        if self.sound_only and self.video is None:
            raise InvalidRequest("sound_only needs video (the MP4 to give new sound)", field="video")
        if self.video is not None and not self.sound_only:
            raise InvalidRequest("video is only given new sound: set sound_only to true", field="sound_only")
        if not self.sound_only:
            return
        if not self.generate_audio:
            raise InvalidRequest("sound_only makes sound: generate_audio cannot be false", field="generate_audio")
        for name in SOUND_ONLY_EXCLUDES:
            if getattr(self, name) not in (None, False):
                raise InvalidRequest(f"{name} cannot be combined with sound_only: the frames are the video's",
                                     field=name)

    # -- derived values -------------------------------------------------------------------------------------
    @property
    def ratio(self) -> str:
        return self.aspect_ratio or "16:9"

    @property
    def size(self) -> tuple[int, int]:
        return output_size(self.ratio, self.quality)

    @property
    def follows_audio(self) -> bool:
        """The video is as long as ``audio`` (no duration was given with it)."""
        return self.duration is None

    @property
    def auto_duration(self) -> bool:
        """The model chooses the length (``duration: "auto"``): ``seconds`` and ``num_frames`` are the engine's."""
        return self.duration == AUTO

    @property
    def seconds(self) -> int:
        """``duration``, for code that needs one. A request that follows its audio has none before the audio is
        measured (``engine/ltx2/soundtrack.py``, ``api/service.planned_frames``), one with ``"auto"`` none before the
        engine chooses (``engine/ltx2/duration.py``); neither is extended, split into shots or given keyframes."""
        if self.duration is None:
            raise ValueError("this request's length is its audio's: measure the audio for its length")
        if isinstance(self.duration, str):
            raise ValueError('duration "auto" has no length until the engine chooses one')
        return self.duration

    @property
    def longest_seconds(self) -> int:
        """The longest the video can be before the engine runs: ``seconds``, or ``MAX_DURATION`` for ``"auto"`` (a
        job is queued and its time estimated as the longest until the duration head chooses). A ValueError, as
        ``seconds``, for a request that follows its audio (its length is the audio's, measured)."""
        return MAX_DURATION if self.auto_duration else self.seconds

    @property
    def num_frames(self) -> int:
        """``duration × 24 + 1`` (``seconds``' rule for a request that follows its audio)."""
        return num_frames(self.seconds)

    def with_seed(self) -> VideoRequest:
        """The same request with a seed: the given one, or one drawn at random (reported with the result)."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})

    @property
    def fixed_seed(self) -> int:
        """The seed of a request that has one (``with_seed``'s); a ValueError where it has none."""
        if self.seed is None:
            raise ValueError("this request has no seed yet: call with_seed() first")
        return self.seed


def check_media_forms(request: BaseModel) -> None:
    """Every media field (nested ones included) holds a data URI of its kind; ``InvalidRequest`` naming the first
    that does not."""
    for path, role, value in media_values(type(request), request.model_dump()):
        assert role.media is not None
        if not isinstance(value, str) or not role.media.matches(value):
            hint = " (or, on the job API, an http(s) URL)" if role.url_inline else ""
            raise InvalidRequest(f"{path} must be {role.media.described}{hint}", field=path)


def parse_request(data: Mapping[str, Any]) -> VideoRequest:
    """Validate ``data`` into a ``VideoRequest``; raise ``InvalidRequest`` naming the field on any problem."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("the request body must be a JSON object", field="body")
    try:
        return VideoRequest.model_validate(dict(data))
    except InvalidRequest:
        raise
    except ValidationError as exc:
        raise invalid_from_validation(exc, VideoRequest) from None


def invalid_from_validation(exc: ValidationError, model: type[BaseModel] | None = None) -> InvalidRequest:
    """The first pydantic error as an ``InvalidRequest`` with the field named and a readable message; ``model`` (the
    type validated) lets the path skip the names pydantic gives the members of a union (``seconds.int``)."""
    return invalid_from_error(exc.errors()[0], model)


def invalid_from_error(err: Mapping[str, Any], model: type[BaseModel] | None = None) -> InvalidRequest:
    """One pydantic error (an item of ``ValidationError.errors()``) as an ``InvalidRequest``."""
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, InvalidRequest):
        return ctx_error
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    field = _field_path(loc[:-1], model) + f".{loc[-1]}" if kind == "extra_forbidden" and len(loc) > 1 else \
        _field_path(loc, model if kind != "extra_forbidden" else None)
    if kind == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif kind == "missing":
        message = f"{field} is required"
    else:
        message = f"{field}: {err.get('msg', 'invalid value')}"
    return InvalidRequest(message, field=field)


def _field_path(loc: tuple[int | str, ...], model: type[BaseModel] | None = None) -> str:
    """pydantic's error location as the client wrote it: ``keyframes[1].time``. Through ``model``, only the names of
    its fields (and of the items they hold) and item indexes are kept."""
    path, guided, current = "", model is not None, model
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        if guided:
            info = current.model_fields.get(part) if current is not None else None
            if info is None:
                continue  # the name pydantic gives a union's member (``int``, ``literal[...]``), not a field
            current = item_model(info)
        path += f".{part}" if path else part
    return path or "body"
