"""Sampling recipes: the reference values per published checkpoint, detection from a folder's configs,
pixgen.json overrides, and the stage-1 schedule against diffusers' own scheduler."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixgen.engine.ltx2.recipes import (
    DISTILLED_SIGMAS,
    RECIPES,
    STAGE_2_SIGMAS,
    UNGUIDED,
    Guidance,
    detect,
    reference_sigmas,
)
from pixgen.errors import ModelError


def test_the_distilled_sigmas_are_diffusers_own():
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES

    assert list(DISTILLED_SIGMAS) == DISTILLED_SIGMA_VALUES
    assert list(STAGE_2_SIGMAS) == STAGE_2_DISTILLED_SIGMA_VALUES


@pytest.mark.parametrize("name,steps,stg_block,cross", [("ltx-2.0-dev", 40, 29, False), ("ltx-2.3-dev", 30, 28, True)])
def test_dev_recipes_hold_the_reference_values(name, steps, stg_block, cross):
    recipe = RECIPES[name]
    g = recipe.guidance
    assert recipe.num_inference_steps == steps and recipe.sigmas is None and recipe.schedule == "reference"
    assert (g.guidance_scale, g.audio_guidance_scale) == (3.0, 7.0)
    assert (g.stg_scale, g.audio_stg_scale, g.stg_blocks) == (1.0, 1.0, (stg_block,))
    assert (g.modality_scale, g.audio_modality_scale) == (3.0, 3.0)
    assert (g.guidance_rescale, g.audio_guidance_rescale) == (0.7, 0.7)
    assert recipe.use_cross_timestep is cross
    assert g.passes_per_step == 4 and g.transformer_calls == 3  # CFG (batch 2) + STG + modality
    assert recipe.refine_sigmas == STAGE_2_SIGMAS and recipe.refine_audio == "stage1" and recipe.refine_lora
    assert recipe.refine_guidance == UNGUIDED and recipe.refine_guidance.passes_per_step == 1


@pytest.mark.parametrize("name", ["ltx-2.0-distilled", "ltx-2.3-distilled", "ltx-2.5"])
def test_distilled_recipes_run_the_eight_distilled_sigmas_unguided(name):
    recipe = RECIPES[name]
    assert recipe.sigmas == DISTILLED_SIGMAS and recipe.num_inference_steps == 8
    assert recipe.stage_one_sigmas(tokens=123) == list(DISTILLED_SIGMAS)
    assert recipe.guidance == UNGUIDED and recipe.guidance.passes_per_step == 1
    assert not recipe.guidance.uses_negative_prompt
    assert "720p" in recipe.two_stage_qualities and recipe.refine_audio == "stage2"
    assert recipe.use_cross_timestep is (name != "ltx-2.0-distilled")


@pytest.mark.parametrize("steps", [8, 30, 40])
@pytest.mark.parametrize("tokens", [4096, 14_720])
def test_reference_sigmas_equal_diffusers_scheduler_at_the_same_shift(steps, tokens):
    """The reference LTX2Scheduler is linspace → exponential shift at mu(tokens) → stretch to 0.1: diffusers'
    FlowMatchEulerDiscreteScheduler does the same maths when handed that mu, an independent implementation."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    mu = 0.95 + (2.05 - 0.95) * (tokens - 1024) / (4096 - 1024)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    np.testing.assert_allclose(reference_sigmas(steps, tokens), scheduler.sigmas[:-1].numpy(), rtol=1e-5)


def test_the_reference_schedule_ignores_the_token_count_and_tokens_does_not():
    recipe = RECIPES["ltx-2.0-dev"]
    small, large = recipe.stage_one_sigmas(tokens=1000), recipe.stage_one_sigmas(tokens=14_720)
    assert small == large == reference_sigmas(40, 4096)
    assert small[0] == 1.0 and small[-1] == pytest.approx(0.1) and small == sorted(small, reverse=True)
    # At 720p, 5 s (14 720 tokens) the token-count shift spends far more steps near pure noise (the audit's P1-8).
    tokens = recipe.with_overrides({"schedule": "tokens"}).stage_one_sigmas(tokens=14_720)
    assert sum(s > 0.9 for s in small) == 18 and sum(s > 0.9 for s in tokens) == 32


def test_an_audio_zero_beside_a_video_value_survives_diffusers_fallback():
    """diffusers reads ``audio_stg_scale or stg_scale``: a plain 0 would become the video's 1.0."""
    kwargs = Guidance(stg_scale=1.0, audio_stg_scale=0.0, guidance_rescale=0.7).pipeline_kwargs()
    assert kwargs["stg_scale"] == 1.0 and 0 < kwargs["audio_stg_scale"] < 1e-9
    assert 0 < kwargs["audio_guidance_rescale"] < 1e-9
    assert UNGUIDED.pipeline_kwargs()["audio_stg_scale"] == 0.0  # both zero: nothing to protect


