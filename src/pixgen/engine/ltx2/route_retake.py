"""Retake: regenerate ``[start, end)`` seconds of a finished video (picture and sound); the result is the whole
video.

``LTX2Engine.retake`` runs this over the engine's shared stage blocks (``engine.py``); the window follows the
backend's retake rule (``pixgen.core.retake`` with ``LTX2_CAPABILITIES``), the file side is ``retake.py``:

1. Plan: the source's frame count, the window for the range, the frames it pins and the sound.
2. Text, then stage 1 pinned to the frames either side of the range.
3. Audio: the source's, the window's new sound spliced into the range.
4. Video: the source's frames before the range, the range decoded from the window, the source's after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image

from pixgen.core.progress import ProgressCallback
from pixgen.core.sizes import FPS
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import GenerationResult, Retake, ShotRun
from pixgen.engine.ltx2.engine import FrameCondition, LTX2Engine
from pixgen.engine.ltx2.geometry import plan_geometry
from pixgen.engine.ltx2.retake import read_retake_source, splice_audio
from pixgen.engine.prompting import plan_prompt
from pixgen.media.audio import CROSSFADE_SECONDS


def retake(engine: LTX2Engine, source: Path, request: VideoRequest, start: float, end: float, out_path: Path,
           on_progress: ProgressCallback, should_cancel: Callable[[], bool]) -> GenerationResult:
    run = engine._run(on_progress, should_cancel)

    # 1. Plan.
    run.report("prepare")
    with run.timed("prepare"):
        req = request.with_seed()
        assert req.seed is not None  # with_seed drew one
        src = read_retake_source(Path(source), start, end, sample_rate=engine.audio_sample_rate)
        window = src.window
        geometry = plan_geometry(src.width, src.height, two_stage=False)
        prompt = plan_prompt(req, has_enhancer=engine.has_prompt_enhancer)
    run.seed, run.total_steps = req.seed, engine.steps_per_shot(False)

    # 2. Text, then stage 1 pinned to the frames either side of the range.
    run.report("text")
    near = src.before[-1] if src.before is not None else src.after[0] if src.after else None
    prompt, embeds = engine._text(run, prompt, req.seed, Image.fromarray(near) if near is not None else None)
    conditions = [FrameCondition(geometry.pad(src.before), index=0)] if src.before is not None else []
    conditions += [FrameCondition(geometry.pad(frame[None]), index=window.after_latent + i)
                   for i, frame in enumerate(src.after)]
    with engine.loras.job(prompt.loras) as adapters:
        latents = engine._stage_one(run, geometry, embeds, req.seed, window.gen_frames, conditions)

    # 3. Audio: the source's, the window's new sound spliced into the range.
    audio = None
    if src.audio is not None:
        sr = engine.audio_sample_rate
        new = engine._audio(run, latents.audio, window.gen_frames / FPS)
        audio = splice_audio(src.audio, new, start=round(window.start / FPS * sr),
                             end=min(round(window.end / FPS * sr), src.audio.shape[1]),
                             offset=round(window.window_start / FPS * sr), fade=round(CROSSFADE_SECONDS * sr))

    # 4. Video: the source's frames before the range, the range decoded from the window, the source's after.
    num_frames = window.num_frames
    with engine._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
        engine._copy_source(run, writer, src.path, 0, window.start, num_frames)
        engine._decode_into(run, writer, latents.video, geometry, num_frames, skip=window.before,
                            limit=window.frames)
        engine._copy_source(run, writer, src.path, window.end, num_frames, num_frames)
    return engine._result(
        run, out_path, request, req, geometry, num_frames, audio=audio is not None, prompt=prompt.prompt,
        used=prompt, loras=tuple(adapters),
        shot_runs=(ShotRun(0, req.seed, prompt.prompt, prompt.negative_prompt, dict(run.sigmas)),),
        retake=Retake(start_frame=window.start, end_frame=window.end, source_frames=num_frames))
