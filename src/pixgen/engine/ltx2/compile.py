"""``torch.compile`` of the transformer that holds with every memory mode, float8 layers and the step cache.

What is compiled is the forward of each of the 48 repeated blocks (regional compilation, as diffusers'
``compile_repeated_blocks``): one graph serves every block, so the compile costs one block's, not the model's. It
is installed as each block's own ``forward`` *before* any hook goes on the block, so a hook registered later (group
offload's onloading) wraps the compiled code and runs outside it, where its streams and parameter moves belong.
Inside a block:

- ``full``, ``text-offload``, ``offload``: no hook inside a block (``offload`` moves the whole transformer,
  outside the blocks): each block one whole graph (``fullgraph``).
- ``fp8`` and ``--fp8-compute``: ``fp8.py``'s layers cast or quantise in their own forward, no hook: whole graphs,
  the casts fused into them.
- ``group-offload``: its hook sits on each block, around the compiled code: whole graphs.
- the ``taylorseer`` step cache: its hook on each of a block's 6 attentions: the block graph breaks at each.

The step cache decides per call, in Python, whether an attention runs or is forecast: traced, that state would be
a guard that fails every step. So with the cache each cached attention's call stays out of the block's graph (a
graph break each, run eagerly with its hook) and the attention's own forward, under the hook, is a compiled region
of its own (whole).

Views: the first block's inputs are views (of the projections' and embeddings' flat outputs), the next blocks'
are the last block's outputs; dynamo guards on a view's base, so one block forward would make two graphs. The
compiled code is handed its inputs as plain aliases of the same memory (``detach``, a no-op for tensors that need
no grad), so every block runs the same graph.

Floats: dynamo makes the Python floats a block reads (norms' eps, dropout's p, float8's 448) symbols by default,
and AOTAutograd (inductor's front end) then specialises them anyway and restarts the whole trace: every graph
traced twice. They are constants of the model, so they are specialised from the start (``specialize_float``, set
for the process as the recompile limit is: pixgen compiles nothing else).

Shapes: ``dynamic=True`` makes the sequence lengths symbols, so every ratio × quality × duration × stage is one
shape family that compiles once; what still compiles anew is a change of the code's path (a batch of 1 against 2,
a LoRA switched on). Only the token counts are symbols: the inputs' other dims (the widths, fixed by the weights,
and the batch) are marked static on the way in, which halves a trace's symbolic arithmetic and keeps dynamo from
duck-sizing a width with an unrelated dim of the same size (a recompile when they part). ``CompileCounter``
counts those graphs, the recompiles among them and the graph breaks, for the load log, the warm-up and the
benchmark.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

import torch

log = logging.getLogger("pixgen.engine")

# A block's code serves several paths (batch 1 and 2, STG and modality passes, LoRAs on and off); dynamo's default
# of 8 graphs per code object would send the ninth back to eager without an error.
RECOMPILE_LIMIT = 64
ATTR = "_pixgen_compile"  # where the transformer keeps its counter


@dataclass
class CompileCounter:
    """A ``torch.compile`` backend that counts what it is handed, then passes each graph to the real backend."""

    backend: str
    graphs: int = 0
    recompiles: int = 0  # graphs of a code object that had been compiled before (a guard failed)
    breaks_before: Counter[str] = field(default_factory=Counter)

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        from torch._guards import CompileContext

        compile_id = CompileContext.current_compile_id()
        self.graphs += 1
        if compile_id is not None and compile_id.frame_compile_id:
            self.recompiles += 1
        return torch._dynamo.lookup_backend(self.backend)(gm, example_inputs)

    def graph_breaks(self) -> dict[str, int]:
        """Graph breaks (reason → count) since this counter was made (dynamo counts them process-wide)."""
        from torch._dynamo.utils import counters

        now = Counter(counters["graph_break"])
        now.subtract(self.breaks_before)
        return {reason: count for reason, count in now.items() if count > 0}

    def report(self) -> dict[str, Any]:
        breaks = self.graph_breaks()
        return {"backend": self.backend, "graphs": self.graphs, "recompiles": self.recompiles,
                "graph_breaks": sum(breaks.values()), "graph_break_reasons": breaks}


def repeated_blocks(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    names = getattr(transformer, "_repeated_blocks", None) or ()
    return [m for m in transformer.modules() if type(m).__name__ in names]


def compile_transformer(transformer: torch.nn.Module, *, backend: str = "inductor",
                        cached_attentions: tuple[str, ...] = ()) -> CompileCounter:
    """Compile each repeated block's forward (and, for a step cache, the forward of the attentions named in
    ``cached_attentions``), before any hook is registered on them (see the module's docstring)."""
    from torch._dynamo.utils import counters

    blocks = repeated_blocks(transformer)
    if not blocks:
        raise RuntimeError(f"{type(transformer).__name__} names no repeated blocks to compile")
    attentions = [getattr(b, name) for b in blocks for name in cached_attentions if hasattr(b, name)]
    hooked = [m for m in (*blocks, *attentions) if _has_hooks(m)]
    if hooked:
        raise RuntimeError("compile the blocks before hooks go on them (memory modes, step cache): "
                           f"{type(hooked[0]).__name__} already has one")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    torch._dynamo.config.specialize_float = True  # see the module's docstring
    counter = CompileCounter(backend, breaks_before=Counter(counters["graph_break"]))
    whole = not attentions  # a cached attention is a graph break in its block
    block_forward = _region(type(blocks[0]).forward, counter, whole=whole)
    for block in blocks:
        block.forward = MethodType(block_forward, block)
    if attentions:
        attention_forward = _region(type(attentions[0]).forward, counter, whole=True)
        for attention in attentions:
            attention.forward = MethodType(attention_forward, attention)
    setattr(transformer, ATTR, counter)
    return counter


def _region(forward: Callable[..., Any], counter: CompileCounter, *, whole: bool) -> Callable[..., Any]:
    """``forward`` compiled (dynamic shapes, ``fullgraph`` when ``whole``), called with each tensor argument (alone
    or in a tuple, as the rotary embeddings) prepared for dynamo:

    - it is replaced by a plain alias of its memory (``detach``): the same values, strides and storage, and for a
      view no base for dynamo to guard on (see the module's docstring). A tensor that needs grad is passed as it
      is (``detach`` would cut its graph).
    - every dim but its tokens' is marked static (``_mark_static``): only the token counts are symbols."""
    compiled = torch.compile(forward, backend=counter, dynamic=True, fullgraph=whole)
    names = list(inspect.signature(forward).parameters)

    @functools.wraps(compiled)
    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_prepared(a, name) for a, name in zip(args, names, strict=False)) + args[len(names):]
        return compiled(*args, **{name: _prepared(v, name) for name, v in kwargs.items()})

    return call


