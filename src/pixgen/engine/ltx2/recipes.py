"""Sampling recipes: how each published LTX-2 checkpoint is meant to be sampled, as data.

One row per published model, with the values of Lightricks' reference pipelines (``ltx_pipelines/utils/
constants.py``: ``LTX_2_PARAMS``, ``LTX_2_3_PARAMS``, ``DISTILLED_SIGMA_VALUES``, ``STAGE_2_DISTILLED_SIGMA_VALUES``;
``ti2vid_two_stages.py``, ``distilled.py``):

- ``ltx-2.0-dev``: 40 steps on the reference schedule; CFG 3 (audio 7), STG 1 on block 29, modality 3, rescale
  0.7; no cross timestep. 1080p in two stages: ×2 upsample, then 3 unguided sigmas with the distilled LoRA,
  keeping stage 1's audio.
- ``ltx-2.3-dev``: the same with 30 steps, STG on block 28 and the cross timestep on.
- ``ltx-2.0-distilled``, ``ltx-2.3-distilled``, ``ltx-2.5``: the 8 distilled sigmas, unguided (one transformer
  pass a step); 540p–1080p in two stages, keeping stage 2's audio.

The recipe is detected from the folder (``detect``), can be named and overridden in the folder's ``pixgen.json``::

    {"recipe": "ltx-2.3-dev", "sampling": {"num_inference_steps": 20, "guidance_scale": 3.5}}

and is reported at load and with every job. Every sampling argument of the diffusers pipelines is a field here;
stage-1 sigmas are always computed here and passed explicitly (``stage_one_sigmas``), so the schedule a job runs is
the recipe's, whatever the folder's scheduler config says.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from pixgen.errors import ModelError

SETTINGS_FILE = "pixgen.json"
# diffusers.pipelines.ltx2.utils has the same values; kept here so this module imports no torch.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
STAGE_2_SIGMAS = (0.909375, 0.725, 0.421875)
# The reference LTX2Scheduler: token-count shift between these anchors, stretched to a terminal sigma.
BASE_SHIFT_TOKENS, MAX_SHIFT_TOKENS = 1024, 4096
# diffusers reads a falsy audio_* value as "same as video" (``audio_stg_scale or stg_scale``); an audio value of 0
# beside a non-zero video one is sent as this instead, which changes nothing measurable.
_TINY = 1e-12


@dataclass(frozen=True)
class Guidance:
    """The guidance terms of one denoising stage, named as the pipelines name them. The defaults are "none":
    one transformer pass per step."""

    guidance_scale: float = 1.0  # CFG, video
    audio_guidance_scale: float = 1.0
    stg_scale: float = 0.0  # spatio-temporal guidance
    audio_stg_scale: float = 0.0
    modality_scale: float = 1.0  # modality-isolation guidance
    audio_modality_scale: float = 1.0
    guidance_rescale: float = 0.0
    audio_guidance_rescale: float = 0.0
    stg_blocks: tuple[int, ...] = ()

    @property
    def uses_negative_prompt(self) -> bool:
        """CFG on either modality needs the negative prompt's embeddings (the pipeline batches both)."""
        return self.guidance_scale > 1 or self.audio_guidance_scale > 1

    @property
    def transformer_calls(self) -> int:
        """Transformer calls per denoising step: the (batched) conditional one, then one for STG, one for the
        modality-isolated prediction."""
        stg = self.stg_scale > 0 or self.audio_stg_scale > 0
        modality = self.modality_scale > 1 or self.audio_modality_scale > 1
        return 1 + int(stg) + int(modality)

    @property
    def passes_per_step(self) -> int:
        """Batch-1 transformer passes per step (the unit of cost): CFG doubles the first call's batch."""
        return self.transformer_calls + int(self.uses_negative_prompt)

    def pipeline_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for video, audio in (("guidance_scale", "audio_guidance_scale"), ("stg_scale", "audio_stg_scale"),
                             ("modality_scale", "audio_modality_scale"),
                             ("guidance_rescale", "audio_guidance_rescale")):
            v, a = getattr(self, video), getattr(self, audio)
            out[video] = v
            out[audio] = _TINY if (a == 0 and v != 0) else a
        out["spatio_temporal_guidance_blocks"] = list(self.stg_blocks) or None
        return out


