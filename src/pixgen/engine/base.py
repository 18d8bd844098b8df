"""The one small protocol an engine plugs in through: load once, then ``generate`` (and ``extend``, ``retake``) many
times.

This module imports no torch, so the job layer and the API can name these types, and read a backend's
``Capabilities``, without loading the model stack.

An engine hands back a ``GenerationResult``: typed fields only (no bag of extras), so the worker stores what it
reports (shots, timings) without guessing at shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

from pixgen.core.progress import ProgressCallback, StageShares, no_progress
from pixgen.core.retake import RetakeRule
from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES, output_size
from pixgen.core.spec import VideoRequest


def never_cancelled() -> bool:
    return False


Dtype = Literal["auto", "bfloat16", "float16", "float32"]
MemoryMode = Literal["auto", "full", "text-offload", "fp8", "offload", "group-offload"]
StepCache = Literal["none", "taylorseer"]
GuidanceParallel = Literal["auto", "off"]
SequenceExchange = Literal["auto", "ulysses", "allgather"]
DTYPES: tuple[str, ...] = get_args(Dtype)
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
STEP_CACHES: tuple[str, ...] = get_args(StepCache)


@dataclass(frozen=True)
class EngineOptions:
    """How a backend is loaded: where, in what precision, how much of it stays on the GPU, and the speed options.
    "auto" everywhere means: the worker's GPU if it has one, in bfloat16, in the memory mode that fits."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Dtype = "auto"  # auto: bfloat16 on a GPU, float32 on a CPU
    memory: MemoryMode = "auto"  # see pixgen.engine.ltx2.memory
    compile: bool = False  # torch.compile the repeated transformer blocks
    compile_backend: str = "inductor"  # torch.compile's backend ("eager"/"aot_eager": tracing checks on a CPU)
    attention_backend: str = ""  # a diffusers attention backend for the mask-free attentions ("": the default)
    step_cache: StepCache = "none"  # lossy reuse across denoising steps
    fp8_compute: bool = False  # the transformer blocks' matmuls in float8 (Hopper/Ada+)
    overlap: bool = False  # the video decode and the MP4 encode on two threads at once
    warmup: str = "auto"  # shapes warmed at load (``pixgen.engine.warmup``): auto | none | QUALITY[/SECONDS[/RATIO]],…
    recipe: str | None = None  # the sampling recipe, over the one detected from the model folder
    # One job over a group of ranks (only inside one: pixgen.jobs.group): guided steps' passes side by side
    # ("auto") or each pass over all ranks ("off"); how attention exchanges the split video tokens.
    guidance_parallel: GuidanceParallel = "auto"
    sequence_exchange: SequenceExchange = "auto"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, as static data: the API reads it (``/api/v1/models``, refusals at submit) without
    loading the backend."""

    extend: bool  # continue a finished video (``Engine.extend``)
    end_frame: bool  # an end frame as well as a start frame
    multi_clip: bool  # several shots with cuts in one video
    audio: bool  # a generated sound track
    keyframes: bool = False  # pictures pinned at any time (``VideoRequest.keyframes``)
    retake: RetakeRule | None = None  # regenerate a time range of a finished video (``Engine.retake``), by this rule
    # The latent clock: the first latent holds the first frame alone, each later one this many frames
    # (``core.keyframes``: two pictures may not pin one latent).
    frames_per_latent: int = 1
    stages: StageShares = ()  # the stages a job goes through, each with its share of the progress bar
    durations: tuple[int, int] = (1, 15)  # shortest and longest video, in seconds
    qualities: tuple[str, ...] = QUALITIES
    aspect_ratios: tuple[str, ...] = ASPECT_RATIOS
    control_types: tuple[str, ...] = ()  # ``control_type``s the loaded model carries an IC-LoRA for
    # Sound first and length (issue 22), each listed by ``GET /api/v1/models`` (``api/jobs_api.sound_first``):
    audio_to_video: bool = False  # a video made to a given soundtrack (``VideoRequest.audio``), the sound kept
    sound_for_video: bool = False  # new sound under a finished or given video's own frames (``Engine.sound``)
    auto_duration: bool = False  # ``duration: "auto"``: the model folder has a duration head (LTX-2.5)

    def sizes(self) -> dict[str, dict[str, str]]:
        """``{ratio: {quality: "WxH"}}``: the contract's size table for what this backend offers."""
        return {ratio: {q: "{}x{}".format(*output_size(ratio, q)) for q in self.qualities}
                for ratio in self.aspect_ratios}


