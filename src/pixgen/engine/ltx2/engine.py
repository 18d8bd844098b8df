"""LTX-2 backend on diffusers' own pipelines: one folder loaded once, many requests served.

A job is composed of stage blocks that each take the job's ``Run`` (progress, cancel, timings, step count):

1. ``_text``: the prompt as used (thinking, presets, the folder's enhancer), encoded once for both stages.
2. ``_stage_one``: denoise at the generation size with the recipe's sigmas and guidance. Route by conditions:
   none → ``LTX2Pipeline``; a start frame → ``LTX2ImageToVideoPipeline``; frames at other indices (start + end,
   an extension's context) → ``LTX2ConditionPipeline``; a control video → ``LTX2InContextPipeline`` with its
   IC-LoRA (``control.py``).
3. ``_stage_two`` (the recipe's two-stage qualities, when the folder has a latent upsampler): ×2 latent upsample,
   then the reference refine: re-noised to the first stage-2 sigma, unguided (one transformer pass a step, video
   and audio), with the folder's distilled LoRA when it has one, image conditions re-applied at full size; the
   recipe says which stage's audio the job keeps.
4. ``_audio``: audio VAE + vocoder (float32), cut or padded to length.
5. ``_decode_into``: the streaming tile decode, each tile's frames cropped to the output and pushed straight into
   the MP4 writer.

``generate`` runs 1–4 per shot (one, or several with ``multi_clip``; their latents are small) then 5 for each;
``extend`` runs the same blocks with the source's last frames as the condition, ``retake`` with the frames either
side of the range it regenerates, ``sound`` (2–4 only) with every frame of the source held fixed. Frames are
generated on the grid size that covers the output and cropped to it (``geometry.py``); the sampling recipe is the
folder's (``recipes.py``), reported at load and with every job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
from diffusers.pipelines.ltx2.utils import (
    I2V_DEFAULT_SYSTEM_PROMPT,
    LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT,
    LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT,
    T2V_DEFAULT_SYSTEM_PROMPT,
)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pixgen.core.keyframes import check_keyframe_latents, frame_at, latent_index
from pixgen.core.progress import Progress, ProgressCallback, StageShares, no_progress
from pixgen.core.sizes import FPS, nearest_aspect_ratio, output_size
from pixgen.core.spec import VideoRequest
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.engine.base import (
    EngineOptions,
    Extension,
    Finish,
    GenerationResult,
    PreviewCallback,
    Provenance,
    Retake,
    ShotInfo,
    ShotRun,
    SoundtrackFit,
    Timings,
    never_cancelled,
)
from pixgen.engine.ltx2.control import ControlReference, ControlVideos
from pixgen.engine.ltx2.decode import Crop, stream_frames
from pixgen.engine.ltx2.duration import choose_frames, has_duration_head
from pixgen.engine.ltx2.extend import iter_source_frames
from pixgen.engine.ltx2.geometry import Geometry, plan_geometry
from pixgen.engine.ltx2.hold import Hold, holding
from pixgen.engine.ltx2.loading import Pipelines, load_pipelines, resolve_device, resolve_dtype
from pixgen.engine.ltx2.lora import PresetLoras
from pixgen.engine.ltx2.memory import (
    FINISH_ASIDE_MODES,
    WeightBytes,
    apply_memory_mode,
    full_load_device_map,
    plan_memory,
)
from pixgen.engine.ltx2.memory import describe as describe_memory
from pixgen.engine.ltx2.parallel import DiscardWriter, ParallelRuntime, attach_parallel, guidance_kwargs
from pixgen.engine.ltx2.preview import preview_crop, write_preview
from pixgen.engine.ltx2.recipes import REFINE_LORA_GLOB, Detected, Guidance, Recipe, detect
from pixgen.engine.ltx2.speed import finish_transformer, prepare_transformer
from pixgen.engine.ltx2.warmup import warm_up
from pixgen.engine.prompting import PromptPlan
from pixgen.engine.warmup import WarmupState
from pixgen.errors import Cancelled, GenerationError, InvalidRequest
from pixgen.media.images import image_from_data_uri
from pixgen.media.mp4 import Mp4Writer, fit_audio

log = logging.getLogger("pixgen.engine")


@dataclass(frozen=True)
class PlannedKeyframe:
    image: Image.Image
    index: int  # the latent it pins (``core.keyframes.latent_index``)
    strength: float


@dataclass(frozen=True)
class Plan:
    """Everything resolved about one request before the model runs."""

    request: VideoRequest  # with a seed
    geometry: Geometry
    start_image: Image.Image | None
    end_image: Image.Image | None
    keyframes: tuple[PlannedKeyframe, ...] = ()

    @property
    def width(self) -> int:
        return self.geometry.width

    @property
    def height(self) -> int:
        return self.geometry.height


@dataclass
class Run:
    """One job's context, handed to every stage block: progress and cancel, the denoising steps done of the
    job's total (across stages and shots), and the seconds spent per stage."""

    on_progress: ProgressCallback
    should_cancel: Callable[[], bool]
    # Waits for the device's queued work: GPU kernels run asynchronously, so a stage's time is only its own once
    # its work has finished (one wait per stage, not per step).
    sync: Callable[[], None] = lambda: None
    seed: int = 0  # the job's (decode noise, for a VAE that takes it)
    on_preview: PreviewCallback | None = None  # who takes the early draft (None: make none)
    preview_path: Path | None = None
    total_steps: int = 0
    steps_done: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    control: ControlReference | None = None  # a control-video job's reference (stage 1 only: ``control.py``)
    # The sigmas the current shot's stage blocks ran ("stage1", "stage2"): what the manifest records.
    sigmas: dict[str, tuple[float, ...]] = field(default_factory=dict)
    stages: StageShares = LTX2_CAPABILITIES.stages  # the progress bar's stages and shares

    def report(self, stage: str, step: int = 0, total: int = 1) -> None:
        self.on_progress(Progress(stage, step, total, self.stages))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def check_cancel(self, where: str) -> None:
        if self.should_cancel():
            raise Cancelled(f"cancelled {where}")

    def step_callback(self):
        """The pipelines' ``callback_on_step_end``: one denoising step done, then a look at the cancel flag."""

        def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            self.steps_done += 1
            self.report("denoise", self.steps_done, self.total_steps)
            self.check_cancel("during denoising")
            return {}

        return callback


