"""The LTX-2 engine's warm-up: one real job per shape (``pixgen.engine.warmup``), at load, before any user's job.

Each runs every block a job of that shape runs (text, stage 1, the preview, ×2 upsample, stage 2 with its LoRA,
audio, the streaming decode, the encoder) with the recipe's schedules cut to their first sigmas: a denoising
step's kernels, graphs and memory are the same at every sigma, so two stage-1 steps and one stage-2 step make
what forty would, in a fraction of the time. With ``--compile`` this is where the graphs are compiled.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pixgen.engine.base import Preview, never_cancelled
from pixgen.engine.ltx2.compile import compile_report
from pixgen.engine.warmup import WarmupShape, WarmupState, resolve_warmup, started
from pixgen.errors import Cancelled

if TYPE_CHECKING:
    from pixgen.engine.ltx2.engine import LTX2Engine

log = logging.getLogger("pixgen.engine")

STAGE_ONE_STEPS = 2  # the first step of a stage pays one-off costs; the second is the steady one
STAGE_TWO_STEPS = 1


def warm_up(engine: LTX2Engine, value: str, *, on_state: Callable[[WarmupState], None] = lambda s: None,
            should_cancel: Callable[[], bool] = never_cancelled) -> WarmupState:
    """Run the shapes ``value`` names (``--warmup``) once each; reports its state through ``on_state`` before each
    shape and at the end. A failed shape ends the warm-up (logged; the worker serves cold from there); a cancel
    (the worker stopping) too."""
    shapes = resolve_warmup(value, qualities=engine.capabilities.qualities, on_gpu=engine.device.type == "cuda")
    state, t0 = started(shapes)
    on_state(state)
    if not shapes:
        return state
    with tempfile.TemporaryDirectory(prefix="pixgen-warmup-") as tmp, short_schedules(engine):
        for index, shape in enumerate(shapes):
            state = state.next(done=index, seconds=time.monotonic() - t0, compile=_compiled(engine))
            on_state(state)
            try:
                _one(engine, shape, Path(tmp) / f"{index}.mp4", should_cancel)
            except Cancelled:
                state = state.next(state="stopped", seconds=time.monotonic() - t0)
                on_state(state)
                return state
            except Exception as exc:  # a worker that cannot warm a shape still serves
                log.exception("warm-up of %s failed; serving without it", shape)
                state = state.next(state="failed", error=f"{shape}: {type(exc).__name__}: {exc}"[:300],
                                   seconds=time.monotonic() - t0)
                on_state(state)
                return state
    state = state.next(state="warm", done=len(shapes), seconds=time.monotonic() - t0, compile=_compiled(engine))
    log.info("warm-up: %s", state.describe())
    on_state(state)
    return state


def _one(engine: LTX2Engine, shape: WarmupShape, out: Path, should_cancel: Callable[[], bool]) -> None:
    def drop(preview: Preview) -> None:  # the draft's decode and encode are warmed, the file is not kept
        preview.path.unlink(missing_ok=True)

    t0 = time.monotonic()
    result = engine.generate(shape.request(), out, should_cancel=should_cancel, on_preview=drop)
    out.unlink(missing_ok=True)
    log.info("warm-up: %s in %.1f s (%s)", shape, time.monotonic() - t0, result.timings.as_dict())


@contextmanager
def short_schedules(engine: LTX2Engine) -> Iterator[None]:
    """Within the block the engine's recipe runs ``STAGE_ONE_STEPS`` and ``STAGE_TWO_STEPS`` of its schedules."""
    recipe = engine.recipe
    first = recipe.sigmas[:STAGE_ONE_STEPS] if recipe.sigmas else (1.0, 0.9)
    engine.recipe = replace(recipe, sigmas=tuple(first), refine_sigmas=recipe.refine_sigmas[:STAGE_TWO_STEPS])
    try:
        yield
    finally:
        engine.recipe = recipe


def _compiled(engine: LTX2Engine) -> dict[str, int]:
    report = compile_report(engine.pipes.text.transformer)
    if report is None:
        return {}
    return {k: int(report[k]) for k in ("graphs", "recompiles", "graph_breaks")}
