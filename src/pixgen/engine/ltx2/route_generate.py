"""Generate: a video from a request (text, start / end frames, keyframes, a control video, several shots).

``LTX2Engine.generate`` runs this over the engine's shared stage blocks (``engine.py``):

1. Plan: the request with a seed, its images decoded, the geometry, the length: a given soundtrack's fitted to the
   video (``soundtrack.py``: the duration, or the sound's own), or for ``duration: "auto"`` the prompt encoded and
   the folder's duration head asked for the frame count (``duration.py``); the shots, a control video's reference.
2. Per shot: text, stage 1 (pinned to the shot's picture conditions, the start frame at ``image_strength``), the
   early draft of the first shot, stage 2 for the recipe's two-stage qualities, audio. With a soundtrack, its audio
   latents are held fixed through both stages (``hold.py``) and the sound is the given one, not the vocoder's.
3. The shots' sound joined with crossfades at the cuts (a soundtrack: one shot, its sound as given).
4. Video: each shot decoded tile by tile straight into the encoder, cut to its share of frames. ``render`` runs 1–3
   and hands this step back as a ``Finish``, which a worker with ``--overlap-jobs`` runs beside the next job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pixgen.core.progress import ProgressCallback
from pixgen.core.sizes import FPS
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import Finish, GenerationResult, PreviewCallback, ShotInfo, ShotRun
from pixgen.engine.ltx2.engine import Embeds, FrameCondition, LTX2Engine, RenderedShot, Run
from pixgen.engine.ltx2.geometry import Geometry
from pixgen.engine.ltx2.hold import Hold, hold_audio
from pixgen.engine.ltx2.multiclip import Shot, crossfade_samples, join_audio, plan_shots, shot_sample_lengths
from pixgen.engine.ltx2.preview import preview_path
from pixgen.engine.ltx2.soundtrack import Soundtrack, audio_latent_frames, encode_soundtrack, plan_soundtrack
from pixgen.engine.prompting import PromptPlan, plan_prompt


def generate(engine: LTX2Engine, request: VideoRequest, out_path: Path, on_progress: ProgressCallback,
             should_cancel: Callable[[], bool], on_preview: PreviewCallback | None) -> GenerationResult:
    return render(engine, request, out_path, on_progress, should_cancel, on_preview)()


def render(engine: LTX2Engine, request: VideoRequest, out_path: Path, on_progress: ProgressCallback,
           should_cancel: Callable[[], bool], on_preview: PreviewCallback | None) -> Finish:
    """Steps 1–3; the returned ``Finish`` runs step 4 and gives the result. Between the two the job holds only its
    latents and its sound, and the transformer is free: a worker may start the next job's steps 1–3 meanwhile
    (``LTX2Engine.start_generate``)."""
    run = engine._run(on_progress, should_cancel)
    run.on_preview, run.preview_path = on_preview, preview_path(out_path)

    # 1. Plan; "auto": the duration head's frame count for the prompt as used (encoded once, for the shot too).
    run.report("prepare")
    with run.timed("prepare"):
        plan = engine.plan(request)
        soundtrack = plan_soundtrack(plan.request, engine.audio_sample_rate, engine.audio_vae_rate) \
            if plan.request.audio is not None else None
    req, geometry = plan.request, plan.geometry
    assert req.seed is not None  # the plan drew one
    run.seed = req.seed
    encoded: tuple[PromptPlan, Embeds] | None = None
    if req.auto_duration:  # one shot (the spec allows no multi_clip, keyframes or control video with it)
        run.report("text")
        planned = plan_prompt(req, has_enhancer=engine.has_prompt_enhancer, prompt=req.prompt)
        encoded = engine._text(run, planned, req.seed, plan.start_image)
        num_frames = engine.choose_frames(run, encoded[1])
    elif soundtrack is not None:
        num_frames = soundtrack.num_frames
    else:
        num_frames = req.num_frames
    shots = plan_shots(req, num_frames)
    with run.timed("prepare"):
        run.control = engine.control.reference(req, geometry)
    run.total_steps = engine.steps_per_shot(geometry.two_stage) * len(shots)
    seconds = (num_frames - 1) / FPS  # the audio's length: the video's clock from the first frame to the last
    audio_lengths = shot_sample_lengths(shots, engine.audio_sample_rate, seconds)
    fade = crossfade_samples(engine.audio_sample_rate) if len(shots) > 1 else 0
    prompts = [plan_prompt(req, has_enhancer=engine.has_prompt_enhancer, prompt=shot.prompt) for shot in shots]

    # 2. Each shot: text, stage 1, stage 2, audio.
    rendered: list[RenderedShot] = []
    with engine.loras.job(prompts[0].loras) as adapters:
        for shot in shots:
            last = shot.index == len(shots) - 1
            conditions = engine._image_conditions(geometry, plan.start_image if shot.index == 0 else None,
                                                  plan.end_image if last else None, plan.keyframes,
                                                  start_strength=req.image_strength)
            hold = _held_soundtrack(engine, run, soundtrack, shot) if soundtrack is not None else None
            vocoded = req.generate_audio and soundtrack is None  # a soundtrack's sound is the given one
            rendered.append(_render_shot(engine, run, geometry, shot, prompts[shot.index], conditions,
                                         audio_lengths[shot.index] + fade if vocoded else None,
                                         encoded if shot.index == 0 else None, hold=hold))

    # 3. Sound: the given soundtrack, or the shots' joined, crossfaded at the cuts.
    if soundtrack is not None:
        audio = soundtrack.out if req.generate_audio else None
    else:
        sounds = [sound for r in rendered if (sound := r.audio) is not None]  # every shot's, with audio on
        audio = join_audio(sounds, audio_lengths, fade) if req.generate_audio else None

    used = [r.prompt for r in rendered]
    prompt = used[0].prompt if len(shots) == 1 else " ".join(
        f"Shot {shot.index + 1}: {p.prompt}" for shot, p in zip(shots, used, strict=True))

    # 4. Video: each shot decoded tile by tile straight into the encoder, cut to its share of frames.
    def finish() -> GenerationResult:
        with engine._mp4_out(run, out_path, geometry, audio, num_frames) as writer:
            for shot, shot_render in zip(shots, rendered, strict=True):
                engine._decode_into(run, writer, shot_render.latents.video, geometry, num_frames,
                                    limit=shot.num_frames)
        return engine._result(
            run, out_path, request, req, geometry, num_frames, audio=audio is not None, prompt=prompt, used=used[0],
            shot_runs=tuple(r.run for r in rendered), aspect_ratio=req.ratio,
            loras=(*adapters, *([run.control.adapter] if run.control else [])),
            shots=tuple(ShotInfo(**shot.describe(p.prompt))  # type: ignore[arg-type]  # describe: ShotInfo's fields
                        for shot, p in zip(shots, used, strict=True))
            if req.multi_clip else (), soundtrack=soundtrack.fit if soundtrack else None)

    return finish


def _held_soundtrack(engine: LTX2Engine, run: Run, soundtrack: Soundtrack, shot: Shot) -> Hold:
    """The soundtrack encoded with the audio VAE for the shot's generated frames, to hold fixed in both stages."""
    pipe = engine.pipes.text
    with run.timed("audio"):
        latents = encode_soundtrack(pipe, soundtrack.vae, audio_latent_frames(pipe, shot.gen_frames))
    return hold_audio(pipe, latents)


