"""What each stage of a job runs, counted on the toy LTX-2 under each recipe: transformer passes per step (and
their batch and kind), the sigmas the transformer actually saw, the text encoder's calls, the stage-2 LoRA, the
start frame pinned through stage 2, which stage's audio is kept, and the frames against diffusers' own output."""

from __future__ import annotations

import base64
import io
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.recipes import DISTILLED_SIGMAS, STAGE_2_SIGMAS, reference_sigmas

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Two-stage at 360p keeps stage 2 on the toy fast (640x384 at full size, 320x192 in stage 1).
TWO_STAGE_360 = {"two_stage_qualities": ["360p"]}


def request(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 7,
                          "thinking_type": "disabled", **fields})


def denoise_only(engine, req, out_path):
    """``generate`` up to the decode (``start_generate``; its ``Finish`` is dropped, not run): what the transformer,
    the schedulers and the stage blocks saw is all there, without the VAE decode and the encode that a test of
    those never reads (they are most of a toy job's time)."""
    engine.start_generate(req, out_path)


def image_uri(seed=0, size=(320, 180)) -> str:
    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass(frozen=True)
class Call:
    stage: str
    batch: int
    kind: str  # "plain", "stg" or "isolated"
    sigma: float  # the largest timestep the transformer saw / 1000: the step's sigma
    cross_timestep: bool
    refine_lora: bool  # whether the stage-2 distilled adapter was active


class Recorder:
    """Labels every transformer and text-encoder call with the stage block it ran in."""

    def __init__(self, engine, monkeypatch):
        self.engine = engine
        self.stage = "other"
        self.calls: list[Call] = []
        self.text_calls: Counter = Counter()
        self.results: dict[str, list] = {"one": [], "two": []}
        pipes = engine.pipes
        self._handles = [
            pipes.text.transformer.register_forward_pre_hook(self._transformer, with_kwargs=True),
            pipes.text.text_encoder.register_forward_pre_hook(self._text, with_kwargs=True),
        ]
        for name, label in (("_stage_one", "one"), ("_stage_two", "two")):
            original = getattr(engine, name)

            def wrapped(*args, _original=original, _label=label, **kwargs):
                self.stage = _label
                try:
                    out = _original(*args, **kwargs)
                    self.results[_label].append(out)
                    return out
                finally:
                    self.stage = "other"

            monkeypatch.setattr(engine, name, wrapped)

    def close(self):
        for handle in self._handles:
            handle.remove()

    def _transformer(self, module, args, kwargs):
        kind = "isolated" if kwargs.get("isolate_modalities") else (
            "stg" if kwargs.get("spatio_temporal_guidance_blocks") else "plain")
        layer = module.transformer_blocks[0].attn1.to_q
        refine = "pixgen_stage2_distilled" in getattr(layer, "active_adapters", []) and \
            not getattr(layer, "disable_adapters", True)
        self.calls.append(Call(self.stage, kwargs["hidden_states"].shape[0], kind,
                               round(float(kwargs["timestep"].max()) / 1000, 6), bool(kwargs["use_cross_timestep"]),
                               refine))

    def _text(self, module, args, kwargs):
        self.text_calls[self.stage] += 1

    def stage_calls(self, stage):
        return [c for c in self.calls if c.stage == stage]


@pytest.fixture
def record(monkeypatch):
    made = []

    def attach(engine):
        recorder = Recorder(engine, monkeypatch)
        made.append(recorder)
        return recorder

    yield attach
    for recorder in made:
        recorder.close()


def load(folder):
    from pixgen.engine import load_engine

    return load_engine(str(folder))


def per_step(calls, steps):
    """The calls grouped by step (each step's calls share one sigma)."""
    sigmas = list(dict.fromkeys(c.sigma for c in calls))
    assert len(sigmas) == steps, sigmas
    return [[(c.batch, c.kind) for c in calls if c.sigma == s] for s in sigmas], sigmas


def test_dev_recipe_runs_cfg_stg_and_modality_in_stage_one_and_one_unguided_pass_in_stage_two(
        toy_variant, record, tmp_path):
    engine = load(toy_variant("ltx-2.0-dev", {"num_inference_steps": 4, "stg_blocks": [1], **TWO_STAGE_360}))
    rec = record(engine)
    result = engine.generate(request(), tmp_path / "dev.mp4")
    assert result.recipe == "ltx-2.0-dev" and result.two_stage is True

    steps, sigmas = per_step(rec.stage_calls("one"), 4)
    assert steps == [[(2, "plain"), (1, "stg"), (1, "isolated")]] * 4  # 4 batch-1 passes a step
    np.testing.assert_allclose(sigmas, reference_sigmas(4, 4096), atol=1e-5)  # the shift of 4096 tokens
    steps, sigmas = per_step(rec.stage_calls("two"), 3)
    assert steps == [[(1, "plain")]] * 3  # unguided: one pass a step, video and audio together
    np.testing.assert_allclose(sigmas, STAGE_2_SIGMAS, atol=1e-5)
    assert not any(c.cross_timestep for c in rec.calls)  # LTX-2.0 runs without the cross timestep
    # The prompt and the negative prompt are encoded once, before stage 1; stage 2 encodes nothing.
    assert rec.text_calls == Counter({"other": 2})
    assert [c.stage for c in rec.calls] == ["one"] * 12 + ["two"] * 3