UNGUIDED = Guidance()
REFERENCE_GUIDANCE = Guidance(guidance_scale=3.0, audio_guidance_scale=7.0, stg_scale=1.0, audio_stg_scale=1.0,
                              modality_scale=3.0, audio_modality_scale=3.0, guidance_rescale=0.7,
                              audio_guidance_rescale=0.7, stg_blocks=(28,))


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    guidance: Guidance = UNGUIDED
    num_inference_steps: int = 30
    # Explicit stage-1 sigmas (without the final 0). None: ``schedule`` computes them for num_inference_steps.
    sigmas: tuple[float, ...] | None = None
    # "reference": the reference pipelines' LTX2Scheduler with the shift of 4096 tokens, whatever the size;
    # "tokens": the shift from the real token count (diffusers' default and the reference HQ pipeline).
    schedule: Literal["reference", "tokens"] = "reference"
    use_cross_timestep: bool = True  # False is LTX-2.0's behaviour
    max_sequence_length: int = 1024
    image_condition_crf: int | None = None  # None: the model's own (33; 18 for LTX-2.5)
    decode_timestep: float = 0.0  # only for a VAE with timestep conditioning
    decode_noise_scale: float | None = None  # None: decode_timestep
    # Stage 2: qualities made at half size, ×2 latent upsample, then an unguided refine at full size.
    two_stage_qualities: tuple[str, ...] = ("1080p",)
    refine_sigmas: tuple[float, ...] = STAGE_2_SIGMAS
    refine_lora: str | None = None  # glob in the folder's root: the distilled LoRA stage 2 runs with, if present
    refine_audio: Literal["stage1", "stage2"] = "stage1"  # which stage's audio the job keeps

    def __post_init__(self) -> None:
        if self.sigmas is not None:
            object.__setattr__(self, "num_inference_steps", len(self.sigmas))

    @property
    def refine_guidance(self) -> Guidance:
        return UNGUIDED  # the reference stage 2 is unguided (SimpleDenoiser), video and audio

    def stage_one_sigmas(self, tokens: int, *, base_shift: float = 0.95, max_shift: float = 2.05,
                         terminal: float | None = 0.1) -> list[float]:
        """The stage-1 sigmas (without the final 0) for a latent of ``tokens`` video tokens."""
        if self.sigmas is not None:
            return list(self.sigmas)
        return reference_sigmas(self.num_inference_steps, MAX_SHIFT_TOKENS if self.schedule == "reference"
                                else tokens, base_shift=base_shift, max_shift=max_shift, terminal=terminal)

    def with_overrides(self, values: dict[str, Any], *, source: str = SETTINGS_FILE) -> Recipe:
        """This recipe with ``values`` (flat keys: a recipe field or a guidance field) applied."""
        guidance_keys = {f.name for f in fields(Guidance)}
        recipe_keys = {f.name for f in fields(Recipe)} - {"name", "description", "guidance"}
        values = {("stg_blocks" if k == "spatio_temporal_guidance_blocks" else k): v for k, v in values.items()}
        unknown = sorted(set(values) - guidance_keys - recipe_keys)
        if unknown:
            raise ModelError(f"{source}: unknown sampling settings {unknown}; known: "
                             f"{sorted(guidance_keys | recipe_keys)}", field="model")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        guidance = replace(self.guidance, **{k: v for k, v in values.items() if k in guidance_keys})
        recipe_values = {k: v for k, v in values.items() if k in recipe_keys}
        if "sigmas" not in recipe_values and "num_inference_steps" in recipe_values:
            recipe_values["sigmas"] = None  # a step count replaces a fixed schedule
        return replace(self, guidance=guidance, **recipe_values)

    def describe(self) -> dict[str, Any]:
        """Everything the recipe sets, as plain data (logged at load, kept with each job)."""
        out = asdict(self)
        out["guidance"] = asdict(self.guidance)
        return out


def reference_sigmas(steps: int, tokens: int, *, base_shift: float = 0.95, max_shift: float = 2.05,
                     terminal: float | None = 0.1) -> list[float]:
    """``LTX2Scheduler.execute`` of the reference pipelines, without the final 0: ``linspace(1, 0)`` shifted by
    ``exp(mu)`` with ``mu`` linear in the token count, then stretched so the last sigma is ``terminal``."""
    slope = (max_shift - base_shift) / (MAX_SHIFT_TOKENS - BASE_SHIFT_TOKENS)
    mu = tokens * slope + (base_shift - slope * BASE_SHIFT_TOKENS)
    sigmas = [1.0 - i / steps for i in range(steps)]  # linspace(1, 0, steps + 1) without the 0
    sigmas = [math.exp(mu) / (math.exp(mu) + (1 / s - 1)) for s in sigmas]
    if terminal and sigmas[-1] < 1.0:  # one step is sigma 1 alone: nothing to stretch (the reference divides by 0)
        scale = (1.0 - sigmas[-1]) / (1.0 - terminal)
        sigmas = [1.0 - (1.0 - s) / scale for s in sigmas]
    return sigmas


