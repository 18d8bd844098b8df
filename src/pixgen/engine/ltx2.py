"""LTX-2 backend on diffusers' own pipelines: one folder loaded once, many requests served.

Route by request: text → ``LTX2Pipeline``; start frame → ``LTX2ImageToVideoPipeline``; start + end frame →
``LTX2ConditionPipeline``. Qualities in ``two_stage_qualities`` go half size → ``LTX2LatentUpsamplePipeline`` →
short refine when the folder has a ``latent_upsampler``. Every stage returns latents; decoding streams tile by
tile into the MP4 writer, so memory does not grow with duration × size.

A request is one shot, or several with ``multi_clip`` (``multiclip.py``): each shot is generated in turn, its
latents kept (they are small), then the shots are decoded one after the other into the one writer. ``extend``
continues a finished video from its last frames (``extend.py`` has the rule).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    LTX2ConditionPipeline,
    LTX2ImageToVideoPipeline,
    LTX2LatentUpsamplePipeline,
    LTX2Pipeline,
)
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
from diffusers.pipelines.ltx2.utils import (
    I2V_DEFAULT_SYSTEM_PROMPT,
    LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT,
    LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT,
    T2V_DEFAULT_SYSTEM_PROMPT,
)
from PIL import Image

from pixgen.core.progress import Progress, ProgressCallback, no_progress
from pixgen.core.sizes import FPS, grid_size, nearest_aspect_ratio, output_size
from pixgen.core.spec import VideoRequest
from pixgen.engine import LTX2_CAPABILITIES
from pixgen.engine.base import Extension, GenerationResult, ShotInfo, Timings, never_cancelled
from pixgen.engine.decode import stream_frames
from pixgen.engine.extend import CROSSFADE_SECONDS as EXTEND_CROSSFADE_SECONDS
from pixgen.engine.extend import iter_source_frames, read_source, stitch_audio
from pixgen.engine.lora import PresetLoras
from pixgen.engine.multiclip import Shot, crossfade_samples, join_audio, plan_shots, shot_sample_lengths
from pixgen.engine.prompting import PromptPlan, plan_prompt
from pixgen.engine.sampling import SamplingSettings
from pixgen.errors import Cancelled, GenerationError, ModelError
from pixgen.media.images import fit_to_size, image_from_data_uri
from pixgen.media.mp4 import Mp4Writer, fit_audio

log = logging.getLogger("pixgen.engine")


@dataclass(frozen=True)
class Plan:
    """Everything resolved about one request before the model runs."""

    request: VideoRequest  # with a seed
    width: int  # output size
    height: int
    gen_width: int  # stage-1 generation size on the model's grid
    gen_height: int
    two_stage: bool
    start_image: Image.Image | None
    end_image: Image.Image | None


class LTX2Engine:
    name = "ltx2"
    capabilities = LTX2_CAPABILITIES

    def __init__(self, folder: Path, text: LTX2Pipeline, upsampler: LTX2LatentUpsamplerModel | None,
                 sampling: SamplingSettings, device: torch.device) -> None:
        self.folder = folder
        self.sampling = sampling
        self.device = device
        self.text = text
        # The other pipelines share the same components (no second copy of any weight).
        self.image = LTX2ImageToVideoPipeline.from_pipe(text)
        self.condition = LTX2ConditionPipeline.from_pipe(text)
        self.upsample = LTX2LatentUpsamplePipeline(vae=text.vae, latent_upsampler=upsampler) if upsampler else None
        # Stage 2 runs the refine sigmas as given: no dynamic shift, no stretch to a terminal value (which turns
        # a schedule that does not end at 0 into NaN).
        refine_scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            text.scheduler.config, use_dynamic_shifting=False, shift_terminal=None)
        self.refine = LTX2Pipeline.from_pipe(text, scheduler=refine_scheduler) if upsampler else None
        for pipe in (self.text, self.image, self.condition, self.upsample, self.refine):
            if pipe is not None:
                pipe.set_progress_bar_config(disable=True)
        self.audio_sample_rate = int(text.vocoder.config.output_sampling_rate)
        self.loras = PresetLoras(folder)

    # -- loading --------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path, *, device: str | None = None) -> "LTX2Engine":
        folder = Path(folder)
        if not (folder / "model_index.json").exists():
            raise ModelError(f"{folder} is not a diffusers-format folder (no model_index.json)", field="model")
        _quiet_libraries()
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        try:
            text = LTX2Pipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loading failure is a model error for the user
            raise ModelError(f"could not load LTX-2 from {folder}: {exc}", field="model") from exc
        upsampler = None
        if (folder / "latent_upsampler").is_dir():
            upsampler = LTX2LatentUpsamplerModel.from_pretrained(
                folder, subfolder="latent_upsampler", dtype=dtype, local_files_only=True)
        else:
            log.warning("%s has no latent_upsampler: 1080p is generated in one stage at full size", folder)
        if dev.type != "cpu":
            text.to(dev)
            if upsampler is not None:
                upsampler.to(dev)
        engine = cls(folder, text, upsampler, SamplingSettings.from_folder(folder), dev)
        if not engine.has_prompt_enhancer:
            log.info("%s has no prompt enhancer: thinking uses the built-in rewriter", folder)
        return engine

    @property
    def has_upsampler(self) -> bool:
        return self.upsample is not None

    @property
    def has_prompt_enhancer(self) -> bool:
        """LTX-2's enhancer: a dedicated ``prompt_enhancer`` (LTX-2.5), or the Gemma 3 text encoder of LTX-2.0/2.3,
        which doubles as its own; either way ``enhance_prompt`` needs the folder's ``processor``."""
        return getattr(self.text, "processor", None) is not None

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
        width, height = output_size(request.ratio, request.quality)
        two_stage = self.has_upsampler and request.quality in self.sampling.two_stage_qualities
        if two_stage:  # stage 1 at half size on the grid, so ×2 lands on the grid too
            gen_w, gen_h = grid_size(width // 2, height // 2)
        else:
            gen_w, gen_h = grid_size(width, height)
        return Plan(request, width, height, gen_w, gen_h, two_stage, start, end)

    # -- generation -----------------------------------------------------------------------------------------
    def generate(self, request: VideoRequest, out_path: Path, on_progress: ProgressCallback = no_progress,
                 should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        timings: dict[str, float] = {}
        on_progress(Progress("prepare", 0, 1))
        with _timed(timings, "prepare"):
            plan = self.plan(request)
            shots = plan_shots(plan.request)
        req = plan.request
        num_frames = req.num_frames
        seconds = (num_frames - 1) / FPS
        s = self.sampling
        steps_per_shot = s.num_inference_steps + (len(s.refine_sigmas) if plan.two_stage else 0)
        total_steps = steps_per_shot * len(shots)
        audio_lengths = shot_sample_lengths(shots, self.audio_sample_rate, seconds)
        fade = crossfade_samples(self.audio_sample_rate) if len(shots) > 1 else 0
        prompts = [plan_prompt(req, has_enhancer=self.has_prompt_enhancer, prompt=shot.prompt) for shot in shots]

        # 1.–4. Each shot: text, stage 1, stage 2, audio. Its latents are kept (small) and decoded below.
        latents, audios = [], []
        with self.loras.active(self.text, prompts[0].loras) as adapters:
            for shot in shots:
                prompt, video_latents, audio = self._render_shot(
                    plan, shot, prompts[shot.index], len(shots), shot.index * steps_per_shot, total_steps,
                    audio_lengths[shot.index] + fade, timings, on_progress, should_cancel)
                prompts[shot.index] = prompt
                latents.append(video_latents)
                audios.append(audio)
        audio = None
        if req.generate_audio:  # the shots' sounds on the video's clock, crossfaded at the cuts
            audio = join_audio(audios, audio_lengths, fade)

        # 5. Video: each shot decoded tile by tile straight into the encoder, cut to its share of frames.
        with self._mp4_out(out_path, plan.width, plan.height, audio, num_frames, timings, on_progress) as writer, \
                torch.inference_mode():
            for shot, video_latents in zip(shots, latents):
                self._decode_video_into(writer, video_latents, plan, num_frames, timings, on_progress,
                                        should_cancel, limit=shot.num_frames)
        used = prompts[0].prompt if len(shots) == 1 else " ".join(
            f"Shot {shot.index + 1}: {prompt.prompt}" for shot, prompt in zip(shots, prompts))
        return GenerationResult(
            path=Path(out_path), width=plan.width, height=plan.height, num_frames=num_frames, seconds=num_frames / FPS,
            seed=req.seed, has_audio=audio is not None, prompt=used, original_prompt=request.prompt,
            negative_prompt=prompts[0].negative_prompt, thinking=prompts[0].thinking, aspect_ratio=req.ratio,
            quality=req.quality, generation_size=(plan.gen_width, plan.gen_height), two_stage=plan.two_stage,
            loras=tuple(adapters), timings=Timings.from_mapping(timings),
            shots=tuple(ShotInfo(**shot.describe(prompt.prompt)) for shot, prompt in zip(shots, prompts))
            if req.multi_clip else ())

    def _render_shot(self, plan: Plan, shot: Shot, prompt: PromptPlan, num_shots: int, step_offset: int,
                     total_steps: int, audio_samples: int, timings: dict, on_progress: ProgressCallback,
                     should_cancel: Callable[[], bool]) -> tuple[PromptPlan, torch.Tensor, np.ndarray | None]:
        """One shot's prompt as used, video latents and audio (``audio_samples`` long, None without audio)."""
        s = self.sampling
        first = shot.index == 0
        # The start frame opens the first shot, the end frame closes the last one.
        shot_plan = replace(plan, start_image=plan.start_image if first else None,
                            end_image=plan.end_image if shot.index == num_shots - 1 else None)

        # 1. Text: rewritten by the folder's enhancer when asked; encoded once, reused by both stages.
        if first:  # later shots' text time counts as denoising, so progress never goes back
            on_progress(Progress("text", 0, 1))
        with _timed(timings, "text"), torch.inference_mode():
            if prompt.enhance_with_model:
                prompt = prompt.with_model_rewrite(
                    self._enhance(prompt.enhancer_input, shot.seed, shot_plan.start_image))
            embeds = self._encode_prompt(prompt.prompt, prompt.negative_prompt)

        # 2. Stage 1: denoise at the generation size.
        step_callback = self._step_callback(on_progress, should_cancel, step_offset, total_steps)
        generator = torch.Generator("cpu").manual_seed(shot.seed)
        with _timed(timings, "denoise"), torch.inference_mode():
            video_latents, audio_latents = self._stage_one(shot_plan, embeds, generator, step_callback,
                                                           shot.gen_frames)

            # 3. Stage 2 (two-stage qualities): ×2 latent upsample, then a short refine at full size.
            if plan.two_stage:
                if first:
                    on_progress(Progress("upsample", 0, 1))
                video_latents = self.upsample(latents=video_latents, output_type="latent", return_dict=False)[0]
                refine_callback = self._step_callback(on_progress, should_cancel,
                                                      step_offset + s.num_inference_steps, total_steps)
                video_latents, audio_latents = self._refine(plan, embeds, video_latents, audio_latents,
                                                            refine_callback, shot.seed + 1, shot.gen_frames)

        # 4. Audio: LTX-2's own audio branch, cut or padded to the shot's share (plus the crossfade tail).
        audio = None
        if plan.request.generate_audio:
            with _timed(timings, "audio"), torch.inference_mode():
                audio = self._decode_audio(audio_latents, audio_samples / self.audio_sample_rate)
        return prompt, video_latents, audio

    # -- extend ---------------------------------------------------------------------------------------------
    def extend(self, source: Path, request: VideoRequest, out_path: Path,
               on_progress: ProgressCallback = no_progress,
               should_cancel: Callable[[], bool] = never_cancelled) -> GenerationResult:
        """Continue ``source`` (an MP4 at 24 fps) by ``request.duration`` s; ``out_path`` gets the whole video.

        ``N`` source frames + ``duration × 24`` new ones, at the source's size; the rule is in ``extend.py``.
        """
        timings: dict[str, float] = {}
        on_progress(Progress("prepare", 0, 1))
        with _timed(timings, "prepare"):
            req = request.with_seed()
            src = read_source(Path(source), sample_rate=self.audio_sample_rate)
            context = src.tail.shape[0]
            new_frames = req.duration * FPS
            gen_frames = context + new_frames  # 8k+1: context is 8k+1 and 24·d a multiple of 8
            gen_w, gen_h = grid_size(src.width, src.height)
            plan = Plan(req, src.width, src.height, gen_w, gen_h, False, None, None)
            prompt = plan_prompt(req, has_enhancer=self.has_prompt_enhancer)
        num_frames = src.num_frames + new_frames
        seconds = (num_frames - 1) / FPS
        s = self.sampling

        # 1. Text
        on_progress(Progress("text", 0, 1))
        with _timed(timings, "text"), torch.inference_mode():
            if prompt.enhance_with_model:
                last = Image.fromarray(src.tail[-1])
                prompt = prompt.with_model_rewrite(self._enhance(prompt.enhancer_input, req.seed, last))
            embeds = self._encode_prompt(prompt.prompt, prompt.negative_prompt)

        # 2. Denoise: the source's last frames condition latent index 0 of the new clip.
        context_frames = _fit_frames(src.tail, gen_w, gen_h)
        conditions = [LTX2VideoCondition(frames=context_frames, index=0, crf=s.image_condition_crf)]
        step_callback = self._step_callback(on_progress, should_cancel, 0, s.num_inference_steps)
        generator = torch.Generator("cpu").manual_seed(req.seed)
        with _timed(timings, "denoise"), torch.inference_mode(), \
                self.loras.active(self.text, prompt.loras) as adapters:
            video_latents, audio_latents = self._stage_one(plan, embeds, generator, step_callback, gen_frames,
                                                           conditions=conditions)

        # 3. Audio: the source's, then the new clip's from the source's last frame on, crossfaded at the join.
        audio = None
        if src.audio is not None or req.generate_audio:
            sr = self.audio_sample_rate
            source_audio = src.audio if src.audio is not None else np.zeros((2, round(src.seconds * sr)), np.float32)
            start = round((context - 1) / FPS * sr)  # the source's last frame on the new clip's clock
            length = round(seconds * sr) - source_audio.shape[1]
            with _timed(timings, "audio"), torch.inference_mode():
                if req.generate_audio:
                    new_audio = self._decode_audio(audio_latents, (start + length) / sr)
                else:
                    new_audio = np.zeros((2, start + length), np.float32)
            audio = stitch_audio(source_audio, new_audio, start=start, length=length,
                                 fade=round(EXTEND_CROSSFADE_SECONDS * sr))

        # 4. Video: the source's frames as they decode, then the new ones without the re-drawn context.
        with self._mp4_out(out_path, src.width, src.height, audio, num_frames, timings, on_progress) as writer:
            with _timed(timings, "encode"):
                for frames in iter_source_frames(src.path):
                    writer.write_frames(frames)
                    on_progress(Progress("decode", writer.frames_written, num_frames))
                    if should_cancel():
                        raise Cancelled("cancelled while copying the source video")
            with torch.inference_mode():
                self._decode_video_into(writer, video_latents, plan, num_frames, timings, on_progress,
                                        should_cancel, skip=context, limit=new_frames)
        return GenerationResult(
            path=Path(out_path), width=src.width, height=src.height, num_frames=num_frames, seconds=num_frames / FPS,
            seed=req.seed, has_audio=audio is not None, prompt=prompt.prompt, original_prompt=request.prompt,
            negative_prompt=prompt.negative_prompt, thinking=prompt.thinking, quality=req.quality,
            generation_size=(gen_w, gen_h), loras=tuple(adapters), timings=Timings.from_mapping(timings),
            extension=Extension(source_frames=src.num_frames, new_frames=new_frames, context_frames=context),
        )

    # -- stages ---------------------------------------------------------------------------------------------
    @contextmanager
    def _mp4_out(self, out_path: Path, width: int, height: int, audio: np.ndarray | None, num_frames: int,
                 timings: dict, on_progress: ProgressCallback) -> Iterator[Mp4Writer]:
        """The output file: audio written first, frames pushed by the caller, closed and checked at the end;
        removed if anything fails (cancel included)."""
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        writer = Mp4Writer(out_path, width, height,
                           audio_sample_rate=self.audio_sample_rate if audio is not None else None)
        try:
            if audio is not None:
                with _timed(timings, "encode"):
                    writer.write_audio(audio)
            yield writer
            on_progress(Progress("encode", 0, 1))
            with _timed(timings, "encode"):
                writer.close()
        except BaseException:
            writer.abort()
            raise
        if writer.frames_written != num_frames:
            raise GenerationError(f"wrote {writer.frames_written} frames, expected {num_frames}")
        on_progress(Progress("encode", 1, 1))

    def _enhance(self, text: str, seed: int, image: Image.Image | None) -> str:
        """LTX-2's prompt enhancer on ``text`` (with the start frame when there is one), seeded: repeatable."""
        dedicated = getattr(self.text, "prompt_enhancer", None) is not None
        if image is not None:
            system = LTX2_5_I2V_DEFAULT_SYSTEM_PROMPT if dedicated else I2V_DEFAULT_SYSTEM_PROMPT
        else:
            system = LTX2_5_T2V_DEFAULT_SYSTEM_PROMPT if dedicated else T2V_DEFAULT_SYSTEM_PROMPT
        return self.text.enhance_prompt(text, system_prompt=system, seed=seed, device=self.device, image=image)[0]

    def _encode_prompt(self, prompt: str, negative: str) -> dict[str, torch.Tensor]:
        pe, pm, ne, nm = self.text.encode_prompt(
            prompt=prompt, negative_prompt=negative, do_classifier_free_guidance=self.sampling.guidance_scale > 1,
            max_sequence_length=self.sampling.max_sequence_length, device=self.device)
        return {"prompt_embeds": pe, "prompt_attention_mask": pm,
                "negative_prompt_embeds": ne, "negative_prompt_attention_mask": nm}

    def _guidance(self) -> dict[str, object]:
        s = self.sampling
        return dict(guidance_scale=s.guidance_scale, audio_guidance_scale=s.audio_guidance_scale,
                    stg_scale=s.stg_scale, audio_stg_scale=s.audio_stg_scale, modality_scale=s.modality_scale,
                    audio_modality_scale=s.audio_modality_scale, guidance_rescale=s.guidance_rescale,
                    spatio_temporal_guidance_blocks=list(s.stg_blocks) or None,
                    max_sequence_length=s.max_sequence_length)

    def _stage_one(self, plan: Plan, embeds: dict, generator: torch.Generator, callback, num_frames: int,
                   conditions: list[LTX2VideoCondition] | None = None) -> tuple:
        """Stage-1 latents for ``num_frames``; routed by the plan's images, or on explicit ``conditions``."""
        common = dict(height=plan.gen_height, width=plan.gen_width, num_frames=num_frames,
                      frame_rate=float(FPS), num_inference_steps=self.sampling.num_inference_steps,
                      generator=generator, output_type="latent", return_dict=False,
                      callback_on_step_end=callback, **embeds, **self._guidance())
        crf = self.sampling.image_condition_crf
        size = (plan.gen_width, plan.gen_height)
        if conditions is None and plan.end_image is not None:  # start + end, or (a multi-clip's last shot) end
            conditions = [LTX2VideoCondition(frames=fit_to_size(plan.end_image, *size), index=-1, crf=crf)]
            if plan.start_image is not None:
                conditions.insert(0, LTX2VideoCondition(frames=fit_to_size(plan.start_image, *size), index=0,
                                                        crf=crf))
        if conditions is not None:
            return self.condition(conditions=conditions, **common)
        if plan.start_image is not None:
            image = fit_to_size(plan.start_image, plan.gen_width, plan.gen_height)
            return self.image(image=image, **common)
        return self.text(**common)

    def _refine(self, plan: Plan, embeds: dict, video_latents, audio_latents, callback, seed: int,
                num_frames: int) -> tuple:
        """LTX-2's stage 2: re-noise to the first refine sigma, then a few steps with identity guidance."""
        sigmas = list(self.sampling.refine_sigmas)
        generator = torch.Generator("cpu").manual_seed(seed)
        return self.refine(
            latents=video_latents, audio_latents=audio_latents, noise_scale=sigmas[0], sigmas=sigmas,
            num_inference_steps=len(sigmas), height=plan.gen_height * 2, width=plan.gen_width * 2,
            num_frames=num_frames, frame_rate=float(FPS), generator=generator,
            prompt_embeds=embeds["prompt_embeds"], prompt_attention_mask=embeds["prompt_attention_mask"],
            guidance_scale=1.0, stg_scale=0.0, modality_scale=1.0, guidance_rescale=0.0,
            max_sequence_length=self.sampling.max_sequence_length,
            output_type="latent", return_dict=False, callback_on_step_end=callback)

    def _decode_audio(self, audio_latents: torch.Tensor, seconds: float) -> np.ndarray:
        pipe = self.text
        mel = pipe.audio_vae.decode(audio_latents.to(pipe.audio_vae.dtype), return_dict=False)[0]
        waveform = pipe.vocoder(mel)[0].float().cpu().numpy()
        return fit_audio(waveform, self.audio_sample_rate, seconds)

    def _decode_video_into(self, writer: Mp4Writer, latents: torch.Tensor, plan: Plan, num_frames: int,
                           timings: dict, on_progress: ProgressCallback, should_cancel, *, skip: int = 0,
                           limit: int | None = None) -> None:
        """Decode ``latents`` into ``writer``, dropping the first ``skip`` frames and writing at most ``limit``
        (``num_frames``: the whole video's, for progress)."""
        vae = self.text.vae
        latents, temb = self._prepare_decode(latents)
        decode_s = encode_s = 0.0
        t0 = time.perf_counter()
        for frames in stream_frames(vae, latents, temb, plan.width, plan.height, skip=skip, limit=limit):
            t1 = time.perf_counter()
            decode_s += t1 - t0
            writer.write_frames(frames)
            del frames  # not held while the next tile decodes (see stream_frames)
            t0 = time.perf_counter()
            encode_s += t0 - t1
            on_progress(Progress("decode", writer.frames_written, num_frames))
            if should_cancel():
                raise Cancelled("cancelled while decoding")
        timings["decode"] = timings.get("decode", 0.0) + decode_s
        timings["encode"] = timings.get("encode", 0.0) + encode_s

    def _prepare_decode(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents in the VAE's dtype and the decoder's timestep: ``LTX2Pipeline``'s default decode_timestep 0
        (with noise scale 0 it adds no noise) for VAEs with timestep conditioning, else none."""
        vae = self.text.vae
        latents = latents.to(vae.dtype)
        if not vae.config.timestep_conditioning:
            return latents, None
        return latents, torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)

    def _step_callback(self, on_progress: ProgressCallback, should_cancel: Callable[[], bool], offset: int,
                       total: int):
        def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
            on_progress(Progress("denoise", offset + step + 1, total))
            if should_cancel():
                raise Cancelled("cancelled during denoising")
            return {}

        return callback


def _fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (F, H, W, 3) resized to ``width`` × ``height`` the way decoded frames are resized to the output."""
    if frames.shape[1:3] == (height, width):
        return frames
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    video = torch.nn.functional.interpolate(video, size=(height, width), mode="bilinear", align_corners=False,
                                            antialias=True)
    return video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _quiet_libraries() -> None:
    """No tqdm bars or info chatter from diffusers/transformers: progress is ours to report."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