def _render_shot(engine: LTX2Engine, run: Run, geometry: Geometry, shot: Shot, prompt: PromptPlan,
                 conditions: list[FrameCondition], audio_samples: int | None,
                 encoded: tuple[PromptPlan, Embeds] | None = None, *, hold: Hold | None = None) -> RenderedShot:
    """One shot's prompt as used, latents, and audio (``audio_samples`` long; None without audio); ``encoded``: its
    prompt as used and embeddings when the plan made them already (``duration: "auto"``); ``hold``: a stream held
    fixed through both stages."""
    first = shot.index == 0
    if encoded is not None:
        prompt, embeds = encoded
    else:
        if first:  # later shots' text time counts as denoising, so progress never goes back
            run.report("text")
        start = next((c.image for c in conditions if c.index == 0), None)
        prompt, embeds = engine._text(run, prompt, shot.seed, start)
    latents = engine._stage_one(run, geometry, embeds, shot.seed, shot.gen_frames, conditions, hold=hold)
    if geometry.two_stage:
        if first and run.on_preview is not None:
            engine._preview(run, geometry, latents.video, shot.num_frames)
        latents = engine._stage_two(run, geometry, embeds, latents, shot.seed + 1, shot.gen_frames, conditions,
                                    report=first, hold=hold)
    audio = None
    if audio_samples is not None:
        audio = engine._audio(run, latents.audio, audio_samples / engine.audio_sample_rate)
    return RenderedShot(prompt, latents, audio, ShotRun(shot.index, shot.seed, prompt.prompt,
                                                        prompt.negative_prompt, dict(run.sigmas)))
