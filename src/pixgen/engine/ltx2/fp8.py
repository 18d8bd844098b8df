"""Float8 (e4m3) linear layers for the transformer: stored in float8 (the ``fp8`` memory mode) or also computed in
float8 (``--fp8-compute``).

- ``Float8StoredLinear`` keeps its weight and bias in float8 and casts them to the compute dtype inside its own
  forward: the numbers of diffusers' layerwise casting (bit for bit), without its hooks, which re-create every
  parameter at each call (``module.to``) and so break ``torch.compile`` (a ``torch.nn.Parameter()`` in the graph).
- ``Fp8Linear`` multiplies in float8 on the tensor cores (``torch._scaled_mm``): the weight is quantised once, at
  load, with one scale per output row (its absolute maximum maps to e4m3's 448); the activations are quantised at
  each call with one scale per token. ``_scaled_mm`` rescales the float32 accumulators by both and adds the bias in
  bfloat16. Hopper and Ada (compute capability 8.9+) run it in hardware; torch 2.13 also runs it on a CPU (no
  speed there; it is what the tests run).

Both are fixed subclasses of ``nn.Linear`` (one class for every layer, so one compiled graph serves every block;
``torch.nn.utils.parametrize`` makes a class per module and recompiles per block), and both show peft a
``weight`` in the compute dtype (read only to place a new LoRA adapter), so adapters loaded later stay in bfloat16.

Quality: e4m3 keeps 3 mantissa bits. Rounding to nearest leaves a relative error of at most 2^-4 per element,
about 2^-4/√3 ≈ 3.6 % RMS, in the weight and in the activation alike: about 5 % RMS on each product, so one
float8 linear layer's output sits ~26 dB above its error (SNR). Layers add their errors into the residual stream,
so the bound stated for one transformer forward is an output SNR of at least ``FORWARD_SNR_BOUND_DB`` against the
same forward in the compute dtype (``tests/test_fp8.py`` measures it on the toy; ``bench/gpu_bench.py`` at full
size, with the frames' PSNR against bfloat16).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal, cast

import torch
import torch.nn.functional as F

from pixgen.errors import ModelError

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
# One transformer forward in float8 against the compute dtype: 26 dB a layer (above), 6 dB given to the layers'
# errors adding up. Derived before measuring; not tuned to what the toy gives.
FORWARD_SNR_BOUND_DB = 20.0
# _scaled_mm takes matrices whose inner and outer sizes are multiples of 16; other layers stay in the compute dtype.
MULTIPLE = 16
Kernel = Literal["scaled_mm", "emulated"]


# -- float8 storage (the fp8 memory mode) -------------------------------------------------------------------------
# The modules diffusers' layerwise casting leaves alone: its defaults, the transformer's own ("norm") and peft's
# adapter layers (small, and computed in the compute dtype).
STORAGE_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$", "lora_", "lokr_", "hada_")


class Float8StoredLinear(torch.nn.Linear):
    """A linear layer whose weight and bias are stored in float8 and cast to ``compute_dtype`` in its forward."""

    stored_weight: torch.Tensor
    stored_bias: torch.Tensor | None
    compute_dtype: torch.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.stored_bias.to(self.compute_dtype) if self.stored_bias is not None else None
        return F.linear(x, self.stored_weight.to(self.compute_dtype), bias)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]  # peft places new adapters by it; nothing else
        return self.stored_weight.to(self.compute_dtype)

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]  # as weight: computed from the stored one
        return None if self.stored_bias is None else self.stored_bias.to(self.compute_dtype)


def store_in_float8(model: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Every ``nn.Linear`` of ``model`` outside ``STORAGE_SKIP`` (and not float8 already) → ``Float8StoredLinear``;
    returns how many. The layers the model computes in float8 (``Fp8Linear``) are float8 already."""
    count = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or any(re.search(p, name) for p in STORAGE_SKIP):
            continue
        weight, bias = module.weight, module.bias
        del module.weight, module.bias  # the parameters give way to the class's properties
        module.__class__ = Float8StoredLinear
        module.register_parameter("stored_weight", _frozen(weight.detach().to(FP8)))
        module.register_parameter("stored_bias", None if bias is None else _frozen(bias.detach().to(FP8)))
        cast(Float8StoredLinear, module).compute_dtype = compute_dtype
        count += 1
    return count


