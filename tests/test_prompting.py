"""Prompt shaping: the style and camera tables, thinking (verbatim, rewritten, the folder's enhancer), the preset
LoRAs, and what each does to the video on the toy model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from pixgen.core.spec import CameraMovement, Style, parse_request
from pixgen.engine.presets import CAMERA_MOVEMENTS, STYLES, markdown
from pixgen.engine.prompting import SHORT_PROMPT_WORDS, covered_aspects, needs_rewrite, plan_prompt, rewrite_prompt
from pixgen.media.probe import read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
LONG_PROMPT = ("A young woman in a yellow raincoat is walking her dog along a harbour, boats rocking gently on "
               "the water behind them")


def request(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 7,
                          **fields})


# -- the tables ------------------------------------------------------------------------------------------------
def test_every_style_and_camera_value_has_exactly_one_preset():
    assert list(STYLES) == list(get_args(Style))
    assert list(CAMERA_MOVEMENTS) == list(get_args(CameraMovement))
    for name, preset in {**STYLES, **CAMERA_MOVEMENTS}.items():
        if name != "none":
            assert preset.prompt.endswith("."), name
        if name not in ("none", "auto_camera"):
            assert preset.negative and preset.lora and preset.lora.endswith(".safetensors"), name


@pytest.mark.parametrize("style", list(STYLES))
def test_each_style_is_applied_to_prompt_and_negative(style):
    plan = plan_prompt(request(style=style, thinking_type="disabled"), has_enhancer=False)
    preset = STYLES[style]
    assert plan.prompt == f"{preset.prompt} a red kite over a beach".strip()
    assert plan.negative_prompt.startswith(request().negative_prompt)
    assert preset.negative in plan.negative_prompt


@pytest.mark.parametrize("camera", list(CAMERA_MOVEMENTS))
def test_each_camera_movement_is_applied_to_prompt_and_negative(camera):
    plan = plan_prompt(request(camera_movement=camera, thinking_type="disabled"), has_enhancer=False)
    preset = CAMERA_MOVEMENTS[camera]
    assert plan.prompt == f"a red kite over a beach. {preset.prompt}"
    assert preset.negative in plan.negative_prompt
    rewritten = plan_prompt(request(camera_movement=camera, thinking_type="enabled"), has_enhancer=False)
    assert preset.prompt in rewritten.prompt  # the preset takes the rewrite's camera place
    assert rewritten.prompt.count("camera") == preset.prompt.lower().count("camera")


def test_presets_doc_is_generated_from_the_tables():
    doc = (ROOT / "docs" / "presets.md").read_text(encoding="utf-8")
    assert doc == markdown(), "regenerate: python -m pixgen.engine.presets > docs/presets.md"


# -- thinking --------------------------------------------------------------------------------------------------
def test_disabled_thinking_keeps_the_prompt_verbatim():
    plan = plan_prompt(request(thinking_type="disabled"), has_enhancer=True)
    assert (plan.prompt, plan.thinking, plan.enhance_with_model) == ("a red kite over a beach", "verbatim", False)


def test_enabled_thinking_rewrites_into_a_shot_description():
    plan = plan_prompt(request(prompt=LONG_PROMPT, thinking_type="enabled"), has_enhancer=False)
    assert plan.thinking == "rewritten" and plan.prompt.startswith(LONG_PROMPT + ".")
    added = plan.prompt[len(LONG_PROMPT):].lower()
    assert covered_aspects(added) == {"camera", "light", "sound"}
    assert "moves" not in added  # the prompt has its own motion ("walking", "rocking")


def test_auto_thinking_rewrites_short_or_bare_prompts_only():
    assert needs_rewrite("a red kite over a beach")  # short
    bare = "an old stone castle on a green hill under a pale blue sky with white clouds and a river"
    assert len(bare.split()) >= SHORT_PROMPT_WORDS and needs_rewrite(bare)  # no motion cue
    assert not needs_rewrite(LONG_PROMPT)
    assert plan_prompt(request(prompt=LONG_PROMPT), has_enhancer=False).prompt == LONG_PROMPT
    assert plan_prompt(request(prompt=bare), has_enhancer=False).thinking == "rewritten"
    assert plan_prompt(request(), has_enhancer=False).thinking == "rewritten"


def test_the_rewriter_is_deterministic_across_processes():
    code = "from pixgen.engine.prompting import rewrite_prompt; print(rewrite_prompt('a lighthouse at night'))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert outs == {rewrite_prompt("a lighthouse at night")}
    # "night" already sets the light: no light sentence is added.
    assert "light" not in rewrite_prompt("a lighthouse at night").lower().replace("lighthouse", "")


def test_the_folder_enhancer_is_asked_and_presets_wrap_its_answer():
    plan = plan_prompt(request(thinking_type="enabled", style="clay", camera_movement="pan_left"), has_enhancer=True)
    assert plan.enhance_with_model and plan.enhancer_input == "a red kite over a beach. " + \
        CAMERA_MOVEMENTS["pan_left"].prompt
    done = plan.with_model_rewrite("A detailed caption.")
    assert done.prompt == f"{STYLES['clay'].prompt} A detailed caption. {CAMERA_MOVEMENTS['pan_left'].prompt}"
    assert done.thinking == "model" and not done.enhance_with_model


# -- on the toy model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    from pixgen.engine import load_engine

    return load_engine("tiny")


@pytest.fixture(scope="module")
def videos(engine, tmp_path_factory):
    """Generated once per module and shared: key → GenerationResult (thinking disabled unless given)."""
    folder = tmp_path_factory.mktemp("prompting")
    cache = {}

    def get(key: str, **fields):
        if key not in cache:
            cache[key] = engine.generate(request(thinking_type="disabled", **fields), folder / f"{key}.mp4")
        return cache[key]

    return get


def test_style_and_camera_change_the_video_with_the_same_seed(videos):
    plain = read_frames(videos("plain").path).astype(np.int16)
    anime = videos("anime", style="anime")
    zoom = videos("zoom", camera_movement="zoom_in")
    assert anime.prompt.startswith(STYLES["anime"].prompt) and anime.negative_prompt.endswith(
        STYLES["anime"].negative)
    assert zoom.prompt.endswith(CAMERA_MOVEMENTS["zoom_in"].prompt)
    assert np.abs(read_frames(anime.path) - plain).mean() > 1.0
    assert np.abs(read_frames(zoom.path) - plain).mean() > 1.0


def test_the_result_reports_the_prompt_used_and_the_original(engine, tmp_path):
    result = engine.generate(request(), tmp_path / "auto.mp4")  # thinking "auto" (the default) on a short prompt
    assert result.original_prompt == "a red kite over a beach"
    assert result.prompt == rewrite_prompt("a red kite over a beach") and result.thinking == "rewritten"


def test_enabled_thinking_uses_the_folders_enhancer_when_it_has_one(engine, tmp_path, monkeypatch):
    calls = []

    def enhance_prompt(prompt, system_prompt, seed, device, image):
        calls.append((prompt, seed, image))
        return ["A kite dances on the wind above the surf, its red tail snapping."]

    monkeypatch.setattr(engine.pipes.text, "processor", object())  # what enhance_prompt needs besides a Gemma model
    monkeypatch.setattr(engine.pipes.text, "enhance_prompt", enhance_prompt)
    result = engine.generate(request(thinking_type="enabled", style="comic"), tmp_path / "enh.mp4")
    assert calls == [("a red kite over a beach", 7, None)]
    assert result.prompt == f"{STYLES['comic'].prompt} A kite dances on the wind above the surf, its red tail snapping."
    assert result.thinking == "model" and result.original_prompt == "a red kite over a beach"


def test_a_preset_lora_in_the_folder_is_used_for_its_job_only(engine, videos, tmp_path):
    pytest.importorskip("peft", reason="LoRA loading needs peft, which is not installed")
    import torch
    from safetensors.torch import save_file

    from pixgen.engine import load_engine

    folder = tmp_path / "model"
    shutil.copytree(engine.folder, folder)
    (folder / "loras").mkdir(exist_ok=True)  # the toy ships one (its IC-LoRA)
    gen = torch.Generator().manual_seed(0)
    weights = {}
    for block in range(2):
        for proj in ("to_q", "to_k", "to_v"):
            key = f"transformer.transformer_blocks.{block}.attn1.{proj}"
            weights[f"{key}.lora_A.weight"] = torch.randn(4, 16, generator=gen)
            weights[f"{key}.lora_B.weight"] = torch.randn(16, 4, generator=gen)
    save_file(weights, str(folder / "loras" / STYLES["anime"].lora))

    with_lora = load_engine(str(folder))
    styled = with_lora.generate(request(thinking_type="disabled", style="anime"), tmp_path / "lora.mp4")
    assert styled.loras == ("style_anime",)
    assert np.abs(read_frames(styled.path).astype(np.int16) - read_frames(videos("anime", style="anime").path)
                  ).mean() > 1.0
    after = with_lora.generate(request(thinking_type="disabled"), tmp_path / "after.mp4")
    assert after.loras == ()
    assert np.array_equal(read_frames(after.path), read_frames(videos("plain").path))  # switched off after the job