@dataclass(frozen=True)
class ShotInfo:
    """One shot of a multi-clip video: its prompt as used and its times on the video's clock (seconds)."""

    index: int
    prompt: str
    start: float
    end: float

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "prompt": self.prompt, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True)
class Timings:
    """Seconds an engine spent per stage of one job (None: the stage did not run or was not timed apart)."""

    prepare: float | None = None
    text: float | None = None
    denoise: float | None = None
    upsample: float | None = None
    refine: float | None = None  # stage 2 of a two-stage quality
    audio: float | None = None
    decode: float | None = None
    encode: float | None = None
    preview: float | None = None  # the early draft (decode + encode of stage 1), when one was made

    @classmethod
    def from_mapping(cls, seconds: Mapping[str, float]) -> Timings:
        """From ``{stage: seconds}``; a stage this class does not name is a ``ValueError`` (a typo, not data)."""
        unknown = set(seconds) - cls.stages()
        if unknown:
            raise ValueError(f"unknown timing stage(s) {sorted(unknown)}; known: {sorted(cls.stages())}")
        return cls(**{name: float(value) for name, value in seconds.items()})

    @classmethod
    def stages(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, float]:
        """The stages that ran, ``{stage: seconds}`` rounded to the millisecond."""
        return {f.name: round(value, 3) for f in fields(self) if (value := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class Preview:
    """An early draft of the video, handed over while the final one renders: an MP4 (no sound) at ``path`` that
    the receiver takes over (moves or deletes)."""

    path: Path
    width: int
    height: int
    num_frames: int
    source: str  # what it was decoded from, e.g. "stage1" (the first stage's latents at half size)


PreviewCallback = Callable[[Preview], None]


@dataclass(frozen=True)
class ShotRun:
    """How one shot was made: its seed, its prompt as used and the sigmas each stage ran."""

    index: int
    seed: int
    prompt: str
    negative_prompt: str
    sigmas: Mapping[str, tuple[float, ...]]  # {"stage1": (...), "stage2": (...)}

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "seed": self.seed, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "sigmas": {stage: list(values) for stage, values in self.sigmas.items()}}


@dataclass(frozen=True)
class Provenance:
    """What made a video beyond its request, as the engine knows it (the job's manifest is built from it)."""

    backend: str  # the engine's name
    recipe_settings: Mapping[str, Any]  # everything the sampling recipe set (LTX-2: ``Recipe.describe()``)
    runs: tuple[ShotRun, ...]  # one per shot
    dtype: str
    device: str
    memory: str = ""  # the memory mode the weights were placed for
    options: Mapping[str, Any] = field(default_factory=dict)  # speed options that change numbers (compile, cache)


@dataclass(frozen=True)
class Extension:
    """What ``extend`` did: frames kept from the source, frames added, source frames that conditioned them."""

    source_frames: int
    new_frames: int
    context_frames: int


@dataclass(frozen=True)
class Retake:
    """What ``retake`` did: source frames ``[start_frame, end_frame)`` regenerated, the others kept."""

    start_frame: int
    end_frame: int
    source_frames: int


@dataclass(frozen=True)
class SoundtrackFit:
    """How a given soundtrack (``VideoRequest.audio``) was fitted to the video: its own length, the video's, and
    what was cut off its end or padded with silence after it (seconds)."""

    given_seconds: float
    video_seconds: float
    cut_seconds: float
    padded_seconds: float

    def as_dict(self) -> dict[str, float]:
        return {"given_seconds": self.given_seconds, "video_seconds": self.video_seconds,
                "cut_seconds": self.cut_seconds, "padded_seconds": self.padded_seconds}


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    path: Path
    width: int
    height: int
    num_frames: int
    seconds: float  # num_frames / fps: the video's length
    seed: int
    has_audio: bool
    prompt: str  # the prompt actually used (after thinking / style / camera; shots joined as "Shot n: ...")
    original_prompt: str
    negative_prompt: str = ""  # as used (request's + presets')
    thinking: str = "verbatim"  # how the prompt was made: "verbatim", "rewritten" (built-in) or "model" (enhancer)
    aspect_ratio: str | None = None
    quality: str | None = None
    generation_size: tuple[int, int] | None = None  # (width, height) the model denoised at
    two_stage: bool = False  # generated at half size, upsampled ×2 and refined
    stage2_lora: bool = False  # the refine stage ran with the checkpoint's distilled LoRA
    recipe: str | None = None  # the backend's sampling recipe, by name
    loras: tuple[str, ...] = ()  # preset adapters that were on for this job
    shots: tuple[ShotInfo, ...] = ()  # multi-clip only
    extension: Extension | None = None  # extend only
    retake: Retake | None = None  # retake only
    sound_only: bool = False  # sound only: the frames are the source's, copied
    soundtrack: SoundtrackFit | None = None  # a video made to a given soundtrack: how the sound was fitted
    timings: Timings = field(default_factory=Timings)
    provenance: Provenance | None = None  # what made it, for the job's manifest

    def summary(self) -> str:
        audio = "with audio" if self.has_audio else "no audio"
        recipe = f", recipe {self.recipe}" if self.recipe else ""
        return (f"{self.width}x{self.height}, {self.num_frames} frames, {self.seconds:.2f} s, {audio}, "
                f"seed {self.seed}{recipe} -> {self.path}")


class Engine(Protocol):
    """Generates one video file for one request (or extends one). Loaded once, serves many requests, one at a
    time."""

    capabilities: ClassVar[Capabilities]

    @classmethod
    def load(cls, source: Path, options: EngineOptions = EngineOptions()) -> Engine:
        """Load once (weights, pipelines), as ``options`` say (``EngineOptions``: device, dtype, memory mode, speed
        options, recipe). ``source`` is what the backend registry made of the ``model`` setting
        (``pixgen.engine.Backend.resolve``): for LTX-2, the model folder."""
        ...

    def generate(
        self,
        request: VideoRequest,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
        on_preview: PreviewCallback | None = None,
    ) -> GenerationResult:
        """Write ``out_path`` (MP4). Raises ``Cancelled`` within one denoising step of ``should_cancel()``.

        With ``on_preview``, a backend that can make a cheap early draft (LTX-2: two-stage qualities) hands it
        over through that callback as soon as it exists, before the final video is done; without, none is made."""
        ...

    def extend(
        self,
        source: Path,
        request: VideoRequest,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
    ) -> GenerationResult:
        """Continue the finished video ``source`` by ``request.duration`` seconds from its last frames, sound
        continuing; write the WHOLE video (source + new frames, source + new audio) to ``out_path``, at the
        source's size. Raises ``InvalidRequest(field="video")`` for a source it cannot continue. Only called when
        ``capabilities.extend``."""
        ...

    def retake(
        self,
        source: Path,
        request: VideoRequest,
        start: float,
        end: float,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
    ) -> GenerationResult:
        """Regenerate ``[start, end)`` seconds of the finished video ``source`` (picture and sound) with
        ``request``'s prompt and seed, keeping every other frame; write the WHOLE video to ``out_path``. The range
        follows ``pixgen.core.retake``. Only called when ``capabilities.retake``."""
        ...

    def sound(
        self,
        source: Path | None,
        request: VideoRequest,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
    ) -> GenerationResult:
        """New sound for the video ``source`` (None: the request's ``video``) with ``request``'s prompt and seed:
        write ``out_path`` with the source's video stream copied as it is (the frames bit for bit) and the new
        sound as its one audio track. ``InvalidRequest(field="video")`` for a video it cannot take. Only called
        when ``capabilities.sound_for_video``."""
        ...


Finish = Callable[[], GenerationResult]  # a generate job's last part (decode and encode), run once


@runtime_checkable
class FinishesAside(Protocol):
    """An engine whose generate jobs come in two parts: ``start_generate`` runs everything up to the video's decode
    (text, denoising, sound) and returns the rest as a ``Finish``, which needs neither the transformer nor anything
    the next job's first part touches. A worker with ``--overlap-jobs`` runs one job's ``Finish`` on a thread of
    its own while it starts the next job (``pixgen.jobs.worker``); ``generate`` is the two parts one after the
    other."""

    @property
    def finishes_aside(self) -> bool:
        """Whether, as loaded, a ``Finish`` may run beside the next job (LTX-2: not where a memory mode moves the
        VAE on and off the GPU)."""
        ...

    def start_generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                       should_cancel: Callable[[], bool] = never_cancelled,
                       on_preview: PreviewCallback | None = None) -> Finish:
        """``generate`` up to the decode; the ``Finish`` writes ``out_path`` and returns the result. Progress,
        cancel and errors are as ``generate``'s, the ``Finish``'s included."""
        ...