@dataclass(frozen=True)
class Embeds:
    prompt_embeds: torch.Tensor
    prompt_attention_mask: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None  # only when the recipe's guidance uses them
    negative_prompt_attention_mask: torch.Tensor | None = None

    def for_guidance(self, guidance: Guidance) -> dict[str, torch.Tensor | None]:
        """The embeddings a stage with ``guidance`` takes: the negative ones only where CFG uses them (an
        unguided stage would otherwise re-encode an empty negative prompt)."""
        out: dict[str, torch.Tensor | None] = {"prompt_embeds": self.prompt_embeds,
                                               "prompt_attention_mask": self.prompt_attention_mask}
        if guidance.uses_negative_prompt:
            out["negative_prompt_embeds"] = self.negative_prompt_embeds
            out["negative_prompt_attention_mask"] = self.negative_prompt_attention_mask
        return out


@dataclass(frozen=True)
class Latents:
    video: torch.Tensor  # (1, C, F, H, W), denormalized, as the pipelines return them
    audio: torch.Tensor


@dataclass(frozen=True)
class FrameCondition:
    """Frames that pin the video at a latent index (0: the start, -1: the end), at the full generation size."""

    frames: np.ndarray  # uint8 (F, gen_height, gen_width, 3)
    index: int
    strength: float = 1.0
    image: Image.Image | None = None  # the picture as given, for the prompt enhancer

    def at(self, size: tuple[int, int]) -> np.ndarray:
        if self.frames.shape[2:0:-1] == size:
            return self.frames
        return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in self.frames])

    @property
    def is_start_image(self) -> bool:
        return self.index == 0 and self.frames.shape[0] == 1 and self.strength == 1.0


@dataclass(frozen=True)
class RenderedShot:
    prompt: PromptPlan  # as used
    latents: Latents
    audio: np.ndarray | None
    run: ShotRun  # seed, prompt and sigmas, for the manifest