# -- float8 compute ------------------------------------------------------------------------------------------------
class Fp8Linear(torch.nn.Linear):
    """``x @ Wᵀ + b`` with ``x`` and ``W`` in float8 e4m3, row-wise scaled (see the module's docstring)."""

    weight_fp8: torch.Tensor  # (out, in) float8
    weight_scale: torch.Tensor  # (1, out) float32
    stored_bias: torch.Tensor | None  # in the compute dtype
    compute_dtype: torch.dtype
    kernel: Kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        quantised, scale = quantise_rows(rows)
        if self.kernel == "scaled_mm":
            out = torch._scaled_mm(quantised, self.weight_fp8.t(), scale_a=scale, scale_b=self.weight_scale,
                                   bias=self.stored_bias, out_dtype=x.dtype)
        else:
            out = emulated_matmul(quantised, scale, self.weight_fp8, self.weight_scale, self.stored_bias, x.dtype)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]  # peft places new adapters by it; nothing else
        return (self.weight_fp8.float() * self.weight_scale.t()).to(self.compute_dtype)

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]  # as weight: computed from the stored one
        return self.stored_bias


def quantise_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (rows, k) → float8 values and float32 scales (rows, 1): ``x ≈ values · scales``, each row's absolute
    maximum mapped to ``FP8_MAX``."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_(min=1e-12)
    scale = amax / FP8_MAX
    return (x.float() / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale


def emulated_matmul(quantised: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
                    bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """What ``_scaled_mm`` computes, in float32 from the dequantised operands: the numbers the kernel must give."""
    out = (quantised.float() * scale) @ (weight.float() * weight_scale.t()).t()
    if bias is not None:
        out = out + bias.float()
    return out.to(dtype)


def computes_in_float8(name: str, module: torch.nn.Module) -> bool:
    """The linear layers of the repeated blocks whose sizes ``_scaled_mm`` takes (not peft's adapter layers)."""
    return (type(module) is torch.nn.Linear and name.startswith("transformer_blocks.")
            and not re.search(r"\.lora_|\.lokr_|\.hada_", name)
            and module.in_features % MULTIPLE == 0 and module.out_features % MULTIPLE == 0)


def compute_in_float8(transformer: torch.nn.Module, *, kernel: Kernel, compute_dtype: torch.dtype,
                      quantise_on: torch.device | None = None) -> int:
    """The transformer blocks' linear layers → ``Fp8Linear``, their weights quantised now (on ``quantise_on`` when
    given: a GPU does it in moments, and the weights go back where they were); returns how many."""
    count = 0
    for name, module in list(_named_linears(transformer)):
        if computes_in_float8(name, module):
            to_fp8_linear(cast(torch.nn.Linear, module), kernel=kernel, compute_dtype=compute_dtype,
                          quantise_on=quantise_on)
            count += 1
    return count


def to_fp8_linear(module: torch.nn.Linear, *, kernel: Kernel, compute_dtype: torch.dtype,
                  quantise_on: torch.device | None = None) -> None:
    """One ``nn.Linear`` → ``Fp8Linear`` in place (its weight quantised; the bias kept in the compute dtype)."""
    weight, bias = module.weight.detach(), module.bias
    home = weight.device
    values, scale = quantise_rows(weight.to(quantise_on) if quantise_on is not None else weight)
    del module.weight, module.bias
    module.__class__ = Fp8Linear
    module.register_parameter("weight_fp8", _frozen(values.to(home)))
    module.register_buffer("weight_scale", scale.to(home).t().contiguous())  # (1, out): _scaled_mm's scale_b
    module.register_parameter("stored_bias", None if bias is None else _frozen(bias.detach().to(compute_dtype)))
    layer = cast(Fp8Linear, module)
    layer.compute_dtype, layer.kernel = compute_dtype, kernel


def _named_linears(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    return ((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))


def _frozen(tensor: torch.Tensor) -> torch.nn.Parameter:
    return torch.nn.Parameter(tensor, requires_grad=False)


def fp8_kernel_for(device: torch.device) -> Kernel:
    """The float8 matmul this device runs: ``_scaled_mm`` on NVIDIA GPUs of compute capability 8.9+ (Ada, Hopper,
    Blackwell) and on a CPU (torch's own implementation: correct, not faster). Anything else is refused."""
    if device.type == "cpu":
        return "scaled_mm"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 9):
            return "scaled_mm"
        name = torch.cuda.get_device_name(device)
        raise ModelError(f"--fp8-compute needs float8 matmuls (NVIDIA compute capability 8.9+: Ada, Hopper, "
                         f"Blackwell); {name} is {major}.{minor}. Leave --fp8-compute off (the fp8 memory mode "
                         "only stores in float8 and runs anywhere)", field="fp8_compute")
    raise ModelError(f"--fp8-compute runs on NVIDIA GPUs (compute capability 8.9+) and CPUs, not on {device.type}",
                     field="fp8_compute")
