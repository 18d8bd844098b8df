"""Extend: continue a finished video by ``request.duration`` seconds; the result is the whole video.

``LTX2Engine.extend`` runs this over the engine's shared stage blocks (``engine.py``); the rule (context frames,
the audio's join) is ``extend.py``'s:

1. Plan: the source read once (size, frame count, its last frames, its sound), the geometry at its size.
2. Text, then stage 1 from the source's last frames, pinned at latent index 0.
3. Audio: the source's, then the new clip's from the source's last frame on, crossfaded at the join.
4. Video: the source's frames as they decode, then the new ones without the re-drawn context.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from pixgen.core.progress import ProgressCallback
from pixgen.core.sizes import FPS
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import Extension, GenerationResult, ShotRun
from pixgen.engine.ltx2.engine import FrameCondition, LTX2Engine
from pixgen.engine.ltx2.extend import read_source, stitch_audio
from pixgen.engine.ltx2.geometry import plan_geometry
from pixgen.engine.prompting import plan_prompt
from pixgen.media.audio import CROSSFADE_SECONDS


def extend(engine: LTX2Engine, source: Path, request: VideoRequest, out_path: Path, on_progress: ProgressCallback,
           should_cancel: Callable[[], bool]) -> GenerationResult:
    run = engine._run(on_progress, should_cancel)

    # 1. Plan.
    run.report("prepare")
    with run.timed("prepare"):
        req = request.with_seed()
        assert req.seed is not None  # with_seed drew one
        src = read_source(Path(source), sample_rate=engine.audio_sample_rate)
        context = src.tail.shape[0]
        new_frames = req.seconds * FPS
        gen_frames = context + new_frames  # 8k+1: context is 8k+1 and 24·d a multiple of 8
        geometry = plan_geometry(src.width, src.height, two_stage=False)
        prompt = plan_prompt(req, has_enhancer=engine.has_prompt_enhancer)
    run.seed, run.total_steps = req.seed, engine.steps_per_shot(False)
    num_frames = src.num_frames + new_frames
    seconds = (num_frames - 1) / FPS

    # 2. Text, then stage 1 from the source's last frames (pinned at latent index 0).
    run.report("text")
    prompt, embeds = engine._text(run, prompt, req.seed, Image.fromarray(src.tail[-1]))
    conditions = [FrameCondition(geometry.pad(src.tail), index=0)]
    with engine.loras.job(prompt.loras) as adapters:
        latents = engine._stage_one(run, geometry, embeds, req.seed, gen_frames, conditions)

    # 3. Audio: the source's, then the new clip's from the source's last frame on, crossfaded at the join.
    audio = None
    if src.audio is not None or req.generate_audio:
        sr = engine.audio_sample_rate
        source_audio = src.audio if src.audio is not None else np.zeros((2, round(src.seconds * sr)), np.float32)
        start = round((context - 1) / FPS * sr)  # the source's last frame on the new clip's clock
        length = round(seconds * sr) - source_audio.shape[1]
        if req.generate_audio:
            new_audio = engine._audio(run, latents.audio, (start + length) / sr)
        else:
            new_audio = np.zeros((2, start + length), np.float32)
        audio = stitch_audio(source_audio, new_audio, start=start, length=length,
                             fade=round(CROSSFADE_SECONDS * sr))

    # 4. Video: the source's frames as they decode, then the new ones without the re-drawn context.
    with engine._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
        engine._copy_source(run, writer, src.path, 0, src.num_frames, num_frames)
        engine._decode_into(run, writer, latents.video, geometry, num_frames, skip=context, limit=new_frames)
    return engine._result(
        run, out_path, request, req, geometry, num_frames, audio=audio is not None, prompt=prompt.prompt,
        used=prompt, loras=tuple(adapters),
        shot_runs=(ShotRun(0, req.seed, prompt.prompt, prompt.negative_prompt, dict(run.sigmas)),),
        extension=Extension(source_frames=src.num_frames, new_frames=new_frames, context_frames=context))