REFINE_LORA_GLOB = "*distilled-lora*.safetensors"  # ltx-2-19b-distilled-lora-384, ltx-2.3-22b-distilled-lora-384-1.1

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("ltx-2.0-dev", "LTX-2.0 19B dev (Lightricks/LTX-2)",
           replace(REFERENCE_GUIDANCE, stg_blocks=(29,)), num_inference_steps=40, use_cross_timestep=False,
           refine_lora=REFINE_LORA_GLOB),
    Recipe("ltx-2.3-dev", "LTX-2.3 22B dev (diffusers/LTX-2.3-Diffusers)",
           REFERENCE_GUIDANCE, num_inference_steps=30, refine_lora=REFINE_LORA_GLOB),
    Recipe("ltx-2.0-distilled", "LTX-2.0 19B distilled (rootonchair/LTX-2-19b-distilled)",
           sigmas=DISTILLED_SIGMAS, use_cross_timestep=False, two_stage_qualities=("540p", "720p", "1080p"),
           refine_audio="stage2"),
    Recipe("ltx-2.3-distilled", "LTX-2.3 22B distilled",
           sigmas=DISTILLED_SIGMAS, two_stage_qualities=("540p", "720p", "1080p"), refine_audio="stage2"),
    Recipe("ltx-2.5", "LTX-2.5 distilled (Lightricks/LTX-2.5-Diffusers)",
           sigmas=DISTILLED_SIGMAS, two_stage_qualities=("540p", "720p", "1080p"), refine_audio="stage2"),
)}


@dataclass(frozen=True)
class Detected:
    recipe: Recipe
    reason: str  # why this recipe: shown at load
    overrides: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        extra = f"; overrides {self.overrides}" if self.overrides else ""
        return f"recipe {self.recipe.name} ({self.reason}){extra}"


def detect(folder: Path, *, name: str | None = None) -> Detected:
    """The folder's recipe: ``name`` if given, else ``pixgen.json``'s ``recipe``, else what the configs say;
    then ``pixgen.json``'s ``sampling`` overrides."""
    folder = Path(folder)
    settings = _read_settings(folder)
    chosen = name or settings.get("recipe")
    if chosen is not None:
        if chosen not in RECIPES:
            raise ModelError(f"unknown recipe {chosen!r}; known: {sorted(RECIPES)}", field="model")
        reason = "asked for" if name else f"named in {SETTINGS_FILE}"
    else:
        chosen, reason = _from_configs(folder)
    overrides = settings.get("sampling", {})
    if not isinstance(overrides, dict):
        raise ModelError(f"{folder / SETTINGS_FILE}: 'sampling' must be an object", field="model")
    recipe = RECIPES[chosen].with_overrides(overrides, source=str(folder / SETTINGS_FILE))
    return Detected(recipe, reason, dict(overrides))


def _read_settings(folder: Path) -> dict[str, Any]:
    path = folder / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}", field="model") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object", field="model")
    unknown = sorted(set(data) - {"recipe", "sampling"})
    if unknown:
        raise ModelError(f"{path}: unknown keys {unknown} (expected 'recipe' and 'sampling')", field="model")
    return data


def _config(folder: Path, *parts: str) -> dict[str, Any]:
    path = folder.joinpath(*parts)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _has_component(index: dict[str, Any], name: str) -> bool:
    """``model_index.json`` names a class for ``name`` (diffusers writes ``[null, null]`` for an optional component
    the folder does not have, so an LTX-2.0 folder saved by diffusers 0.42 lists ``duration_head`` too)."""
    entry = index.get(name)
    return isinstance(entry, list) and any(part is not None for part in entry)


def _from_configs(folder: Path) -> tuple[str, str]:
    """(recipe name, reason) from the folder's own configs: generation from the transformer and components,
    distilled from the scheduler (distilled folders ship one without dynamic shifting)."""
    index = _config(folder, "model_index.json")
    transformer = _config(folder, "transformer", "config.json")
    scheduler = _config(folder, "scheduler", "scheduler_config.json")
    if _has_component(index, "duration_head") or _has_component(index, "prompt_enhancer") \
            or transformer.get("use_keyframes_abs_pos_embedding"):
        return "ltx-2.5", "LTX-2.5 components (duration head / prompt enhancer / keyframe position embedding)"
    newer = transformer.get("gated_attn") or transformer.get("cross_attn_mod") or transformer.get("perturbed_attn")
    generation = "2.3" if newer else "2.0"
    why = "gated attention in the transformer config" if newer else "no LTX-2.3 transformer features"
    if scheduler.get("use_dynamic_shifting") is False:
        return f"ltx-{generation}-distilled", f"{why}; scheduler without dynamic shifting (distilled)"
    return f"ltx-{generation}-dev", f"{why}; dynamic-shift scheduler (dev)"
