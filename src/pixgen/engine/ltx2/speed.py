"""Speed options, each off until measured on a GPU (``bench/gpu_bench.py --options``) and switched on by name.

- ``compile``: ``torch.compile`` of the 48 repeated transformer blocks (diffusers' ``compile_repeated_blocks``),
  ``fullgraph`` and ``dynamic`` shapes: every ratio × quality × duration × stage is another shape, and dynamic
  shapes compile once for all of them instead of recompiling (and hitting dynamo's limit of 8) per shape.
- ``attention_backend``: a diffusers attention backend (``flash``, ``_flash_3``, ``sage``, ``_native_cudnn``…)
  for the attentions that take no mask: video and audio self-attention and the audio↔video cross-attention.
  The text cross-attention keeps the default (it takes the prompt's mask, which flash/sage refuse).
- ``step_cache``: reuse across denoising steps, lossy, explicit opt-in: ``taylorseer`` (TaylorSeer, Taylor-series
  forecasts of the attention outputs between full steps, kept apart per guidance pass by diffusers' cache
  contexts). Pyramid Attention Broadcast is not offered: it keeps one cache per attention module whatever the
  pass, so in one dev step the CFG pass (batch 2) and the STG and modality passes (batch 1) read each other's
  outputs (a shape error on the toy, wrong guidance in general).
"""

from __future__ import annotations

import logging

import torch

from pixgen.errors import ModelError

log = logging.getLogger("pixgen.engine")

# Attention modules of an LTX2VideoTransformerBlock that get no attention mask.
MASK_FREE_ATTENTIONS = ("attn1", "audio_attn1", "audio_to_video_attn", "video_to_audio_attn")


def apply_speed_options(transformer: torch.nn.Module, *, compile: bool = False, attention_backend: str = "",
                        step_cache: str = "none", compile_backend: str = "inductor") -> list[str]:
    """Switch the options on; returns what was done, for the load log."""
    done: list[str] = []
    if attention_backend:
        count = set_mask_free_attention_backend(transformer, attention_backend)
        done.append(f"{attention_backend} attention on {count} mask-free attention modules")
    if step_cache != "none":
        transformer.enable_cache(step_cache_config(step_cache))
        done.append(f"{step_cache} step cache")
    if compile:
        transformer.compile_repeated_blocks(fullgraph=True, dynamic=True, backend=compile_backend)
        done.append(f"torch.compile of the repeated blocks ({compile_backend}, dynamic shapes)")
    return done


def set_mask_free_attention_backend(transformer: torch.nn.Module, name: str) -> int:
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    try:
        backend = AttentionBackendName(name.lower())
    except ValueError:
        known = ", ".join(sorted(b.value for b in AttentionBackendName))
        raise ModelError(f"unknown attention backend {name!r}; diffusers has {known}",
                         field="attention_backend") from None
    try:
        _check_attention_backend_requirements(backend)
    except (ImportError, RuntimeError) as exc:
        raise ModelError(f"attention backend {name!r} cannot run here: {exc}", field="attention_backend") from exc
    count = 0
    for block in getattr(transformer, "transformer_blocks", ()):
        for attr in MASK_FREE_ATTENTIONS:
            module = getattr(block, attr, None)
            if module is not None and hasattr(module.processor, "_attention_backend"):
                module.processor._attention_backend = backend
                count += 1
    return count


def step_cache_config(name: str):
    """The diffusers cache config for ``name``."""
    if name == "taylorseer":
        from diffusers import TaylorSeerCacheConfig

        # Full steps for the first 3 and every 3rd after: the forecasts stand in for two of every three. diffusers'
        # default patterns ("^transformer_blocks.*attn", fully matched) miss LTX-2's attn1/attn2 names.
        attentions = "|".join(("attn1", "attn2", "audio_attn1", "audio_attn2", *MASK_FREE_ATTENTIONS[2:]))
        return TaylorSeerCacheConfig(cache_interval=3, disable_cache_before_step=3, max_order=1,
                                     cache_identifiers=[rf"transformer_blocks\.\d+\.({attentions})"])
    raise ModelError(f"unknown step cache {name!r}; use none or taylorseer", field="step_cache")
