"""Memory modes: how much of LTX-2 lives on the GPU, chosen at load from the free memory (or named).

Resident bf16 weights are ~64 GiB (LTX-2.0) / ~67 GiB (2.3): the transformer ~35 GiB, the Gemma-3-12B text
encoder ~23 GiB (busy ~1 s a job), the rest ~6 GiB. Each mode keeps less on the GPU than the one before:

- ``full``: everything, loaded straight to the GPU (no host copy). Costs nothing.
- ``text-offload``: all but the text encoder, which stays in pinned host memory and streams in layer by layer while
  a prompt is encoded (~1–2 s a job over PCIe).
- ``fp8``: as ``text-offload``, with the transformer stored in float8 (e4m3) and computed in bf16 layer by layer
  (``fp8.Float8StoredLinear``: diffusers' layerwise casting's numbers, cast inside each layer's forward, so
  ``torch.compile`` can trace it): ~35 → ~18 GiB, for a little quality and a cast per layer.
- ``offload``: as ``fp8``, and the big models (transformer, connectors, video VAE) take turns on the GPU: the one
  about to run moves in, the others out (the small ones, < 1 GiB together, stay). A model's transfer each time
  the stage changes.
- ``group-offload``: as ``fp8``, and the transformer streamed block by block (CUDA streams overlap the copies, half
  the bytes in float8), every other model leaf by leaf. Slowest; needs pinned host memory for all the weights.

``auto`` takes the first mode whose resident weights plus ``HEADROOM_GIB`` for activations fit the GPU's free
memory, and logs why. On a CPU there is nothing to save: ``full``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from pixgen.engine.ltx2.fp8 import store_in_float8
from pixgen.errors import ModelError

if TYPE_CHECKING:
    from diffusers.models.modeling_utils import ModelMixin

log = logging.getLogger("pixgen.engine")

MODES = ("full", "text-offload", "fp8", "offload", "group-offload")
GIB = 2**30
# Activations of the largest job (1080p 15 s refine at batch 1: ~13 GiB on the meta-device count), the streaming
# decode's tiles, and the CUDA context and cuBLAS workspace (~1 GiB).
HEADROOM_GIB = 16.0
_COMPONENTS = ("transformer", "text_encoder", "connectors", "vae", "audio_vae", "vocoder", "latent_upsampler")
TAKING_TURNS = ("transformer", "connectors", "vae")  # the big ones under ``offload``; the rest stay put
# Where a job's decode may run beside the next job's denoising (``--overlap-jobs``): the VAE stays on the device,
# moved by no hook. It costs the decode's activations on top of the denoising's, which ``plan_memory`` does not count.
FINISH_ASIDE_MODES = ("full", "text-offload", "fp8")


@dataclass(frozen=True)
class WeightBytes:
    """Bytes of each component's weights at the dtype they are loaded in."""

    sizes: dict[str, int]
    float8_transformer: bool = False  # its layers are float8 already (``--fp8-compute``): no mode halves it again

    def with_float8_transformer(self) -> WeightBytes:
        """As loaded with ``--fp8-compute``: the transformer's linear weights (nearly all of it) in one byte."""
        return WeightBytes({**self.sizes, "transformer": self.sizes.get("transformer", 0) // 2}, True)

    @classmethod
    def from_folder(cls, folder: Path, dtype: torch.dtype) -> WeightBytes:
        """From the safetensors headers on disk (element counts; no weight is read), at ``dtype`` (the vocoder at
        float32, as it is loaded)."""
        sizes = {}
        for name in _COMPONENTS:
            itemsize = torch.empty((), dtype=torch.float32 if name == "vocoder" else dtype).element_size()
            sizes[name] = itemsize * sum(_numel(f) for f in (Path(folder) / name).glob("*.safetensors"))
        return cls(sizes)

    @classmethod
    def from_modules(cls, modules: dict[str, torch.nn.Module]) -> WeightBytes:
        return cls({name: sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
                    for name, m in modules.items()})

    def resident(self, mode: str) -> int:
        """Weights on the GPU in ``mode`` (for the offload modes: the largest piece on it at once)."""
        total, text, transformer = sum(self.sizes.values()), self.sizes.get("text_encoder", 0), \
            self.sizes.get("transformer", 0)
        stored = transformer if self.float8_transformer else transformer // 2  # in float8 from ``fp8`` down
        if mode == "full":
            return total
        if mode == "text-offload":
            return total - text
        if mode == "fp8":
            return total - text - transformer + stored
        if mode == "offload":
            small = sum(v for k, v in self.sizes.items() if k not in (*TAKING_TURNS, "text_encoder"))
            big = [v for k, v in self.sizes.items() if k in TAKING_TURNS and k != "transformer"]
            return small + max([stored, *big])
        return stored // 48 * 2  # group-offload: about two float8 transformer blocks (of 48) at once


def _numel(path: Path) -> int:
    """Elements in a safetensors file, from its header (8-byte length, then JSON of dtype/shape per tensor)."""
    with open(path, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return sum(math.prod(t["shape"]) for key, t in header.items() if key != "__metadata__")


@dataclass(frozen=True)
class MemoryPlan:
    mode: str
    reason: str


def plan_memory(requested: str, weights: WeightBytes, device: torch.device,
                free_bytes: int | None = None) -> MemoryPlan:
    """The mode to load in: ``requested`` unless it is ``auto``, else the first that fits ``free_bytes`` (the
    device's free memory when not given) with ``HEADROOM_GIB`` to spare."""
    if requested not in ("auto", *MODES):
        raise ModelError(f"unknown memory mode {requested!r}; use auto or one of {', '.join(MODES)}", field="memory")
    need = {mode: weights.resident(mode) / GIB for mode in MODES}
    if requested != "auto":
        return MemoryPlan(requested, f"asked for; {need[requested]:.1f} GiB of weights on {device}")
    if device.type != "cuda":
        return MemoryPlan("full", f"{device}: the weights stay in host memory whatever the mode")
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    free = free_bytes / GIB
    for mode in MODES:
        if need[mode] + HEADROOM_GIB <= free:
            return MemoryPlan(mode, f"{free:.1f} GiB free on {device}: {need[mode]:.1f} GiB of weights + "
                                    f"{HEADROOM_GIB:.0f} GiB for activations fit")
    return MemoryPlan("group-offload", f"only {free:.1f} GiB free on {device}: the least resident mode")


def full_load_device_map(mode: str, device: torch.device) -> str | None:
    """``device_map`` for ``from_pretrained``: stream ``full`` weights straight to the (first) GPU, so a worker
    needs no host copy of them; the other modes load to host memory and place each component themselves."""
    if mode == "full" and device.type == "cuda" and device.index in (None, 0):
        return "cuda"
    return None


def apply_memory_mode(modules: dict[str, torch.nn.Module], mode: str, device: torch.device,
                      compute_dtype: torch.dtype) -> None:
    """Place ``modules`` (name → module, as the pipelines share them) on ``device`` or the host for ``mode``,
    wherever they are now. Modes apply on top of each other down the list (a benchmark walks them in one process);
    none is undone."""
    if mode not in MODES:
        raise ModelError(f"unknown memory mode {mode!r}", field="memory")
    level = MODES.index(mode)
    cuda = device.type == "cuda"
    if level == 0:
        for module in modules.values():
            module.to(device)
        return
    transformer = modules["transformer"]
    if level >= MODES.index("fp8") and _once(transformer, "fp8"):
        # The norms, embeddings and the patch projections stay in the compute dtype (the model's skip patterns).
        store_in_float8(transformer, compute_dtype)
    # The text encoder streams in leaf by leaf (its layers are not a top-level list); so, in group-offload, does
    # everything but the transformer, which goes a block at a time.
    streamed = {"text_encoder"} if mode != "group-offload" else set(modules) - {"transformer"}
    for name in streamed & set(modules):
        if _once(modules[name], "streamed"):
            _remove_turns(modules[name])
            modules[name].to("cpu")
            _group_offload(modules[name], device, cuda)
    if mode == "group-offload":
        if _once(transformer, "streamed"):
            _remove_turns(transformer)
            transformer.to("cpu")
            streamer = cast("ModelMixin", transformer)  # diffusers' model class: it has enable_group_offload
            streamer.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                          offload_type="block_level", num_blocks_per_group=1, use_stream=cuda)
        return
    turns = [m for name, m in modules.items() if name in TAKING_TURNS] if mode == "offload" else []
    for name, module in modules.items():
        if name not in streamed and not any(module is t for t in turns):
            module.to(device)
    if turns and _once(turns[0], "turns"):
        _take_turns(turns, device)


def _once(module: torch.nn.Module, what: str) -> bool:
    """True the first time ``what`` is done to ``module`` (placements are not undone, nor done twice)."""
    done = module.__dict__.setdefault("_pixgen_placement", set())
    if what in done:
        return False
    done.add(what)
    return True


def _remove_turns(module: torch.nn.Module) -> None:
    if "turns" in module.__dict__.get("_pixgen_placement", ()):
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(module)


class ShortUnexecutedLayers(logging.Filter):
    """diffusers' streamed offload warns once per module with every layer its first forward did not run: for the
    text encoder that is the whole vision tower (hundreds of names, ~30 KB on one log line), which LTX-2 never
    calls for text. One line with the count says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "unexecuted_layers=" in message:
            count = message.count("', '") + 1
            record.msg = (f"streamed offload: {count} layers did not run in the first forward (for the text "
                          "encoder: its vision tower, unused for text prompts); they stay on the host")
            record.args = ()
        return True


def _group_offload(module: torch.nn.Module, device: torch.device, use_stream: bool) -> None:
    from diffusers.hooks import apply_group_offloading

    hooks_log = logging.getLogger("diffusers.hooks.group_offloading")
    if not any(isinstance(f, ShortUnexecutedLayers) for f in hooks_log.filters):
        hooks_log.addFilter(ShortUnexecutedLayers())
    apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=use_stream)


def _take_turns(modules: list[torch.nn.Module], device: torch.device) -> None:
    """Each of ``modules`` moves to ``device`` when it is about to run, and the others of the group back to host
    memory: one of them on the GPU at a time, whatever order the stages call them in (accelerate's chained
    ``cpu_offload_with_hook`` only sends back the one before it in a fixed order)."""
    from accelerate.hooks import ModelHook, add_hook_to_module
    from accelerate.utils import send_to_device

    class TakeTurns(ModelHook):
        execution_device = device  # what diffusers' pipelines read as the device to run on

        def pre_forward(self, module, *args, **kwargs):
            for other in modules:
                if other is not module and _on(other, device):
                    other.to("cpu")
            if not _on(module, device):
                module.to(device)
            return send_to_device(args, device), send_to_device(kwargs, device)

    for module in modules:
        module.__dict__.setdefault("_pixgen_placement", set()).add("turns")
        module.to("cpu")
        add_hook_to_module(module, TakeTurns())


def _on(module: torch.nn.Module, device: torch.device) -> bool:
    param = next(module.parameters(), None)
    return param is not None and param.device.type == device.type


def describe(plan: MemoryPlan, weights: WeightBytes) -> str:
    return (f"memory mode {plan.mode} ({plan.reason}; full would be {weights.resident('full') / GIB:.1f} GiB of "
            f"weights)")