def _prepared(value: Any, name: str) -> Any:
    if isinstance(value, tuple):
        return tuple(_prepared(item, name) for item in value)
    if not isinstance(value, torch.Tensor):
        return value
    if not value.requires_grad:
        value = value.detach()  # a plain alias, on which the marks go (not on the caller's tensor)
    if "mask" not in name:
        _mark_static(value)
    return value


def _mark_static(tensor: torch.Tensor) -> None:
    """Every dim of a block's or an attention's input but its tokens' (the next to last of hidden states ``(batch,
    tokens, width)``, timestep embeddings ``(batch, 1 or tokens, k × width)``, rotary embeddings ``(batch, heads,
    tokens, head width)``) static for dynamo. The widths are properties of the weights; the batch is 1 or 2 by the
    guidance pass, a graph each whatever is marked (dynamo specialises a 1). Left dynamic, each would be a symbol with
    its guards and its arithmetic in every shape expression the trace makes (half of a trace's time), and in the toy,
    where widths are small, one duck-sized together with a token count or a head count that happens to be equal: a
    recompile when it stops being. Masks are not marked: their dims are token counts (a prompt's, an IC-LoRA's)."""
    static = [dim for dim in range(tensor.dim()) if tensor.dim() < 3 or dim != tensor.dim() - 2]
    if static:
        torch._dynamo.mark_static(tensor, static)


def keep_hooked_calls_out(transformer: torch.nn.Module, names: tuple[str, ...]) -> int:
    """After the step cache's hooks are on: each hooked module ``names`` of every block runs outside the block's
    graph (its hook eagerly, its compiled forward under it). Returns how many."""
    count = 0
    for block in repeated_blocks(transformer):
        for name in names:
            module = getattr(block, name, None)
            if module is not None and _has_hooks(module):
                module.__dict__[HOOKED] = module.forward
                module.forward = MethodType(_run_hooked, module)
                count += 1
    return count


HOOKED = "_pixgen_hooked_forward"


@torch.compiler.disable(recursive=True)
def _run_hooked(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """A hooked module's call, opaque to dynamo (a graph break; its hook runs eagerly). One function for every
    module, so the blocks' graphs guard on the same code (a closure per module would recompile per block), and not
    the hook registry's forward itself: that carries ``__wrapped__`` back to the unbound class forward, which
    dynamo would try to inline."""
    return module.__dict__[HOOKED](*args, **kwargs)


def uncompile(transformer: torch.nn.Module) -> None:
    """The plain forwards back (the benchmark's variants share one model); dynamo's caches are dropped."""
    for block in repeated_blocks(transformer):
        for module in block.modules():
            if "forward" in module.__dict__:
                if _has_hooks(module) or HOOKED in module.__dict__:
                    raise RuntimeError("take the hooks off before the compiled forwards")
                del module.forward
    if hasattr(transformer, ATTR):
        delattr(transformer, ATTR)
    torch._dynamo.reset()


def compile_report(transformer: torch.nn.Module) -> dict[str, Any] | None:
    """What compiling has done so far (graphs, recompiles, graph breaks), or None when it is not compiled."""
    counter = getattr(transformer, ATTR, None)
    return counter.report() if counter is not None else None


def _has_hooks(module: torch.nn.Module) -> bool:
    registry = getattr(module, "_diffusers_hook", None)
    return bool(getattr(registry, "hooks", None)) or hasattr(module, "_hf_hook")