def test_the_sigmas_the_scheduler_ran_are_the_recipes(toy_variant, record, tmp_path, monkeypatch):
    import functools

    from diffusers import FlowMatchEulerDiscreteScheduler

    engine = load(toy_variant("ltx-2.3-dev", {"num_inference_steps": 5, "stg_blocks": [1], **TWO_STAGE_360}))
    rec = record(engine)
    seen = []
    original = FlowMatchEulerDiscreteScheduler.set_timesteps

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.sigmas.tolist())

    monkeypatch.setattr(FlowMatchEulerDiscreteScheduler, "set_timesteps", spy)
    denoise_only(engine, request(), tmp_path / "s.mp4")
    # Each stage sets its audio scheduler (a copy) and its video scheduler: the same sigmas twice.
    assert len(seen) == 4 and seen[0] == seen[1] and seen[2] == seen[3]
    np.testing.assert_allclose(seen[0], [*reference_sigmas(5, 4096), 0.0], atol=1e-6)
    np.testing.assert_allclose(seen[2], [*STAGE_2_SIGMAS, 0.0], atol=1e-6)
    assert all(c.cross_timestep for c in rec.calls)  # LTX-2.3 uses it


def test_distilled_recipe_runs_eight_unguided_sigmas_then_three(toy_variant, record, tmp_path):
    engine = load(toy_variant("ltx-2.0-distilled", TWO_STAGE_360))
    rec = record(engine)
    result = engine.generate(request(), tmp_path / "d.mp4")
    steps, sigmas = per_step(rec.stage_calls("one"), 8)
    assert steps == [[(1, "plain")]] * 8
    np.testing.assert_allclose(sigmas, DISTILLED_SIGMAS, atol=1e-6)
    steps, sigmas = per_step(rec.stage_calls("two"), 3)
    assert steps == [[(1, "plain")]] * 3
    assert rec.text_calls == Counter({"other": 1})  # no negative prompt: nothing uses it
    assert result.recipe == "ltx-2.0-distilled"


def test_the_negative_prompt_is_encoded_when_only_the_audio_uses_cfg(toy_variant, record, tmp_path, monkeypatch):
    engine = load(toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, "guidance_scale": 1.0,
                                              "audio_guidance_scale": 3.0, "stg_scale": 0.0,
                                              "audio_stg_scale": 0.0, "modality_scale": 1.0,
                                              "audio_modality_scale": 1.0}))
    rec = record(engine)
    encoded = []
    original = type(engine.pipes.text).encode_prompt

    def spy(pipe, *args, **kwargs):
        if kwargs.get("prompt") is not None:  # the pipelines call it again with our embeddings: no encoding
            encoded.append((kwargs["negative_prompt"], kwargs["do_classifier_free_guidance"]))
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipes.text), "encode_prompt", spy)
    denoise_only(engine, request(negative_prompt="shaky camera"), tmp_path / "n.mp4")
    assert encoded == [("shaky camera", True)] and rec.text_calls == Counter({"other": 2})
    assert [(c.batch, c.kind) for c in rec.stage_calls("one")] == [(2, "plain")] * 2  # the CFG batch


def test_a_start_frame_stays_pinned_through_stage_two(toy_variant, record, tmp_path):
    """Stage 2 re-applies the start image at full size: the first latent frame comes out as the image's own clean
    latent whatever the seed; the re-noised frames after it do not."""
    engine = load(toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, "stg_scale": 0.0, "audio_stg_scale": 0.0,
                                              "modality_scale": 1.0, "audio_modality_scale": 1.0, **TWO_STAGE_360}))
    rec = record(engine)
    image = image_uri()
    for seed in (1, 2):
        denoise_only(engine, request(image_input=image, seed=seed, aspect_ratio="16:9"), tmp_path / f"p{seed}.mp4")
    a, b = (r.video for r in rec.results["two"])
    assert torch.equal(a[:, :, 0], b[:, :, 0])
    assert not torch.allclose(a[:, :, 1:], b[:, :, 1:])
    up = [engine.pipes.upsample(latents=r.video, output_type="latent", return_dict=False)[0]
          for r in rec.results["one"]]
    assert not torch.allclose(a[:, :, 0], up[0][:, :, 0])  # not the upsampled stage-1 frame: the image itself


