"""Holding one stream's clean latents fixed while the other is denoised (``engine/ltx2/hold.py``), on the toy LTX-2
in float32 and bfloat16, through the engine's own stage blocks: at every transformer call of stage 1 and stage 2
the held stream is exactly the clean latents at timestep 0 and sigma 0, the other stream is denoised as usual, and
the stage's result for the held stream is the clean latents."""

from __future__ import annotations

import os

import pytest
import torch

from pixgen.core.progress import no_progress
from pixgen.core.spec import parse_request
from pixgen.engine.base import never_cancelled
from pixgen.engine.ltx2.hold import hold_audio, hold_video, holding
from pixgen.engine.prompting import plan_prompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(params=["float32", "bfloat16"])
def engine(request, toy_variant):
    from pixgen.engine import load_engine

    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 3, "two_stage_qualities": ["360p"]})
    return load_engine(str(folder), dtype=request.param)


class Calls:
    """Every transformer call's inputs, as the transformer's forward received them (after any pre-hook)."""

    def __init__(self, transformer):
        self.seen: list[dict] = []
        self._handle = transformer.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, output):
        sigma = kwargs.get("sigma")
        audio_sigma = kwargs.get("audio_sigma")
        self.seen.append({
            "video": kwargs["hidden_states"].detach().clone(),
            "audio": kwargs["audio_hidden_states"].detach().clone(),
            "timestep": kwargs["timestep"].detach().clone(),
            "audio_timestep": None if kwargs.get("audio_timestep") is None else kwargs["audio_timestep"].clone(),
            "sigma": None if sigma is None else sigma.clone(),
            "audio_sigma": None if audio_sigma is None else audio_sigma.clone(),
        })

    def close(self):
        self._handle.remove()


def _job(engine):
    req = parse_request({"prompt": "a drummer on a rooftop", "duration": 1, "quality": "360p", "seed": 3,
                         "thinking_type": "disabled"})
    plan = engine.plan(req)
    run = engine._run(no_progress, never_cancelled)
    _, embeds = engine._text(run, plan_prompt(plan.request, has_enhancer=False), 3, None)
    return run, plan.geometry, embeds, plan.request.num_frames


def _steps(calls):
    """The distinct step timesteps of ``calls``, in order (a step's guidance passes share one)."""
    return list(dict.fromkeys(float(c["timestep"].max()) for c in calls))


def _audio_latent_frames(engine, num_frames):
    pipe = engine.pipes.text
    per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / pipe.audio_vae_temporal_compression_ratio
    return round(num_frames / 24 * per_second)


def test_held_audio_is_the_clean_latents_at_timestep_zero_at_every_call_of_both_stages(engine):
    run, geometry, embeds, num_frames = _job(engine)
    assert geometry.two_stage
    vae = engine.pipes.text.audio_vae
    shape = (1, vae.config.latent_channels, _audio_latent_frames(engine, num_frames),
             vae.config.mel_bins // engine.pipes.text.audio_vae_mel_compression_ratio)
    clean = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    hold = hold_audio(engine.pipes.text, clean)
    calls = Calls(engine.pipes.text.transformer)
    try:
        one = engine._stage_one(run, geometry, embeds, 3, num_frames, [], hold=hold)
        stage_one_calls = len(calls.seen)
        two = engine._stage_two(run, geometry, embeds, one, 4, num_frames, [], report=False, hold=hold)
    finally:
        calls.close()

    # Stage 1: the dev recipe's guidance passes at each of 3 steps; stage 2: one unguided pass at each of 3.
    assert len(_steps(calls.seen[:stage_one_calls])) == 3 and len(calls.seen) - stage_one_calls == 3
    dtype = engine.dtype
    for call in calls.seen:
        batch = call["video"].shape[0]
        assert call["audio"].dtype == dtype
        torch.testing.assert_close(call["audio"], hold.tokens.to(dtype).expand(batch, -1, -1), rtol=0, atol=0)
        assert torch.count_nonzero(call["audio_timestep"]) == 0
        assert torch.count_nonzero(call["audio_sigma"]) == 0
        assert float(call["timestep"].max()) > 0  # the video is being denoised
    # The video changes from step to step; the stages' audio result is the clean latents themselves.
    assert not torch.equal(calls.seen[0]["video"], calls.seen[1]["video"])
    assert one.audio is not None and torch.equal(one.audio, clean.to(one.audio.dtype))
    assert torch.equal(two.audio, clean.to(two.audio.dtype))
    assert two.video.shape[-2:] == (geometry.full_size[1] // 32, geometry.full_size[0] // 32)


def test_held_video_is_the_clean_latents_at_timestep_zero_while_the_audio_is_denoised(engine):
    run, geometry, embeds, num_frames = _job(engine)
    width, height = geometry.stage_one_size
    channels = engine.pipes.text.transformer.config.in_channels
    clean = torch.randn((1, channels, (num_frames - 1) // 8 + 1, height // 32, width // 32),
                        generator=torch.Generator().manual_seed(6))
    hold = hold_video(engine.pipes.text, clean)
    calls = Calls(engine.pipes.text.transformer)
    try:
        one = engine._stage_one(run, geometry, embeds, 3, num_frames, [], hold=hold)
    finally:
        calls.close()

    dtype = engine.dtype
    step_sigmas = []
    for call in calls.seen:
        batch = call["video"].shape[0]
        torch.testing.assert_close(call["video"], hold.tokens.to(dtype).expand(batch, -1, -1), rtol=0, atol=0)
        assert torch.count_nonzero(call["timestep"]) == 0 and torch.count_nonzero(call["sigma"]) == 0
        step_sigmas.append(float(call["audio_timestep"].max()))  # the audio keeps the step's own timestep
    steps = list(dict.fromkeys(step_sigmas))
    assert len(steps) == 3 and steps[0] > steps[1] > steps[2] > 0
    assert not torch.equal(calls.seen[0]["audio"], calls.seen[1]["audio"])  # the audio is being denoised
    assert torch.equal(one.video, clean.to(one.video.dtype))


def test_holding_nothing_changes_nothing_and_the_hook_goes_away(engine):
    transformer = engine.pipes.text.transformer
    before = dict(transformer._forward_pre_hooks)
    with holding(transformer, None) as held:
        assert dict(transformer._forward_pre_hooks) == before
    assert held.calls == 0
    clean = torch.zeros((1, 2, 4, 4))
    with holding(transformer, hold_audio(engine.pipes.text, clean)):
        assert len(transformer._forward_pre_hooks) == len(before) + 1
    assert dict(transformer._forward_pre_hooks) == before


def test_latents_of_the_wrong_rank_are_refused_before_any_call(engine):
    with pytest.raises(ValueError, match="audio latents to hold"):
        hold_audio(engine.pipes.text, torch.zeros((1, 8, 4)))
    with pytest.raises(ValueError, match="video latents to hold"):
        hold_video(engine.pipes.text, torch.zeros((1, 8, 2, 4)))