class LTX2Engine:
    name = "ltx2"
    capabilities = LTX2_CAPABILITIES

    def __init__(self, folder: Path, pipes: Pipelines, detected: Detected, device: torch.device, *,
                 memory: str = "full") -> None:
        self.folder = Path(folder)
        self.pipes = pipes
        self.detected = detected
        self.recipe: Recipe = detected.recipe
        self.device = device
        self.memory = memory  # the memory mode the weights were placed for
        self.speed: dict[str, object] = {}  # the speed options it was loaded with (for the manifest)
        self.parallel: ParallelRuntime | None = None  # this rank's group, when one job runs over several
        self.options = EngineOptions()  # as loaded (``load``)
        self._finish_stream: torch.cuda.Stream | None = None  # where ``start_generate``'s finishes run on a GPU
        self.audio_sample_rate = int(pipes.text.vocoder.config.output_sampling_rate)
        self.audio_vae_rate = int(pipes.text.audio_vae.config.sample_rate)  # what the audio VAE encodes
        # Under the offload modes every adapter goes in before the weights are placed: group offloading moves only
        # the parameters a block had when it was set up, and diffusers' LoRA loader re-applies model offloading
        # its own way (which refuses a group-offloaded text encoder).
        self.loras = PresetLoras(pipes.text, self.folder, refine_file=self._refine_lora_file(),
                                 preload=memory in ("offload", "group-offload"),
                                 compute_dtype=pipes.text.text_encoder.dtype)
        self.control = ControlVideos(pipes, self.folder, self.loras)

    # -- loading --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path, options: EngineOptions = EngineOptions()) -> LTX2Engine:
        """Load ``folder`` as ``options`` say: onto the worker's GPU (or the CPU) in bfloat16 (float32 on a CPU), in
        the memory mode that fits (``memory.py``), with the speed options asked for (``speed.py``) and the folder's
        detected recipe (or the one named)."""
        folder = Path(folder)
        _quiet_progress_bars()
        detected = detect(folder, name=options.recipe)  # a bad pixgen.json fails before the weights load
        dev = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, dev)
        weights = WeightBytes.from_folder(folder, dtype)
        if options.fp8_compute:
            weights = weights.with_float8_transformer()
        plan = plan_memory(options.memory, weights, dev)
        pipes = load_pipelines(folder, device=dev, dtype=dtype, device_map=full_load_device_map(plan.mode, dev))
        engine = cls(folder, pipes, detected, dev, memory=plan.mode)  # loads the stage-2 LoRA (and, for group
        engine.options = options
        engine.speed = {"compile": options.compile, "attention_backend": options.attention_backend,
                        "step_cache": options.step_cache, "fp8_compute": options.fp8_compute}
        # float8 layers and compiled blocks before the memory mode's hooks, the step cache's after (speed.py)
        speed = prepare_transformer(pipes.text.transformer, options, dev, dtype)
        apply_memory_mode(pipes.modules, plan.mode, dev, dtype)  # offload, the presets) before placing weights
        speed += finish_transformer(pipes.text.transformer, options)
        log.info("%s on %s in %s: %s; %s", folder, dev, dtype, detected.summary(), describe_memory(plan, weights))
        for done in speed:
            log.info("%s: %s", folder, done)
        engine.parallel = attach_parallel(engine, options)  # None unless this process is a rank of a group
        if engine.pipes.upsample is None:
            log.warning("%s has no latent_upsampler: every quality is generated in one stage", folder)
        if engine.two_stage_qualities and engine.recipe.refine_lora and not engine.loras.has_refine:
            log.warning("%s has no stage-2 distilled LoRA (%s at its root): stage 2 refines with the base model",
                        folder, engine.recipe.refine_lora)
        if not engine.has_prompt_enhancer:
            log.info("%s has no prompt enhancer: thinking uses the built-in rewriter", folder)
        return engine

    def warm_up(self, value: str | None = None, **callbacks) -> WarmupState:
        """Run each shape of ``value`` (default: the ``warmup`` option it was loaded with) once (``warmup.py``)."""
        return warm_up(self, self.options.warmup if value is None else value, **callbacks)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (the text encoder's: the transformer's weights may be stored in float8)."""
        return self.pipes.text.text_encoder.dtype

    @property
    def writes_output(self) -> bool:
        """False on a group's ranks but rank 0: they share the denoising; rank 0 decodes and writes the video."""
        return self.parallel is None or self.parallel.writes_output

    @property
    def two_stage_qualities(self) -> tuple[str, ...]:
        return self.recipe.two_stage_qualities if self.pipes.upsample is not None else ()

    @property
    def has_prompt_enhancer(self) -> bool:
        """LTX-2's enhancer: a dedicated ``prompt_enhancer`` (LTX-2.5), or the Gemma 3 text encoder of LTX-2.0/2.3,
        which doubles as its own; either way ``enhance_prompt`` needs the folder's ``processor``."""
        return getattr(self.pipes.text, "processor", None) is not None

    def _refine_lora_file(self) -> Path | None:
        if not self.recipe.refine_lora:
            return None
        found = sorted(self.folder.glob(self.recipe.refine_lora or REFINE_LORA_GLOB))
        return found[0] if found else None

    # -- planning -------------------------------------------------------------------------------------------
    def plan(self, request: VideoRequest) -> Plan:
        request = request.with_seed()
        start = end = None
        if request.image_input is not None:
            start = image_from_data_uri(request.image_input, field="image_input")
            if request.aspect_ratio is None:
                request = request.model_copy(update={"aspect_ratio": nearest_aspect_ratio(*start.size)})
        if request.end_image_input is not None:
            end = image_from_data_uri(request.end_image_input, field="end_image_input")
        clock = self.capabilities.frames_per_latent
        if request.keyframes:
            check_keyframe_latents(request.keyframes, request.seconds, clock, start_image=start is not None,
                                   end_image=end is not None)
        keyframes = tuple(
            PlannedKeyframe(image_from_data_uri(k.image, field=f"keyframes[{i}].image"),
                            latent_index(frame_at(k.time), clock), k.strength)
            for i, k in enumerate(request.keyframes or ()))
        width, height = output_size(request.ratio, request.quality)
        geometry = plan_geometry(width, height, two_stage=request.quality in self.two_stage_qualities)
        return Plan(request, geometry, start, end, keyframes)

    @property
    def has_duration_head(self) -> bool:
        """LTX-2.5's duration head (``duration_head/``): ``duration: "auto"`` (``duration.py``)."""
        return has_duration_head(self.pipes.text)

    def choose_frames(self, run: Run, embeds: Embeds) -> int:
        """``duration: "auto"``: the frame count the folder's duration head gives the prompt of ``embeds``;
        ``InvalidRequest`` naming ``duration`` for a folder without one (the API refuses that at submit)."""
        if not self.has_duration_head:
            raise InvalidRequest(f'duration "auto" needs a duration head (LTX-2.5\'s duration_head/), which '
                                 f"{self.folder} does not have; give duration in seconds", field="duration")
        with run.timed("text"):
            return choose_frames(self.pipes.text, embeds.prompt_embeds, embeds.prompt_attention_mask,
                                 seconds=self.capabilities.durations)

    def steps_per_shot(self, two_stage: bool) -> int:
        return self.recipe.num_inference_steps + (len(self.recipe.refine_sigmas) if two_stage else 0)

    # -- the routes: one module each (route_generate.py, route_extend.py, route_retake.py) -----------------------
    # Imported when called: each route module builds on this class's stage blocks.
    def generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                 should_cancel: Callable[[], bool] = never_cancelled,
                 on_preview: PreviewCallback | None = None) -> GenerationResult:
        """``request`` into ``out_path`` (``route_generate.py``): one shot, or several with ``multi_clip``."""
        if request.sound_only:  # new sound for the request's video (the command line's --video --sound-only)
            return self.sound(None, request, out_path, on_progress, should_cancel)
        from pixgen.engine.ltx2.route_generate import generate

        return generate(self, request, Path(out_path), on_progress, should_cancel, on_preview)

    @property
    def finishes_aside(self) -> bool:
        """A job's decode and encode may run beside the next job's denoising (``FinishesAside``): the VAE stays on
        the device in this memory mode (``memory.FINISH_ASIDE_MODES``), and one process runs the whole job."""
        return self.memory in FINISH_ASIDE_MODES and self.parallel is None

    def start_generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                       should_cancel: Callable[[], bool] = never_cancelled,
                       on_preview: PreviewCallback | None = None) -> Finish:
        """``generate`` up to the decode (``route_generate.render``); the ``Finish`` decodes and encodes. On a GPU it
        runs on a CUDA stream of its own, after the first part's queued work, so that the next job's kernels,
        queued on the caller's stream meanwhile, share the GPU with it instead of waiting behind it."""
        if request.sound_only:
            result = self.sound(None, request, out_path, on_progress, should_cancel)
            return lambda: result
        from pixgen.engine.ltx2.route_generate import render

        finish = render(self, request, Path(out_path), on_progress, should_cancel, on_preview)
        if self.device.type != "cuda":
            return finish
        rendered = torch.cuda.Event()
        rendered.record()  # on this thread's stream, after the first part's kernels
        stream = self._aside_stream()

        def finish_on_its_stream() -> GenerationResult:
            with torch.cuda.stream(stream):
                stream.wait_event(rendered)
                try:
                    return finish()
                finally:
                    # Everything of the first part this stream read is released when ``finish`` is dropped: its
                    # reads must be done by then, or the caching allocator could hand that memory to the next job.
                    stream.synchronize()

        return finish_on_its_stream

    def _aside_stream(self) -> torch.cuda.Stream:
        if self._finish_stream is None:
            self._finish_stream = torch.cuda.Stream(self.device)
        return self._finish_stream

    def extend(self, source: Path, request: VideoRequest, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """Continue ``source`` (an MP4 at 24 fps) by ``request.duration`` s; ``out_path`` gets the whole video:
        ``N`` source frames + ``duration × 24`` new ones, at the source's size (``route_extend.py``; the rule is
        ``extend.py``'s)."""
        from pixgen.engine.ltx2.route_extend import extend

        _known_duration(request, "an extension's duration is the seconds it adds")
        return extend(self, Path(source), request, Path(out_path), on_progress, should_cancel)

    def retake(self, source: Path, request: VideoRequest, start: float, end: float, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """Regenerate ``[start, end)`` s of ``source`` (video and sound); ``out_path`` gets the whole video
        (``route_retake.py``; the window follows ``pixgen.core.retake``)."""
        from pixgen.engine.ltx2.route_retake import retake

        _known_duration(request, "a retake keeps its source's length")
        return retake(self, Path(source), request, start, end, Path(out_path), on_progress, should_cancel)

    def sound(self, source: Path | None, request: VideoRequest, out_path: Path,
              on_progress: ProgressCallback = no_progress,
              should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """New sound for ``source`` (None: the request's ``video``): its frames held fixed while the audio is
        denoised; ``out_path`` gets the source's video stream as it is and the new sound (``route_sound.py``)."""
        from pixgen.engine.ltx2.route_sound import sound

        return sound(self, None if source is None else Path(source), request, Path(out_path), on_progress,
                     should_cancel)

    def _result(self, run: Run, out_path: Path, request: VideoRequest, req: VideoRequest, geometry: Geometry,
                num_frames: int, *, audio: bool, prompt: str, used: PromptPlan, shot_runs: tuple[ShotRun, ...],
                loras: tuple[str, ...], aspect_ratio: str | None = None, shots: tuple[ShotInfo, ...] = (),
                extension: Extension | None = None, retake: Retake | None = None,
                soundtrack: SoundtrackFit | None = None, sound_only: bool = False) -> GenerationResult:
        """THE result of every route: ``request`` as asked, ``req`` as run (seeded), the prompt as used (``used``:
        the first shot's plan), one ``ShotRun`` per shot for the provenance, and what only one route knows."""
        return GenerationResult(
            path=Path(out_path), width=geometry.width, height=geometry.height, num_frames=num_frames,
            seconds=num_frames / FPS, seed=req.fixed_seed, has_audio=audio, prompt=prompt,
            original_prompt=request.prompt, negative_prompt=used.negative_prompt, thinking=used.thinking,
            aspect_ratio=aspect_ratio, quality=req.quality, generation_size=(geometry.gen_width, geometry.gen_height),
            two_stage=geometry.two_stage, stage2_lora=geometry.two_stage and self.loras.has_refine,
            recipe=self.recipe.name, loras=loras, shots=shots, extension=extension, retake=retake,
            sound_only=sound_only,
            soundtrack=soundtrack,
            timings=Timings.from_mapping(run.timings), provenance=self._provenance(shot_runs))

    def _copy_source(self, run: Run, writer: Mp4Writer, path: Path, start: int, stop: int, num_frames: int) -> None:
        """The source's decoded frames ``[start, stop)`` into ``writer``, unchanged."""
        if not self.writes_output:
            return
        with run.timed("encode"):
            for frames in iter_source_frames(path, start=start, stop=stop):
                writer.write_frames(frames)
                run.report("decode", writer.frames_written, num_frames)
                run.check_cancel("while copying the source video")

    # -- stage blocks ---------------------------------------------------------------------------------------
    def _preview(self, run: Run, geometry: Geometry, latents: torch.Tensor, num_frames: int) -> None:
        """Stage 1's latents decoded at half size into the early draft, handed to ``run.on_preview``. A draft
        that fails is logged and skipped: the final video does not depend on it."""
        assert run.on_preview is not None and run.preview_path is not None
        try:
            with run.timed("preview"), torch.no_grad():
                decoded, temb = self._prepare_decode(latents, run.seed)
                crop = preview_crop(geometry)
                preview = write_preview(run.preview_path, crop,
                                        stream_frames(self.pipes.text.vae, decoded, temb, crop, limit=num_frames),
                                        num_frames=num_frames)
        except Exception:  # a draft is a convenience, never the job's failure
            log.exception("the early preview failed; the job goes on without one")
            run.preview_path.unlink(missing_ok=True)
            return
        run.on_preview(preview)

    def _provenance(self, runs: tuple[ShotRun, ...]) -> Provenance:
        return Provenance(backend=self.name, recipe_settings=self.recipe.describe(), runs=runs,
                          dtype=str(self.dtype).removeprefix("torch."), device=str(self.device),
                          memory=self.memory, options=dict(self.speed))

    def _run(self, on_progress: ProgressCallback, should_cancel: Callable[[], bool]) -> Run:
        if self.device.type == "cuda":
            # This thread's stream only: a job finishing beside it (``start_generate``) is not this job's time.
            return Run(on_progress, should_cancel, sync=lambda: torch.cuda.current_stream(self.device).synchronize())
        return Run(on_progress, should_cancel)

    def _text(self, run: Run, prompt: PromptPlan, seed: int,
              image: Image.Image | None) -> tuple[PromptPlan, Embeds]:
        """The prompt as used (rewritten by the folder's enhancer when asked), and its embeddings."""
        with run.timed("text"), torch.no_grad():
            if prompt.enhance_with_model:
                prompt = prompt.with_model_rewrite(self._enhance(prompt.enhancer_input, seed, image))
            pe, pm, ne, nm = self.pipes.text.encode_prompt(
                prompt=prompt.prompt, negative_prompt=prompt.negative_prompt,
                do_classifier_free_guidance=self.recipe.guidance.uses_negative_prompt,
                max_sequence_length=self.recipe.max_sequence_length, device=self.device)
        return prompt, Embeds(pe, pm, ne, nm)

    def _sampling(self, run: Run, embeds: Embeds, guidance: Guidance, sigmas: list[float], seed: int,
                  size: tuple[int, int], num_frames: int) -> dict:
        """The pipeline arguments every denoising call shares."""
        return dict(width=size[0], height=size[1], num_frames=num_frames, frame_rate=float(FPS), sigmas=sigmas,
                    num_inference_steps=len(sigmas), generator=torch.Generator("cpu").manual_seed(seed),
                    use_cross_timestep=self.recipe.use_cross_timestep,
                    max_sequence_length=self.recipe.max_sequence_length, output_type="latent", return_dict=False,
                    callback_on_step_end=run.step_callback(), **embeds.for_guidance(guidance),
                    **guidance.pipeline_kwargs(), **guidance_kwargs(self.parallel, guidance))

    def stage_one_sigmas(self, size: tuple[int, int], num_frames: int) -> list[float]:
        vae = self.pipes.text.vae
        tokens = ((num_frames - 1) // vae.temporal_compression_ratio + 1) * \
            (size[0] // vae.spatial_compression_ratio) * (size[1] // vae.spatial_compression_ratio)
        config = self.pipes.scheduler_config
        return self.recipe.stage_one_sigmas(tokens, base_shift=config.get("base_shift", 0.95),
                                            max_shift=config.get("max_shift", 2.05),
                                            terminal=config.get("shift_terminal") or 0.1)

    def _stage_one(self, run: Run, geometry: Geometry, embeds: Embeds, seed: int, num_frames: int,
                   conditions: list[FrameCondition], *, hold: Hold | None = None) -> Latents:
        """Denoise from noise at stage 1's size, pinned to ``conditions``; with ``hold``, that stream's clean
        latents stay fixed (at stage 1's size) while the other is denoised (``hold.py``)."""
        size = geometry.stage_one_size
        sigmas = self.stage_one_sigmas(size, num_frames)
        run.sigmas = {"stage1": tuple(sigmas)}  # a new shot's first stage: the record starts again
        args = self._sampling(run, embeds, self.recipe.guidance, sigmas, seed, size, num_frames)
        args.update(_held_inputs(hold))
        crf = self.recipe.image_condition_crf
        with run.timed("denoise"), holding(self.pipes.text.transformer, hold):
            if run.control is not None:
                video, audio = self.control.denoise(run.control, conditions=self._diffusers_conditions(
                    conditions, size), **args)
            elif not conditions:
                video, audio = self.pipes.text(**args)
            elif len(conditions) == 1 and conditions[0].is_start_image:
                video, audio = self.pipes.image(image=Image.fromarray(conditions[0].at(size)[0]), image_crf=crf,
                                                **args)
            else:
                video, audio = self.pipes.condition(conditions=self._diffusers_conditions(conditions, size), **args)
        if hold is not None:
            video, audio = hold.take(video, audio)
        return Latents(video, audio)

    def _stage_two(self, run: Run, geometry: Geometry, embeds: Embeds, latents: Latents, seed: int,
                   num_frames: int, conditions: list[FrameCondition], *, report: bool,
                   hold: Hold | None = None) -> Latents:
        """×2 latent upsample, then the refine: re-noised to the first stage-2 sigma, unguided, with the distilled
        LoRA when the folder has it, the conditions re-applied at full size; with ``hold``, that stream's clean
        latents (at full size) stay fixed, as in stage 1, and are the stage's result for that stream."""
        if report:
            run.report("upsample")
        assert self.pipes.upsample is not None  # a two-stage quality needs the folder's upsampler
        with run.timed("upsample"):
            video = self.pipes.upsample(latents=latents.video, output_type="latent", return_dict=False)[0]
        sigmas = list(self.recipe.refine_sigmas)
        run.sigmas["stage2"] = tuple(sigmas)
        size = geometry.full_size
        args = self._sampling(run, embeds, self.recipe.refine_guidance, sigmas, seed, size, num_frames)
        args.update(latents=video, audio_latents=latents.audio, noise_scale=sigmas[0])
        args.update(_held_inputs(hold))
        with run.timed("refine"), self.loras.refine(), holding(self.pipes.text.transformer, hold):
            if conditions:
                video, audio = self.pipes.condition(conditions=self._diffusers_conditions(conditions, size), **args)
            else:
                video, audio = self.pipes.text(**args)
        if hold is not None:
            return Latents(*hold.take(video, audio))
        return Latents(video, audio if self.recipe.refine_audio == "stage2" else latents.audio)

    def _diffusers_conditions(self, conditions: list[FrameCondition], size: tuple[int, int]) -> list:
        crf = self.recipe.image_condition_crf
        return [LTX2VideoCondition(frames=c.at(size), index=c.index, strength=c.strength, crf=crf)
                for c in conditions]

    def _image_conditions(self, geometry: Geometry, start: Image.Image | None, end: Image.Image | None,
                          keyframes: tuple[PlannedKeyframe, ...] = (), *,
                          start_strength: float = 1.0) -> list[FrameCondition]:
        """The start frame (latent 0, at ``start_strength``: below 1 it is no plain start image, so stage 1 takes
        the condition pipeline), the end frame (the last latent) and the keyframes (at their latents), each fitted to
        the output and mirrored out to the generation size; in time order."""
        pictures = [(image, index, strength) for image, index, strength in ((start, 0, start_strength), (end, -1, 1.0))
                    if image is not None]
        pictures += [(k.image, k.index, k.strength) for k in keyframes]
        out = []
        for image, index, strength in pictures:
            frames = np.asarray(geometry.condition_image(image, geometry.full_size))[None]
            out.append(FrameCondition(frames, index, strength=strength, image=image))
        return sorted(out, key=lambda c: c.index if c.index >= 0 else float("inf"))

    def _audio(self, run: Run, audio_latents: torch.Tensor, seconds: float) -> np.ndarray:
        """The waveform (2, n) at the vocoder's rate, cut or zero-padded to ``seconds``."""
        text = self.pipes.text
        with run.timed("audio"), torch.no_grad():
            mel = text.audio_vae.decode(audio_latents.to(text.audio_vae.dtype), return_dict=False)[0]
            waveform = text.vocoder(mel.to(text.vocoder.dtype))[0].float().cpu().numpy()
        return fit_audio(waveform, self.audio_sample_rate, seconds)

    def _enhance(self, text: str, seed: int, image: Image.Image | None) -> str:
        """LTX-2's prompt enhancer on ``text`` (with the start frame when there is one), seeded: repeatable."""
        pipe = self.pipes.text
        dedicated = getattr(pipe, "prompt_enhancer", None) is not None
        if image is not None:
            system = LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT if dedicated else I2V_DEFAULT_SYSTEM_PROMPT
        else:
            system = LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT if dedicated else T2V_DEFAULT_SYSTEM_PROMPT
        return pipe.enhance_prompt(text, system_prompt=system, seed=seed, device=self.device, image=image)[0]

    @contextmanager
    def _mp4_out(self, run: Run, out_path: Path, geometry: Geometry, audio: np.ndarray | None,
                 num_frames: int) -> Iterator[Mp4Writer]:
        """The output file: audio written first, frames pushed by the caller, closed and checked at the end;
        removed if anything fails (cancel included)."""
        if not self.writes_output:
            yield DiscardWriter()  # type: ignore[misc]  # rank 0 of this group writes the video
            return
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        writer = Mp4Writer(out_path, geometry.width, geometry.height, background=self.options.overlap,
                           audio_sample_rate=self.audio_sample_rate if audio is not None else None)
        try:
            if audio is not None:
                with run.timed("encode"):
                    writer.write_audio(audio)
            yield writer
            run.report("encode")
            with run.timed("encode"):
                writer.close()
        except BaseException:
            writer.abort()
            raise
        if writer.frames_written != num_frames:
            raise GenerationError(f"wrote {writer.frames_written} frames, expected {num_frames}")
        run.report("encode", 1, 1)

    def _decode_into(self, run: Run, writer: Mp4Writer, latents: torch.Tensor, geometry: Geometry,
                     num_frames: int, *, skip: int = 0, limit: int | None = None) -> None:
        """Decode ``latents`` into ``writer``, dropping the first ``skip`` frames and writing at most ``limit``
        (``num_frames``: the whole video's, for progress)."""
        if not self.writes_output:
            return
        vae = self.pipes.text.vae
        crop = Crop(geometry.left, geometry.top, geometry.width, geometry.height)
        decode_s = encode_s = 0.0
        with torch.no_grad():
            latents, temb = self._prepare_decode(latents, run.seed)
            t0 = time.perf_counter()
            for frames in stream_frames(vae, latents, temb, crop, skip=skip, limit=limit):
                t1 = time.perf_counter()
                decode_s += t1 - t0
                writer.write_frames(frames)
                del frames  # not held while the next tile decodes (see stream_frames)
                t0 = time.perf_counter()
                encode_s += t0 - t1
                run.report("decode", writer.frames_written, num_frames)
                run.check_cancel("while decoding")
        run.timings["decode"] = run.timings.get("decode", 0.0) + decode_s
        run.timings["encode"] = run.timings.get("encode", 0.0) + encode_s

    def _prepare_decode(self, latents: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents in the VAE's dtype, and the decoder's timestep for a VAE with timestep conditioning (with the
        recipe's decode noise mixed in as ``LTX2Pipeline`` does, in normalized space)."""
        vae = self.pipes.text.vae
        if not vae.config.timestep_conditioning:
            return latents.to(vae.dtype), None
        pipe = self.pipes.text
        timestep = self.recipe.decode_timestep
        scale = self.recipe.decode_noise_scale if self.recipe.decode_noise_scale is not None else timestep
        if scale:
            mean, std, factor = vae.latents_mean, vae.latents_std, vae.config.scaling_factor
            normalized = pipe._normalize_latents(latents, mean, std, factor)
            noise = randn_tensor(latents.shape, generator=torch.Generator("cpu").manual_seed(seed),
                                 device=latents.device, dtype=latents.dtype)
            latents = pipe._denormalize_latents((1 - scale) * normalized + scale * noise, mean, std, factor)
        latents = latents.to(vae.dtype)
        return latents, torch.full((latents.shape[0],), timestep, device=latents.device, dtype=latents.dtype)


def _held_inputs(hold: Hold | None) -> dict[str, torch.Tensor]:
    """The pipeline argument that starts the held stream from its clean latents: it also fixes the stream's shape
    (the audio's length in latents), which the transformer's hook then keeps clean at every call."""
    if hold is None:
        return {}
    return {"audio_latents": hold.latents} if hold.modality == "audio" else {"latents": hold.latents}
def _known_duration(request: VideoRequest, why: str) -> None:
    """Extend and retake take no ``duration: "auto"`` (the API refuses it at submit; this is the engine's own check)."""
    if request.auto_duration:
        raise InvalidRequest(f'duration "auto" is for new videos: {why}', field="duration")


def _quiet_progress_bars() -> None:
    """No tqdm bars from diffusers/transformers: progress is ours to report. Warnings stay on (a silent dtype cast
    once hid a doubled model)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