def test_dev_recipes_keep_stage_one_audio_and_distilled_ones_stage_two(toy_variant, record, tmp_path):
    dev = load(toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, **TWO_STAGE_360}))
    rec = record(dev)
    denoise_only(dev, request(), tmp_path / "a.mp4")
    assert rec.results["two"][0].audio is rec.results["one"][0].audio

    distilled = load(toy_variant("ltx-2.3-distilled", TWO_STAGE_360))
    rec = record(distilled)
    denoise_only(distilled, request(), tmp_path / "b.mp4")
    assert not torch.equal(rec.results["two"][0].audio, rec.results["one"][0].audio)


def lora_file(seed=0, scale=1.0) -> bytes:
    """A real peft LoRA for the toy transformer's self-attention (diffusers' LTX-2 key layout)."""
    from safetensors.torch import save

    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for block in range(2):
        for proj in ("to_q", "to_k", "to_v"):
            key = f"transformer.transformer_blocks.{block}.attn1.{proj}"
            weights[f"{key}.lora_A.weight"] = torch.randn(4, 16, generator=gen) * scale
            weights[f"{key}.lora_B.weight"] = torch.randn(16, 4, generator=gen) * scale
    return save(weights)


def test_stage_two_runs_with_the_folders_distilled_lora_and_only_stage_two(toy_variant, record, tmp_path,
                                                                         monkeypatch):
    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, **TWO_STAGE_360},
                         files={"toy-19b-distilled-lora-384.safetensors": lora_file()})
    engine = load(folder)
    assert engine.loras.has_refine
    rec = record(engine)
    result = engine.generate(request(), tmp_path / "l.mp4")
    assert result.stage2_lora is True
    assert not any(c.refine_lora for c in rec.stage_calls("one"))
    assert all(c.refine_lora for c in rec.stage_calls("two")) and rec.stage_calls("two")
    # A one-stage job of the same engine (360p taken out of the recipe's two-stage qualities, rather than a larger
    # quality that is not one of them): never on.
    monkeypatch.setattr(engine, "recipe", engine.recipe.with_overrides({"two_stage_qualities": []}))
    one_stage = engine.generate(request(), tmp_path / "one.mp4")
    assert not one_stage.two_stage
    assert one_stage.stage2_lora is False
    assert not any(c.refine_lora for c in rec.calls[-2:])


def test_image_condition_crf_reaches_the_image_to_video_route(toy_variant, tmp_path, monkeypatch):
    engine = load(toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, "image_condition_crf": 0}))
    seen = []
    original = type(engine.pipes.image).__call__

    def spy(pipe, *args, **kwargs):
        seen.append(kwargs["image_crf"])
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipes.image), "__call__", spy)
    denoise_only(engine, request(image_input=image_uri()), tmp_path / "c.mp4")
    assert seen == [0]


def test_frames_equal_diffusers_own_output_cropped_to_the_contract_size(monkeypatch, tmp_path):
    """The same stage-1 call with ``output_type="np"`` (diffusers' decode and post-processing), cropped: within
    one 8-bit level of the frames pixgen hands the encoder (float16 tile buffers round a few values)."""
    from pixgen.engine import load_engine
    from pixgen.media.mp4 import Mp4Writer

    engine = load_engine("tiny")
    calls, written = [], []
    original = type(engine.pipes.text).__call__

    def spy(pipe, *args, **kwargs):
        calls.append(kwargs)
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipes.text), "__call__", spy)
    write = Mp4Writer.write_frames
    monkeypatch.setattr(Mp4Writer, "write_frames", lambda self, frames: (written.append(frames.copy()),
                                                                       write(self, frames))[1])
    result = engine.generate(request(aspect_ratio="16:9"), tmp_path / "f.mp4")
    ours = np.concatenate(written).astype(int)
    assert ours.shape == (25, 360, 640, 3) and result.generation_size == (640, 384)

    kwargs = {**calls[0], "output_type": "np", "callback_on_step_end": None,
              "generator": torch.Generator("cpu").manual_seed(7)}
    frames, _ = original(engine.pipes.text, **kwargs)
    theirs = (np.asarray(frames[0]) * 255).round().astype(int)[:, 12:372, :, :]  # the centre 360 of 384 rows
    assert np.abs(ours - theirs).max() <= 1
    assert (ours != theirs).mean() < 0.02
