"""``--compile`` with every memory mode, float8 compute and the step cache, on the toy LTX-2 in float32 and bfloat16.

Each check compares ONE transformer forward, compiled against plain, on the same real inputs (captured from a job
at each of two shapes): whole denoising runs would compare a chaotic random-weight toy, where one rounding
difference grows to tens of 8-bit levels. The backend is dynamo's ``eager`` (it traces exactly what inductor would
get, graph breaks and guards included, and runs the traced ops as they are, so the outputs are equal bit for bit)
and, once, ``aot_eager`` (AOTAutograd's functionalised graph, inductor's input); inductor itself compiles for
minutes on this CPU and is measured on the GPU (``bench/gpu_bench.py --plan speed``)."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.compile import compile_report
from pixgen.engine.ltx2.memory import MODES

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPES = ("360p", "540p")  # 960 and 2040 video tokens: two shapes of one family


def request(quality="360p", **fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": quality, "seed": 7,
                          "thinking_type": "disabled", **fields})


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from nothing (dynamo's caches are per process, and other tests' graphs would count)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Captured(Exception):
    """Raised by ``inputs``' hook: the job has made its first transformer call, the rest of it is not needed."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The first transformer call's inputs of a plain job at each shape, per dtype (the job stopped there)."""
    from pixgen.engine import load_engine

    out = {}
    for dtype in ("float32", "bfloat16"):
        engine = load_engine("tiny", dtype=dtype)
        for quality in SHAPES:
            captured = []

            def keep_first(module, args, kwargs, captured=captured) -> None:
                captured.append((args, kwargs))
                raise Captured

            hook = engine.pipes.text.transformer.register_forward_pre_hook(keep_first, with_kwargs=True)
            with pytest.raises(Captured):
                engine.generate(request(quality), tmp_path_factory.mktemp("in") / "v.mp4")
            hook.remove()
            out[dtype, quality] = captured[0]
    return out


def forward(engine, args, kwargs, cached: bool):
    """One transformer call; with a step cache, from a fresh cache state in one context (the pipeline's way)."""
    transformer = engine.pipes.text.transformer
    context = contextlib.nullcontext()
    if cached:
        transformer._reset_stateful_cache()
        context = transformer.cache_context("cond")
    with torch.no_grad(), context:
        return transformer(*args, **kwargs)


def compare_at_both_shapes(inputs, dtype: str, backend: str = "eager", exact: bool = True,
                           shapes: tuple[str, ...] = SHAPES, **options):
    """Plain and compiled engines with ``options``: equal forwards at ``shapes``; the compile report after each."""
    from pixgen.engine import load_engine

    plain = load_engine("tiny", dtype=dtype, **options)
    compiled = load_engine("tiny", dtype=dtype, compile=True, compile_backend=backend, **options)
    cached = options.get("step_cache", "none") != "none"
    reports = []
    for quality in shapes:
        args, kwargs = inputs[dtype, quality]
        want, got = forward(plain, args, kwargs, cached), forward(compiled, args, kwargs, cached)
        assert len(want) == len(got) == 2  # video and audio
        for w, g in zip(want, got, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            if exact:
                assert torch.equal(g, w), (quality, float((g.float() - w.float()).abs().max()))
            else:
                torch.testing.assert_close(g, w)
        reports.append(compile_report(compiled.pipes.text.transformer))
    return compiled, reports


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compiled_blocks_equal_the_plain_ones_whole_down_every_memory_mode(inputs, dtype):
    """Compiled once, then placed in each memory mode in turn, each on top of the last (as ``apply_memory_mode``
    allows; a plain engine walks the same ladder). ``fullgraph``: a graph break fails the compile, so the blocks
    compile under group offload's hooks and over fp8's float8 layers; the second shape of every mode reuses the
    first's graphs (``dynamic``); every block runs one graph; only a change of the blocks' contents (float8
    storage) makes new graphs."""
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.memory import apply_memory_mode

    plain = load_engine("tiny", dtype=dtype)
    compiled = load_engine("tiny", dtype=dtype, compile=True, compile_backend="eager")
    seen = {}
    for mode in MODES:
        for engine in (plain, compiled):
            apply_memory_mode(engine.pipes.modules, mode, engine.device, engine.dtype)
        reports = []
        for quality in SHAPES:
            args, kwargs = inputs[dtype, quality]
            want, got = forward(plain, args, kwargs, False), forward(compiled, args, kwargs, False)
            for w, g in zip(want, got, strict=True):
                assert torch.equal(g, w), (mode, quality, float((g.float() - w.float()).abs().max()))
            reports.append(compile_report(compiled.pipes.text.transformer))
        assert reports[0] == reports[1], (mode, reports)  # the second shape compiled nothing
        assert reports[1]["graph_breaks"] == 0, mode
        seen[mode] = reports[1]["graphs"]
    # one graph per kind of block, for both blocks (the first one's inputs are views, handed over unviewed): plain
    # layers for full, text-offload; float8 layers from fp8 on (offload and group-offload add hooks outside blocks)
    assert seen == {"full": 1, "text-offload": 1, "fp8": 2, "offload": 2, "group-offload": 2}, seen


def test_a_compiled_engine_loaded_in_group_offload_runs_a_whole_job(tmp_path):
    """The load order itself: compiled blocks first, then group offload's hooks on each block."""
    from pixgen.engine import load_engine

    engine = load_engine("tiny", dtype="bfloat16", memory="group-offload", compile=True, compile_backend="eager")
    result = engine.generate(request(), tmp_path / "group-offload.mp4")
    assert result.num_frames == 25
    assert compile_report(engine.pipes.text.transformer)["graph_breaks"] == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compiled_blocks_hold_with_float8_compute(inputs, dtype):
    _, (first, second) = compare_at_both_shapes(inputs, dtype, fp8_compute=True)
    assert first["graph_breaks"] == 0 and second == first


@pytest.mark.parametrize("memory,dtype", [("full", "float32"), ("group-offload", "bfloat16")])
def test_with_the_step_cache_only_the_cached_attentions_break_the_block_graph(inputs, memory, dtype):
    """The cache's hooks run eagerly around each cached attention; each attention's own forward is compiled whole
    under its hook. The breaks are those calls and nothing else, their number does not grow with the blocks (one
    graph per code path), and a second shape compiles nothing new."""
    _, (first, second) = compare_at_both_shapes(inputs, dtype, memory=memory, step_cache="taylorseer")
    assert first["graph_breaks"] > 0
    assert all("_run_hooked" in reason for reason in first["graph_break_reasons"]), first["graph_break_reasons"]
    assert second == first
    # the block's 7 segments around the 6 cached calls (twice: the first block's view guards) + one graph per kind
    # of attention (video/audio × self/cross/a2v/v2a): a bound of the code's paths, not of the number of blocks
    assert first["graphs"] <= 2 * 7 + 6, first


def test_aot_eager_keeps_float8_compute_under_group_offload_close(inputs):
    """AOTAutograd's functionalised graph (what inductor compiles), float8 matmuls and group offload, bfloat16 (one
    shape: AOT tracing is slow here, and the shapes are the eager tests' business)."""
    _, (report,) = compare_at_both_shapes(inputs, "bfloat16", backend="aot_eager", exact=False, shapes=SHAPES[:1],
                                          memory="group-offload", fp8_compute=True)
    assert report["graph_breaks"] == 0
    assert report["graphs"] == 1, report  # both blocks one graph, traced once (no restart to specialise a float)


def test_a_compiled_engine_runs_whole_jobs_with_stg_modality_guidance_and_the_refine_lora(toy_variant, tmp_path):
    """The dev recipe's four passes a step (CFG batch 2, STG, modality) and a two-stage job whose stage 2 runs the
    distilled LoRA: each code path is a graph of its own, all made by the first job; the second job, at another
    shape, compiles nothing."""
    from test_engine_stages import lora_file

    from pixgen.engine import load_engine

    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 2, "stg_scale": 1.0, "modality_scale": 3.0,
                                         "two_stage_qualities": ["360p", "540p"]},
                         files={"toy-19b-distilled-lora-384.safetensors": lora_file()})
    engine = load_engine(str(folder), dtype="bfloat16", compile=True, compile_backend="eager")
    first = engine.generate(request("360p"), tmp_path / "a.mp4")
    assert first.two_stage and first.stage2_lora
    after_first = compile_report(engine.pipes.text.transformer)
    second = engine.generate(request("540p"), tmp_path / "b.mp4")
    assert second.num_frames == 25
    assert compile_report(engine.pipes.text.transformer) == after_first
    assert after_first["graph_breaks"] == 0


def test_compile_refuses_to_go_under_hooks_already_on_the_blocks():
    """The order is the point: compiled code under the hooks. Compiling a block that already has one (the old
    order, which traced group offload's streams and failed) is a programming error, said at load."""
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.compile import compile_transformer

    engine = load_engine("tiny", memory="group-offload")
    with pytest.raises(RuntimeError, match="before hooks"):
        compile_transformer(engine.pipes.text.transformer, backend="eager")
