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
side of the range it regenerates. Frames are generated on the grid
size that covers the output and cropped to it (``geometry.py``); the sampling recipe is the folder's
(``recipes.py``), reported at load and with every job.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

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

from pixgen.core.keyframes import frame_at, latent_index
from pixgen.core.progress import Progress, ProgressCallback, no_progress
from pixgen.core.sizes import FPS, nearest_aspect_ratio, output_size
from pixgen.core.spec import VideoRequest
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.engine.base import (
    EngineOptions,
    Extension,
    GenerationResult,
    PreviewCallback,
    Provenance,
    Retake,
    ShotInfo,
    ShotRun,
    Timings,
    never_cancelled,
)
from pixgen.engine.ltx2.control import ControlReference, ControlVideos
from pixgen.engine.ltx2.decode import Crop, stream_frames
from pixgen.engine.ltx2.extend import iter_source_frames, read_source, stitch_audio
from pixgen.engine.ltx2.geometry import Geometry, plan_geometry
from pixgen.engine.ltx2.loading import Pipelines, load_pipelines, resolve_device, resolve_dtype
from pixgen.engine.ltx2.lora import PresetLoras
from pixgen.engine.ltx2.memory import WeightBytes, apply_memory_mode, full_load_device_map, plan_memory
from pixgen.engine.ltx2.memory import describe as describe_memory
from pixgen.engine.ltx2.multiclip import Shot, crossfade_samples, join_audio, plan_shots, shot_sample_lengths
from pixgen.engine.ltx2.preview import preview_crop, preview_path, write_preview
from pixgen.engine.ltx2.recipes import REFINE_LORA_GLOB, Detected, Guidance, Recipe, detect
from pixgen.engine.ltx2.retake import read_retake_source, splice_audio
from pixgen.engine.ltx2.speed import finish_transformer, prepare_transformer
from pixgen.engine.ltx2.warmup import warm_up
from pixgen.engine.prompting import PromptPlan, plan_prompt
from pixgen.engine.warmup import WarmupState
from pixgen.errors import Cancelled, GenerationError
from pixgen.media.audio import CROSSFADE_SECONDS
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

    def report(self, stage: str, step: int = 0, total: int = 1) -> None:
        self.on_progress(Progress(stage, step, total))

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
        out = {"prompt_embeds": self.prompt_embeds, "prompt_attention_mask": self.prompt_attention_mask}
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
        self.options = EngineOptions()  # as loaded (``load``)
        self.audio_sample_rate = int(pipes.text.vocoder.config.output_sampling_rate)
        # Under the offload modes every adapter goes in before the weights are placed: group offloading moves only
        # the parameters a block had when it was set up, and diffusers' LoRA loader re-applies model offloading
        # its own way (which refuses a group-offloaded text encoder).
        self.loras = PresetLoras(pipes.text, self.folder, refine_file=self._refine_lora_file(),
                                 preload=memory in ("offload", "group-offload"),
                                 compute_dtype=pipes.text.text_encoder.dtype)
        self.control = ControlVideos(pipes, self.folder, self.loras)

    # -- loading --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path, options: EngineOptions = EngineOptions()) -> "LTX2Engine":
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
        keyframes = tuple(
            PlannedKeyframe(image_from_data_uri(k.image, field=f"keyframes[{i}].image"),
                            latent_index(frame_at(k.time)), k.strength)
            for i, k in enumerate(request.keyframes or ()))
        width, height = output_size(request.ratio, request.quality)
        geometry = plan_geometry(width, height, two_stage=request.quality in self.two_stage_qualities)
        return Plan(request, geometry, start, end, keyframes)

    def steps_per_shot(self, two_stage: bool) -> int:
        return self.recipe.num_inference_steps + (len(self.recipe.refine_sigmas) if two_stage else 0)

    # -- generate ---------------------------------------------------------------------------------------------
    def generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                 should_cancel: Callable[[], bool] = never_cancelled,
                 on_preview: PreviewCallback | None = None) -> GenerationResult:
        run = self._run(on_progress, should_cancel)
        run.on_preview, run.preview_path = on_preview, preview_path(out_path)
        run.report("prepare")
        with run.timed("prepare"):
            plan = self.plan(request)
            shots = plan_shots(plan.request)
            run.control = self.control.reference(plan.request, plan.geometry)
        req, geometry = plan.request, plan.geometry
        run.seed = req.seed
        run.total_steps = self.steps_per_shot(geometry.two_stage) * len(shots)
        num_frames = req.num_frames
        seconds = (num_frames - 1) / FPS  # the audio's length: the video's clock from the first frame to the last
        audio_lengths = shot_sample_lengths(shots, self.audio_sample_rate, seconds)
        fade = crossfade_samples(self.audio_sample_rate) if len(shots) > 1 else 0
        prompts = [plan_prompt(req, has_enhancer=self.has_prompt_enhancer, prompt=shot.prompt) for shot in shots]

        # 1.–4. Each shot: text, stage 1, stage 2, audio.
        rendered: list[RenderedShot] = []
        with self.loras.job(prompts[0].loras) as adapters:
            for shot in shots:
                last = shot.index == len(shots) - 1
                conditions = self._image_conditions(geometry, plan.start_image if shot.index == 0 else None,
                                                    plan.end_image if last else None, plan.keyframes)
                rendered.append(self._render_shot(run, geometry, shot, prompts[shot.index], conditions,
                                                  audio_lengths[shot.index] + fade if req.generate_audio else None))
        audio = join_audio([r.audio for r in rendered], audio_lengths, fade) if req.generate_audio else None

        # 5. Video: each shot decoded tile by tile straight into the encoder, cut to its share of frames.
        with self._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
            for shot, shot_render in zip(shots, rendered):
                self._decode_into(run, writer, shot_render.latents.video, geometry, num_frames,
                                  limit=shot.num_frames)
        used = [r.prompt for r in rendered]
        prompt = used[0].prompt if len(shots) == 1 else " ".join(
            f"Shot {shot.index + 1}: {p.prompt}" for shot, p in zip(shots, used))
        return GenerationResult(
            path=Path(out_path), width=plan.width, height=plan.height, num_frames=num_frames,
            seconds=num_frames / FPS, seed=req.seed, has_audio=audio is not None, prompt=prompt,
            original_prompt=request.prompt, negative_prompt=used[0].negative_prompt, thinking=used[0].thinking,
            aspect_ratio=req.ratio, quality=req.quality, generation_size=(geometry.gen_width, geometry.gen_height),
            two_stage=geometry.two_stage, stage2_lora=geometry.two_stage and self.loras.has_refine,
            recipe=self.recipe.name, loras=(*adapters, *([run.control.adapter] if run.control else [])),
            timings=Timings.from_mapping(run.timings),
            shots=tuple(ShotInfo(**shot.describe(p.prompt)) for shot, p in zip(shots, used))
            if req.multi_clip else (), provenance=self._provenance(tuple(r.run for r in rendered)))

    def _render_shot(self, run: Run, geometry: Geometry, shot: Shot, prompt: PromptPlan,
                     conditions: list[FrameCondition], audio_samples: int | None) -> RenderedShot:
        """One shot's prompt as used, latents, and audio (``audio_samples`` long; None without audio)."""
        first = shot.index == 0
        if first:  # later shots' text time counts as denoising, so progress never goes back
            run.report("text")
        start = next((c.image for c in conditions if c.index == 0), None)
        prompt, embeds = self._text(run, prompt, shot.seed, start)
        latents = self._stage_one(run, geometry, embeds, shot.seed, shot.gen_frames, conditions)
        if geometry.two_stage:
            if first and run.on_preview is not None:
                self._preview(run, geometry, latents.video, shot.num_frames)
            latents = self._stage_two(run, geometry, embeds, latents, shot.seed + 1, shot.gen_frames, conditions,
                                      report=first)
        audio = None
        if audio_samples is not None:
            audio = self._audio(run, latents.audio, audio_samples / self.audio_sample_rate)
        return RenderedShot(prompt, latents, audio, ShotRun(shot.index, shot.seed, prompt.prompt,
                                                            prompt.negative_prompt, dict(run.sigmas)))

    # -- extend ---------------------------------------------------------------------------------------------
    def extend(self, source: Path, request: VideoRequest, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """Continue ``source`` (an MP4 at 24 fps) by ``request.duration`` s; ``out_path`` gets the whole video.

        ``N`` source frames + ``duration × 24`` new ones, at the source's size; the rule is in ``extend.py``.
        The blocks are ``generate``'s: text, stage 1 conditioned on the source's last frames at index 0, audio,
        and the streaming decode after the source's own frames.
        """
        run = self._run(on_progress, should_cancel)
        run.report("prepare")
        with run.timed("prepare"):
            req = request.with_seed()
            src = read_source(Path(source), sample_rate=self.audio_sample_rate)
            context = src.tail.shape[0]
            new_frames = req.duration * FPS
            gen_frames = context + new_frames  # 8k+1: context is 8k+1 and 24·d a multiple of 8
            geometry = plan_geometry(src.width, src.height, two_stage=False)
            prompt = plan_prompt(req, has_enhancer=self.has_prompt_enhancer)
        run.seed, run.total_steps = req.seed, self.steps_per_shot(False)
        num_frames = src.num_frames + new_frames
        seconds = (num_frames - 1) / FPS

        # 1.–2. Text, then stage 1 from the source's last frames (pinned at latent index 0).
        run.report("text")
        prompt, embeds = self._text(run, prompt, req.seed, Image.fromarray(src.tail[-1]))
        conditions = [FrameCondition(geometry.pad(src.tail), index=0)]
        with self.loras.job(prompt.loras) as adapters:
            latents = self._stage_one(run, geometry, embeds, req.seed, gen_frames, conditions)

        # 3. Audio: the source's, then the new clip's from the source's last frame on, crossfaded at the join.
        audio = None
        if src.audio is not None or req.generate_audio:
            sr = self.audio_sample_rate
            source_audio = src.audio if src.audio is not None else np.zeros((2, round(src.seconds * sr)), np.float32)
            start = round((context - 1) / FPS * sr)  # the source's last frame on the new clip's clock
            length = round(seconds * sr) - source_audio.shape[1]
            if req.generate_audio:
                new_audio = self._audio(run, latents.audio, (start + length) / sr)
            else:
                new_audio = np.zeros((2, start + length), np.float32)
            audio = stitch_audio(source_audio, new_audio, start=start, length=length,
                                 fade=round(CROSSFADE_SECONDS * sr))

        # 4. Video: the source's frames as they decode, then the new ones without the re-drawn context.
        with self._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
            with run.timed("encode"):
                for frames in iter_source_frames(src.path):
                    writer.write_frames(frames)
                    run.report("decode", writer.frames_written, num_frames)
                    run.check_cancel("while copying the source video")
            self._decode_into(run, writer, latents.video, geometry, num_frames, skip=context, limit=new_frames)
        return GenerationResult(
            path=Path(out_path), width=src.width, height=src.height, num_frames=num_frames, seconds=num_frames / FPS,
            seed=req.seed, has_audio=audio is not None, prompt=prompt.prompt, original_prompt=request.prompt,
            negative_prompt=prompt.negative_prompt, thinking=prompt.thinking, quality=req.quality,
            generation_size=(geometry.gen_width, geometry.gen_height), recipe=self.recipe.name,
            loras=tuple(adapters), timings=Timings.from_mapping(run.timings),
            provenance=self._provenance((ShotRun(0, req.seed, prompt.prompt, prompt.negative_prompt,
                                                 dict(run.sigmas)),)),
            extension=Extension(source_frames=src.num_frames, new_frames=new_frames, context_frames=context),
        )

    # -- retake ---------------------------------------------------------------------------------------------
    def retake(self, source: Path, request: VideoRequest, start: float, end: float, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """Regenerate ``[start, end)`` s of ``source`` (video and sound); ``out_path`` gets the whole video.

        The rule is ``core/retake.py``: a window of the source frames just before the range (at latent 0), the
        range, and single source frames after it (at their own latents) goes through stage 1; the range's frames
        are decoded from it, and every other frame is the source's own decoded frame, handed to the encoder as is.
        """
        run = self._run(on_progress, should_cancel)
        run.report("prepare")
        with run.timed("prepare"):
            req = request.with_seed()
            src = read_retake_source(Path(source), start, end, sample_rate=self.audio_sample_rate)
            window = src.window
            geometry = plan_geometry(src.width, src.height, two_stage=False)
            prompt = plan_prompt(req, has_enhancer=self.has_prompt_enhancer)
        run.seed, run.total_steps = req.seed, self.steps_per_shot(False)

        # 1.–2. Text, then stage 1 pinned to the frames either side of the range.
        run.report("text")
        near = src.before[-1] if src.before is not None else src.after[0] if src.after else None
        prompt, embeds = self._text(run, prompt, req.seed, Image.fromarray(near) if near is not None else None)
        conditions = [FrameCondition(geometry.pad(src.before), index=0)] if src.before is not None else []
        conditions += [FrameCondition(geometry.pad(frame[None]), index=window.after_latent + i)
                       for i, frame in enumerate(src.after)]
        with self.loras.job(prompt.loras) as adapters:
            latents = self._stage_one(run, geometry, embeds, req.seed, window.gen_frames, conditions)

        # 3. Audio: the source's, the window's new sound spliced into the range.
        audio = None
        if src.audio is not None:
            sr = self.audio_sample_rate
            new = self._audio(run, latents.audio, window.gen_frames / FPS)
            audio = splice_audio(src.audio, new, start=round(window.start / FPS * sr),
                                 end=min(round(window.end / FPS * sr), src.audio.shape[1]),
                                 offset=round(window.window_start / FPS * sr), fade=round(CROSSFADE_SECONDS * sr))

        # 4. Video: the source's frames before the range, the range decoded from the window, the source's after.
        num_frames = window.num_frames
        with self._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
            self._copy_source(run, writer, src.path, 0, window.start, num_frames)
            self._decode_into(run, writer, latents.video, geometry, num_frames, skip=window.before,
                              limit=window.frames)
            self._copy_source(run, writer, src.path, window.end, num_frames, num_frames)
        return GenerationResult(
            path=Path(out_path), width=src.width, height=src.height, num_frames=num_frames,
            seconds=num_frames / FPS, seed=req.seed, has_audio=audio is not None, prompt=prompt.prompt,
            original_prompt=request.prompt, negative_prompt=prompt.negative_prompt, thinking=prompt.thinking,
            quality=req.quality, generation_size=(geometry.gen_width, geometry.gen_height), recipe=self.recipe.name,
            loras=tuple(adapters), timings=Timings.from_mapping(run.timings),
            retake=Retake(start_frame=window.start, end_frame=window.end, source_frames=num_frames),
        )

    def _copy_source(self, run: Run, writer: Mp4Writer, path: Path, start: int, stop: int, num_frames: int) -> None:
        """The source's decoded frames ``[start, stop)`` into ``writer``, unchanged."""
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
        except Exception:  # noqa: BLE001 - a draft is a convenience, never the job's failure
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
            return Run(on_progress, should_cancel, sync=lambda: torch.cuda.synchronize(self.device))
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
                    **guidance.pipeline_kwargs())

    def stage_one_sigmas(self, size: tuple[int, int], num_frames: int) -> list[float]:
        vae = self.pipes.text.vae
        tokens = ((num_frames - 1) // vae.temporal_compression_ratio + 1) * \
            (size[0] // vae.spatial_compression_ratio) * (size[1] // vae.spatial_compression_ratio)
        config = self.pipes.scheduler_config
        return self.recipe.stage_one_sigmas(tokens, base_shift=config.get("base_shift", 0.95),
                                            max_shift=config.get("max_shift", 2.05),
                                            terminal=config.get("shift_terminal") or 0.1)

    def _stage_one(self, run: Run, geometry: Geometry, embeds: Embeds, seed: int, num_frames: int,
                   conditions: list[FrameCondition]) -> Latents:
        """Denoise from noise at stage 1's size, pinned to ``conditions``."""
        size = geometry.stage_one_size
        sigmas = self.stage_one_sigmas(size, num_frames)
        run.sigmas = {"stage1": tuple(sigmas)}  # a new shot's first stage: the record starts again
        args = self._sampling(run, embeds, self.recipe.guidance, sigmas, seed, size, num_frames)
        crf = self.recipe.image_condition_crf
        with run.timed("denoise"):
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
        return Latents(video, audio)

    def _stage_two(self, run: Run, geometry: Geometry, embeds: Embeds, latents: Latents, seed: int,
                   num_frames: int, conditions: list[FrameCondition], *, report: bool) -> Latents:
        """×2 latent upsample, then the refine: re-noised to the first stage-2 sigma, unguided, with the distilled
        LoRA when the folder has it, the conditions re-applied at full size."""
        if report:
            run.report("upsample")
        with run.timed("upsample"):
            video = self.pipes.upsample(latents=latents.video, output_type="latent", return_dict=False)[0]
        sigmas = list(self.recipe.refine_sigmas)
        run.sigmas["stage2"] = tuple(sigmas)
        size = geometry.full_size
        args = self._sampling(run, embeds, self.recipe.refine_guidance, sigmas, seed, size, num_frames)
        args.update(latents=video, audio_latents=latents.audio, noise_scale=sigmas[0])
        with run.timed("refine"), self.loras.refine():
            if conditions:
                video, audio = self.pipes.condition(conditions=self._diffusers_conditions(conditions, size), **args)
            else:
                video, audio = self.pipes.text(**args)
        return Latents(video, audio if self.recipe.refine_audio == "stage2" else latents.audio)

    def _diffusers_conditions(self, conditions: list[FrameCondition], size: tuple[int, int]) -> list:
        crf = self.recipe.image_condition_crf
        return [LTX2VideoCondition(frames=c.at(size), index=c.index, strength=c.strength, crf=crf)
                for c in conditions]

    def _image_conditions(self, geometry: Geometry, start: Image.Image | None, end: Image.Image | None,
                          keyframes: tuple[PlannedKeyframe, ...] = ()) -> list[FrameCondition]:
        """The start frame (latent 0), the end frame (the last latent) and the keyframes (at their latents), each
        fitted to the output and mirrored out to the generation size; in time order."""
        pictures = [(image, index, 1.0) for image, index in ((start, 0), (end, -1)) if image is not None]
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


def _quiet_progress_bars() -> None:
    """No tqdm bars from diffusers/transformers: progress is ours to report. Warnings stay on (a silent dtype cast
    once hid a doubled model)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