def test_negative_prompt_is_needed_when_either_modality_uses_cfg():
    assert Guidance(guidance_scale=1.0, audio_guidance_scale=7.0).uses_negative_prompt
    assert Guidance(guidance_scale=3.0, audio_guidance_scale=1.0).uses_negative_prompt
    assert not UNGUIDED.uses_negative_prompt


# -- detection ---------------------------------------------------------------------------------------------------
def folder_with(tmp_path, *, transformer=None, scheduler=None, index=None, settings=None):
    tmp_path.joinpath("transformer").mkdir()
    tmp_path.joinpath("scheduler").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps(index or {"_class_name": "LTX2Pipeline"}))
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(transformer or {}))
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(scheduler or {"use_dynamic_shifting": True, "shift_terminal": 0.1}))
    if settings is not None:
        (tmp_path / "pixgen.json").write_text(json.dumps(settings))
    return tmp_path


@pytest.mark.parametrize("transformer,scheduler,index,expected", [
    ({"gated_attn": False, "cross_attn_mod": False}, None, None, "ltx-2.0-dev"),
    ({"gated_attn": True, "cross_attn_mod": True, "perturbed_attn": True}, None, None, "ltx-2.3-dev"),
    ({"gated_attn": False}, {"use_dynamic_shifting": False}, None, "ltx-2.0-distilled"),
    ({"gated_attn": True}, {"use_dynamic_shifting": False}, None, "ltx-2.3-distilled"),
    ({"gated_attn": True, "use_keyframes_abs_pos_embedding": True}, None, None, "ltx-2.5"),
    ({"gated_attn": True}, {"use_dynamic_shifting": False},
     {"_class_name": "LTX2Pipeline", "duration_head": ["diffusers", "LTX2DurationHead"]}, "ltx-2.5"),
])
def test_the_recipe_is_detected_from_the_folders_configs(tmp_path, transformer, scheduler, index, expected):
    detected = detect(folder_with(tmp_path, transformer=transformer, scheduler=scheduler, index=index))
    assert detected.recipe.name == expected and detected.reason


def test_pixgen_json_names_the_recipe_and_overrides_any_sampling_argument(tmp_path):
    folder = folder_with(tmp_path, settings={"recipe": "ltx-2.3-dev", "sampling": {
        "num_inference_steps": 12, "guidance_scale": 3.5, "spatio_temporal_guidance_blocks": [27, 28],
        "use_cross_timestep": False, "refine_sigmas": [0.8, 0.5], "two_stage_qualities": ["720p", "1080p"]}})
    detected = detect(folder)
    r = detected.recipe
    assert r.name == "ltx-2.3-dev" and "pixgen.json" in detected.summary()
    assert r.num_inference_steps == 12 and r.guidance.guidance_scale == 3.5 and r.guidance.stg_blocks == (27, 28)
    assert r.use_cross_timestep is False and r.refine_sigmas == (0.8, 0.5)
    assert r.two_stage_qualities == ("720p", "1080p")
    assert r.guidance.audio_guidance_scale == 7.0  # untouched values stay the recipe's
    assert detect(folder, name="ltx-2.0-distilled").recipe.name == "ltx-2.0-distilled"  # a load argument wins


def test_explicit_sigmas_set_the_step_count_and_a_step_count_replaces_fixed_sigmas(tmp_path):
    custom = RECIPES["ltx-2.0-dev"].with_overrides({"sigmas": [1.0, 0.7, 0.3]})
    assert custom.num_inference_steps == 3 and custom.stage_one_sigmas(tokens=1) == [1.0, 0.7, 0.3]
    fewer = RECIPES["ltx-2.0-distilled"].with_overrides({"num_inference_steps": 4})
    assert fewer.sigmas is None and len(fewer.stage_one_sigmas(tokens=1)) == 4


@pytest.mark.parametrize("settings,words", [
    ({"sampling": {"guidance": 3}}, "unknown sampling settings"),
    ({"recipe": "ltx-9"}, "unknown recipe"),
    ({"sampling": {}, "extra": 1}, "unknown keys"),
])
def test_a_bad_pixgen_json_is_a_clear_model_error(tmp_path, settings, words):
    with pytest.raises(ModelError) as info:
        detect(folder_with(tmp_path, settings=settings))
    assert words in info.value.message


def test_every_recipe_describes_itself_as_plain_data():
    for recipe in RECIPES.values():
        described = recipe.describe()
        assert json.loads(json.dumps(described))["name"] == recipe.name
        assert set(described["guidance"]) >= {"guidance_scale", "stg_blocks"}


def test_a_one_step_schedule_is_sigma_one_not_a_division_by_zero():
    assert reference_sigmas(1, 4096) == [1.0]
    assert RECIPES["ltx-2.0-dev"].with_overrides({"num_inference_steps": 1}).stage_one_sigmas(4096) \
        == [1.0]
