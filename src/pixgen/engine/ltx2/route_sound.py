"""Sound for a video (video-to-audio): new sound under a finished video's own frames; the result keeps them bit for
bit.

``LTX2Engine.sound`` runs this over the engine's shared stage blocks (``engine.py``). The video latents are the
source's frames encoded by the video VAE, held clean through the whole schedule by ``hold.py`` (at every
transformer call the video tokens are the clean ones at timestep 0 and sigma 0), while the audio is denoised from
noise with the recipe's stage-1 sigmas and guidance — the reference's way of holding a modality
(``ModalitySpec(frozen=True, noise_scale=0, initial_latent=...)``), here for the video. No stage 2: it would only
refine the held video, and the reference's Dub-It keeps its stage-1 audio through stage 2 anyway.

1. Plan: the source read (size, frames, rate; H.264 at most the longest duration), its frames sampled on the 24 fps
   clock up to 8k+1 (the last held), fitted to stage 1's size for the job's quality.
2. Text; the frames encoded by the video VAE; stage 1 with the video held.
3. Audio: the new sound, cut to the source's length.
4. Video: the source's video packets copied beside the new AAC track (``media.remux``: no decode, no re-encode).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import retrieve_latents

from pixgen.core.progress import ProgressCallback
from pixgen.core.sizes import FPS, nearest_aspect_ratio, output_size
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import GenerationResult, ShotRun
from pixgen.engine.ltx2.engine import LTX2Engine
from pixgen.engine.ltx2.geometry import Geometry, plan_geometry
from pixgen.engine.ltx2.hold import hold_video
from pixgen.engine.prompting import plan_prompt
from pixgen.errors import InvalidRequest
from pixgen.media.control_video import read_frames_from
from pixgen.media.mp4 import fit_audio
from pixgen.media.remux import FIELD, read_sound_source, replace_sound, video_from_request


def held_frames(num_frames: int, fps: float) -> int:
    """How many frames on the 24 fps clock the model holds for a video of ``num_frames`` at ``fps``: enough to
    cover it, rounded up to 8k+1 (LTX-2's video VAE; the padding repeats the last frame)."""
    on_clock = max(1, round((num_frames - 1) / fps * FPS) + 1)
    return math.ceil((on_clock - 1) / 8) * 8 + 1


def encode_frames(engine: LTX2Engine, frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (F, H, W, 3) as the video VAE's latents (1, C, F', H', W'): its distribution's mode, unscaled,
    as the pipelines encode a condition and return ``output_type="latent"``."""
    vae = engine.pipes.text.vae
    with torch.no_grad():
        pixels = torch.from_numpy(frames).to(engine.device).permute(3, 0, 1, 2).unsqueeze(0)
        pixels = (pixels.to(torch.float32) / 127.5 - 1.0).to(vae.dtype)
        return retrieve_latents(vae.encode(pixels), sample_mode="argmax")


def sound(engine: LTX2Engine, source: Path | None, request: VideoRequest, out_path: Path,
          on_progress: ProgressCallback, should_cancel: Callable[[], bool]) -> GenerationResult:
    run = engine._run(on_progress, should_cancel)
    with video_from_request(source, request, Path(out_path).parent) as path:

        # 1. Plan.
        run.report("prepare")
        with run.timed("prepare"):
            req = request.with_seed()
            assert req.seed is not None  # with_seed drew one
            src = read_sound_source(path)
            longest = engine.capabilities.durations[1]
            if src.seconds > longest + 1e-6:
                raise InvalidRequest(f"the video is {src.seconds:.2f} s long; new sound is made for at most "
                                     f"{longest} s", field=FIELD)
            gen_frames = held_frames(src.num_frames, float(src.fps))
            planned = plan_geometry(*output_size(nearest_aspect_ratio(src.width, src.height), req.quality),
                                    two_stage=req.quality in engine.two_stage_qualities)
            size = planned.stage_one_size  # where stage 1 of a generate of this size makes its sound
            frames = read_frames_from(str(path), gen_frames, size, field=FIELD)
            geometry = Geometry(src.width, src.height, *size, two_stage=False)
            prompt = plan_prompt(req, has_enhancer=engine.has_prompt_enhancer)
        run.seed, run.total_steps = req.seed, engine.steps_per_shot(False)

        # 2. Text; the frames encoded by the video VAE; stage 1 with the video held.
        run.report("text")
        prompt, embeds = engine._text(run, prompt, req.seed, None)
        with run.timed("prepare"):
            held = hold_video(engine.pipes.text, encode_frames(engine, frames))
        del frames
        with engine.loras.job(prompt.loras) as adapters:
            latents = engine._stage_one(run, geometry, embeds, req.seed, gen_frames, [], hold=held)
        del held

        # 3. Audio: the new sound, cut to the source's length.
        audio = fit_audio(engine._audio(run, latents.audio, (gen_frames - 1) / FPS), engine.audio_sample_rate,
                          src.seconds)

        # 4. Video: the source's packets, as they are, beside the new sound.
        run.report("encode")
        if engine.writes_output:
            with run.timed("encode"):
                replace_sound(path, Path(out_path), audio, engine.audio_sample_rate)
        run.report("encode", 1, 1)
    return engine._result(
        run, out_path, request, req, geometry, src.num_frames, audio=True, prompt=prompt.prompt, used=prompt,
        loras=tuple(adapters), shot_runs=(ShotRun(0, req.seed, prompt.prompt, prompt.negative_prompt,
                                                  dict(run.sigmas)),), sound_only=True)
