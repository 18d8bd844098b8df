"""Loading an LTX-2 diffusers folder once: the device and dtype, and the pipelines that share its weights.

Every pipeline is built with its constructor over the same components (``LTX2Pipeline.from_pipe`` is not used:
in diffusers 0.42 it casts every shared module to float32 in place when no ``dtype`` is given, which doubles a
bfloat16 model on the GPU, and it undoes FP8 layerwise casting and refuses quantized modules).

All of them share one scheduler that runs the sigmas it is given as they are (no dynamic shift, no stretch to a
terminal value): the schedule of every stage is computed by the recipe (``recipes.py``) and passed explicitly.
The vocoder runs in float32 whatever the rest is: the reference pipelines force it ("bfloat16 arithmetic causes
40-90% spectral metric degradation"), and it is ~0.1–0.25 GiB.
On a CPU without fast half-precision convolutions the video VAE runs in float32 too (``video_vae_dtype``), its
inputs cast at its door (``cast_at_the_door``).
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video

# The pipelines from their own modules: to a type checker, diffusers' top level holds its no-torch dummies.
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2ConditionPipeline
from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2InContextPipeline
from diffusers.pipelines.ltx2.pipeline_ltx2_image2video import LTX2ImageToVideoPipeline
from diffusers.pipelines.ltx2.pipeline_ltx2_latent_upsample import LTX2LatentUpsamplePipeline

from pixgen.errors import ModelError

log = logging.getLogger("pixgen.engine")

DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DTYPE_CHOICES = ("auto", *DTYPES)
UPSAMPLER_DIR = "latent_upsampler"


def resolve_device(device: str | None) -> torch.device:
    """``None``/"auto": the worker's GPU (``cuda`` = the first one ``CUDA_VISIBLE_DEVICES`` shows) if any, else CPU."""
    # Every job's shapes differ (ratio × quality × duration × stage): expandable segments let the caching allocator
    # grow blocks instead of fragmenting. Read at the first CUDA allocation, so set before any.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``None``/"auto": bfloat16 on an accelerator (the checkpoints' own dtype), float32 on a CPU."""
    if dtype in (None, "", "auto"):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}", field="dtype")
    return DTYPES[dtype]


def video_vae_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The video VAE's dtype: the worker's, except on a CPU whose oneDNN has no fast half-precision convolution
    (bfloat16 needs AVX512-BF16 or AMX, float16 AVX512-FP16 or AMX). There a 3-D convolution in half precision falls
    back to a reference kernel: a 64-channel conv3d took 5.2 s in bfloat16 against 0.18 s in float32 on an AVX2 CPU,
    and the toy's 360p decode 61 s. So such a CPU decodes and encodes video in float32; the transformer keeps the
    worker's dtype (its matmuls are not the slow path) and the latents are cast at the VAE's door, as on a GPU."""
    if device.type != "cpu" or dtype == torch.float32:
        return dtype
    mkldnn = torch.ops.mkldnn
    fast = mkldnn._is_mkldnn_bf16_supported() if dtype == torch.bfloat16 else mkldnn._is_mkldnn_fp16_supported()
    return dtype if fast else torch.float32


def cast_at_the_door(vae: AutoencoderKLLTX2Video) -> None:
    """Inputs to ``vae``'s encoder and decoder cast to its dtype. diffusers' pipelines assume the VAE is in the
    pipeline's dtype (``LTX2ImageToVideoPipeline`` hands ``encode`` an image in the prompt embeddings' dtype), so a
    float32 VAE beside a bfloat16 transformer (``video_vae_dtype``) takes every tensor in through these hooks."""
    def cast(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        dtype = next(module.parameters()).dtype
        def to(value: object) -> object:
            return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value
        return tuple(to(a) for a in args), {k: to(v) for k, v in kwargs.items()}

    for part in (vae.encoder, vae.decoder):
        part.register_forward_pre_hook(cast, with_kwargs=True)


@dataclass
class Pipelines:
    """The diffusers pipelines of one folder, all over the same modules."""

    text: LTX2Pipeline  # text → video (also stage 2 of a job without image conditions)
    image: LTX2ImageToVideoPipeline  # a start frame
    condition: LTX2ConditionPipeline  # frames at any latent index (start + end, extend, stage 2 of those)
    upsample: LTX2LatentUpsamplePipeline | None  # ×2 latent upsampler, when the folder has one
    scheduler_config: dict  # the folder's own scheduler config (its shift parameters feed the recipe's sigmas)

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        named = {k: v for k, v in self.text.components.items() if isinstance(v, torch.nn.Module)}
        if self.upsample is not None:
            named["latent_upsampler"] = self.upsample.latent_upsampler
        return named


def load_pipelines(folder: Path, *, device: torch.device, dtype: torch.dtype,
                   device_map: str | None = None) -> Pipelines:
    """Load ``folder``'s components in ``dtype``: to host memory, or with ``device_map`` straight to the GPU. Placing
    them for a memory mode is the caller's next step (``memory.apply_memory_mode``), once any LoRA is in."""
    folder = Path(folder)
    if not (folder / "model_index.json").exists():
        raise ModelError(f"{folder} is not a diffusers-format folder (no model_index.json)", field="model")
    try:
        base = LTX2Pipeline.from_pretrained(folder, dtype={"default": dtype, "vocoder": torch.float32,
                                                           "vae": video_vae_dtype(dtype, device)},
                                            device_map=device_map, local_files_only=True)
    except Exception as exc:  # any loading failure is a model error for the user
        raise ModelError(f"could not load LTX-2 from {folder}: {exc}", field="model") from exc
    if base.vae.dtype != dtype:
        cast_at_the_door(base.vae)
    upsampler = None
    if (folder / UPSAMPLER_DIR).is_dir():
        upsampler = LTX2LatentUpsamplerModel.from_pretrained(folder, subfolder=UPSAMPLER_DIR, dtype=dtype,
                                                             local_files_only=True)
        if device_map is not None:
            upsampler.to(device)
    return pipelines_from(base, upsampler)


def pipelines_from(base: LTX2Pipeline, upsampler: LTX2LatentUpsamplerModel | None) -> Pipelines:
    """Every pipeline pixgen runs, over ``base``'s modules (nothing is copied or cast)."""
    as_given = FlowMatchEulerDiscreteScheduler.from_config(base.scheduler.config, use_dynamic_shifting=False,
                                                           shift_terminal=None, shift=1.0)
    components = {**base.components, "scheduler": as_given}
    pipes = Pipelines(
        text=_build(LTX2Pipeline, components),
        image=_build(LTX2ImageToVideoPipeline, components),
        condition=_build(LTX2ConditionPipeline, components),
        upsample=LTX2LatentUpsamplePipeline(vae=base.vae, latent_upsampler=upsampler) if upsampler else None,
        scheduler_config=dict(base.scheduler.config),
    )
    for pipe in (pipes.text, pipes.image, pipes.condition, pipes.upsample):
        if pipe is not None:
            pipe.set_progress_bar_config(disable=True)
    return pipes


def in_context_pipeline(pipes: Pipelines) -> LTX2InContextPipeline:
    """The IC-LoRA pipeline (reference videos) over the same modules and scheduler; built when first needed."""
    pipe = _build(LTX2InContextPipeline, pipes.text.components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _build(cls, components: dict):
    """``cls`` over the components its constructor takes (LTX-2.5's extra ones only where accepted)."""
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{name: module for name, module in components.items() if name in accepted})
