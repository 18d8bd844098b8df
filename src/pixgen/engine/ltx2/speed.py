"""Speed options, each off until measured on a GPU (``bench/gpu_bench.py --plan speed``) and switched on by name.

- ``fp8_compute``: the transformer blocks' linear layers multiply in float8 (``fp8.py``; Hopper/Ada+), distinct
  from the ``fp8`` memory mode, which only stores in float8.
- ``compile``: ``torch.compile`` of the repeated transformer blocks with dynamic sequence lengths, compiled before
  the memory mode's and the step cache's hooks go on so that it holds with all of them (``compile.py``).
- ``attention_backend``: a diffusers attention backend (``_native_cudnn``, ``_native_flash``, ``flash``,
  ``_flash_3``, ``sage``…) for the attentions that take no mask: video and audio self-attention and the
  audio↔video cross-attention. The text cross-attention keeps the default (it takes the prompt's mask, which
  flash/sage refuse).
- ``step_cache``: reuse across denoising steps, lossy, explicit opt-in: ``taylorseer`` (TaylorSeer, Taylor-series
  forecasts of the attention outputs between full steps, kept apart per guidance pass by diffusers' cache
  contexts). Pyramid Attention Broadcast is not offered: it keeps one cache per attention module whatever the
  pass, so in one dev step the CFG pass (batch 2) and the STG and modality passes (batch 1) read each other's
  outputs (a shape error on the toy, wrong guidance in general).

Order (``LTX2Engine.load``): ``prepare_transformer`` (float8 layers, attention backend, compiled regions) before the
memory mode places the weights, ``finish_transformer`` (the step cache) after.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from pixgen.engine.base import EngineOptions
from pixgen.engine.ltx2.compile import compile_transformer, keep_hooked_calls_out
from pixgen.engine.ltx2.fp8 import compute_in_float8, fp8_kernel_for
from pixgen.errors import ModelError

log = logging.getLogger("pixgen.engine")

# Attention modules of an LTX2VideoTransformerBlock that get no attention mask.
MASK_FREE_ATTENTIONS = ("attn1", "audio_attn1", "audio_to_video_attn", "video_to_audio_attn")
# The attentions the step cache forecasts (all of a block's).
CACHED_ATTENTIONS = ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
# Backends that run on a CPU; every other one needs an NVIDIA GPU.
CPU_BACKENDS = ("native", "_native_math", "flex")
# What to install for a backend diffusers reports missing (pixgen runs offline: the *_hub backends cannot fetch).
INSTALL_HINTS = {
    "flash": "the flash-attn wheel for this torch and CUDA",
    "_flash_3": "FlashAttention-3 built from source (no wheel on PyPI)",
    "sage": "sageattention>=2.1.1 (built from source; PyPI has only 1.0.6)",
}


def prepare_transformer(transformer: torch.nn.Module, options: EngineOptions, device: torch.device,
                        compute_dtype: torch.dtype) -> list[str]:
    """Before the weights are placed: float8 compute layers, the attention backend, the compiled regions. Returns
    what was done, for the load log."""
    done: list[str] = []
    if options.fp8_compute:
        kernel = fp8_kernel_for(device)
        count = compute_in_float8(transformer, kernel=kernel, compute_dtype=compute_dtype,
                                  quantise_on=device if device.type == "cuda" else None)
        done.append(f"float8 compute ({kernel}, row-wise scales) in {count} linear layers")
    if options.attention_backend:
        count = set_mask_free_attention_backend(transformer, options.attention_backend, device)
        done.append(f"{options.attention_backend} attention on {count} mask-free attention modules")
    if options.compile:
        cached = CACHED_ATTENTIONS if options.step_cache != "none" else ()
        compile_transformer(transformer, backend=options.compile_backend, cached_attentions=cached)
        done.append(f"torch.compile of the repeated blocks ({options.compile_backend}, dynamic shapes"
                    + (", the cached attentions compiled apart)" if cached else ", whole graphs)"))
    return done


def finish_transformer(transformer: torch.nn.Module, options: EngineOptions) -> list[str]:
    """After the weights are placed: the step cache, whose hooks go around the compiled attentions."""
    done: list[str] = []
    if options.step_cache != "none":
        transformer.enable_cache(step_cache_config(options.step_cache))  # type: ignore[operator]  # diffusers' CacheMixin
        done.append(f"{options.step_cache} step cache")
        if options.compile:
            count = keep_hooked_calls_out(transformer, CACHED_ATTENTIONS)
            done.append(f"{count} cached attention calls kept out of the compiled block graphs")
    return done


def apply_speed_options(transformer: torch.nn.Module, *, compile: bool = False, attention_backend: str = "",
                        step_cache: str = "none", compile_backend: str = "inductor", fp8_compute: bool = False,
                        device: torch.device | None = None) -> list[str]:
    """Every speed option at once on a transformer whose weights are placed without hooks (the ``full`` memory
    mode): ``prepare_transformer`` then ``finish_transformer``."""
    # the ignore: plain strings here; EngineOptions' Literal fields are checked where flags are parsed
    options = EngineOptions(compile=compile, attention_backend=attention_backend, step_cache=step_cache,  # type: ignore[arg-type]
                            compile_backend=compile_backend, fp8_compute=fp8_compute)
    device = device or next(transformer.parameters()).device
    dtype: torch.dtype = getattr(transformer, "dtype", torch.float32)
    return prepare_transformer(transformer, options, device, dtype) + finish_transformer(transformer, options)


def set_mask_free_attention_backend(transformer: torch.nn.Module, name: str,
                                    device: torch.device | None = None) -> int:
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    try:
        backend = AttentionBackendName(name.lower())
    except ValueError:
        known = ", ".join(sorted(b.value for b in AttentionBackendName))
        raise ModelError(f"--attention-backend: unknown backend {name!r}; diffusers has {known}",
                         field="attention_backend") from None
    if backend.value.endswith("_hub"):
        raise ModelError(f"--attention-backend {name}: a *_hub backend fetches its kernel from the Hugging Face Hub "
                         "at first use, and pixgen runs offline; install the kernel's wheel and name its backend",
                         field="attention_backend")
    if device is not None and device.type != "cuda" and backend.value not in CPU_BACKENDS:
        raise ModelError(f"--attention-backend {name} needs an NVIDIA GPU; on {device.type} use one of "
                         f"{', '.join(CPU_BACKENDS)} (or leave it unset)", field="attention_backend")
    try:
        _check_attention_backend_requirements(backend)
    except (ImportError, RuntimeError) as exc:
        hint = INSTALL_HINTS.get(backend.value.split("_varlen")[0])
        raise ModelError(f"--attention-backend {name} cannot run here: {exc}"
                         + (f" (install {hint})" if hint else ""), field="attention_backend") from exc
    count = 0
    for block in getattr(transformer, "transformer_blocks", ()):
        for attr in MASK_FREE_ATTENTIONS:
            module = getattr(block, attr, None)
            if module is not None and hasattr(module.processor, "_attention_backend"):
                module.processor._attention_backend = backend
                count += 1
    return count


def step_cache_config(name: str) -> Any:
    """The diffusers cache config for ``name``."""
    if name == "taylorseer":
        from diffusers import TaylorSeerCacheConfig

        # Full steps for the first 3 and every 3rd after: the forecasts stand in for two of every three. diffusers'
        # default patterns ("^transformer_blocks.*attn", fully matched) miss LTX-2's attn1/attn2 names.
        attentions = "|".join(CACHED_ATTENTIONS)
        return TaylorSeerCacheConfig(
            cache_interval=3, disable_cache_before_step=3, max_order=1,
            cache_identifiers=[rf"transformer_blocks\.\d+\.({attentions})"])
    raise ModelError(f"unknown step cache {name!r}; use none or taylorseer", field="step_cache")
