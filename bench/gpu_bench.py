"""GPU benchmark: pixgen's real engine on full-size LTX-2 (random weights), against diffusers' own calls, one run.

    python bench/gpu_bench.py                       # on a GPU: every case, full size, ~5 min on one H200
    python bench/gpu_bench.py --scale toy --duration 1 --quality 360p   # the same code at toy size (CPU test)
    python bench/gpu_bench.py --sizes               # full-size parameter counts, built on the meta device

Nothing is downloaded: the transformer, video/audio VAEs, connectors, vocoder, latent upsampler and a
Gemma-3-12B text encoder are built from their published configs (``ltx2_configs.py``) with random weights directly
on the device, then wrapped in the real engine (``LTX2Engine`` over ``pipelines_from``), exactly as a loaded folder
is. Random weights make noise, at the real cost of every stage.

Cases (``--cases``), each as a 5 s 16:9 job with audio:
- ``distilled-720p``: the distilled recipe, two stages (8 sigmas at half size, ×2, 3 sigmas), timed whole.
- ``dev-720p``: the dev recipe in one stage (40 steps × CFG + STG + modality); ``--timed-steps`` steps are run
  and timed, the whole job extrapolated from the median step.
- ``dev-1080p``: the dev recipe in two stages; stage 1 timed for ``--timed-steps`` steps and extrapolated.

For each: wall time per stage (text, denoise, upsample, refine, audio, decode, encode), per-step times, peak GPU
memory, model FLOPs utilisation of the denoising steps (FLOPs counted by ``torch.utils.flop_counter`` on the
stage's own transformer calls), and the same job through diffusers' plain calls as its docs write them
(``LTX2Pipeline(...)`` → ``LTX2LatentUpsamplePipeline`` → ``LTX2Pipeline(latents=..., sigmas=STAGE_2…)`` →
``encode_video``), in the same process on the same weights: the ratio pixgen / diffusers. The distilled case also
runs diffusers with pixgen's own guidance ("matched": equal work), which isolates the pipeline overheads.

``--variants speed,memory`` then runs ``--variant-case`` (distilled 720p) once per speed option (compile, the
mask-free attention backends, the TaylorSeer step cache, then the fastest set whose frames stay within
``PSNR_BOUND_DB`` of the plain run) and once per memory mode (full → text-offload → fp8 → offload → group-offload,
each on top of the last): wall per stage, peak GPU memory, speed-up, and PSNR of frames and audio spectrum against
the plain run of the same seed.

``--smoke`` (on by default on a GPU) also runs the toy model on the device through ``pixgen generate`` and one job
through ``pixgen serve``. Results go to ``bench/results/gpu.json`` (``--out``).

What the device needs besides torch and transformers: ``diffusers==0.42.*``, ``av``, ``peft``, ``accelerate``,
``safetensors``, ``tokenizers``, ``pillow``, ``numpy``, and pixgen itself (``pip install --no-deps -e .``); for the
serve smoke test also fastapi, uvicorn, pydantic, sqlalchemy, alembic, httpx, python-multipart. ``bench/gpu_run.sh``
installs them from wheels carried in ``.whl/`` (``bench/gpu_wheels.sh`` fetches them) and runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = ("A red kite climbs over a windy beach at sunset while waves crash on the sand and gulls cry overhead; "
          "the camera follows it upward in one smooth handheld move.")
NEGATIVE = "blurry, distortion, low quality, grainy, warped faces, deformed hands, extra limbs, watermark"
# Dense bf16 tensor-core peaks (no sparsity), for MFU; other devices report achieved TFLOP/s only.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "RTX 4090": 165.2}
TARGETS = {"distilled_720p_wall_s": 10.0, "dev_denoise_mfu": 0.40}
STARTED = time.monotonic()
BUDGET_S = float("inf")  # --budget-s: the device lease is short; what would not fit is skipped, and said so


def time_left() -> float:
    return BUDGET_S - (time.monotonic() - STARTED)


@dataclass(frozen=True)
class Case:
    name: str
    recipe: str
    quality: str
    two_stage: bool
    extrapolate: bool  # run --timed-steps stage-1 steps and extrapolate to the recipe's own count


CASES = {c.name: c for c in (
    Case("distilled-720p", "ltx-2.0-distilled", "720p", True, False),
    Case("dev-720p", "ltx-2.0-dev", "720p", False, True),
    Case("dev-1080p", "ltx-2.0-dev", "1080p", True, True),
)}


# -- building the model ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def default_dtype(dtype):
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def full_components(version: str, device: str, dtype, tokenizer) -> tuple[dict, Any]:
    """Every component at full size with random weights, created on ``device`` in ``dtype`` (vocoder: float32)."""
    import ltx2_configs as cfg
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines import ltx2
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    torch.manual_seed(0)
    with torch.device(device), default_dtype(dtype):
        parts = dict(
            transformer=LTX2VideoTransformer3DModel(**cfg.TRANSFORMER[version]),
            connectors=ltx2.LTX2TextConnectors(**cfg.CONNECTORS[version]),
            vae=AutoencoderKLLTX2Video(**cfg.VAE[version]),
            audio_vae=AutoencoderKLLTX2Audio(**cfg.AUDIO_VAE),
            text_encoder=Gemma3ForConditionalGeneration(Gemma3Config(
                text_config=Gemma3TextConfig(**cfg.GEMMA3_TEXT), vision_config=SiglipVisionConfig(**cfg.SIGLIP),
                **cfg.GEMMA3)),
        )
    # built on the host: its blur kernel is an integer matmul, which CUDA does not implement
    with default_dtype(dtype):
        upsampler = ltx2.LTX2LatentUpsamplerModel(**cfg.UPSAMPLER[version]).to(device)
    vocoder_class, vocoder_config = cfg.VOCODER[version]
    with torch.device(device), default_dtype(torch.float32):
        parts["vocoder"] = getattr(ltx2, vocoder_class)(**vocoder_config)
    for module in (*parts.values(), upsampler):
        module.eval().requires_grad_(False)
    parts["scheduler"] = FlowMatchEulerDiscreteScheduler(**cfg.SCHEDULER)
    parts["tokenizer"] = tokenizer
    return parts, upsampler


def toy_components(device: str, dtype) -> tuple[dict, Any]:
    """The toy model's components, loaded as pixgen loads any folder (the CPU test of this script)."""
    from pixgen.engine import resolve_model_dir
    from pixgen.engine.ltx2.loading import load_pipelines, resolve_device

    pipes = load_pipelines(resolve_model_dir("tiny"), device=resolve_device(device), dtype=dtype)
    base = dict(pipes.text.components)
    from diffusers import FlowMatchEulerDiscreteScheduler

    base["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(pipes.scheduler_config)
    return base, pipes.upsample.latent_upsampler


def meta_sizes(version: str) -> dict[str, float]:
    """Billions of parameters per full-size component, built on the meta device (no memory, no weights)."""
    from transformers import AutoTokenizer

    from pixgen.engine import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("tiny") / "tokenizer")
    parts, upsampler = full_components(version, "meta", __import__("torch").bfloat16, tokenizer)
    sizes = {name: sum(p.numel() for p in m.parameters()) / 1e9 for name, m in parts.items()
             if hasattr(m, "parameters")}
    sizes["latent_upsampler"] = sum(p.numel() for p in upsampler.parameters()) / 1e9
    return {k: round(v, 3) for k, v in sizes.items()}


# -- measuring -------------------------------------------------------------------------------------------------
class Device:
    def __init__(self, name: str):
        import torch

        self.torch = torch
        self.device = torch.device(name)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return round(self.torch.cuda.max_memory_allocated(self.device) / 2**30, 2) if self.cuda else None

    def allocated_gib(self) -> float | None:
        return round(self.torch.cuda.memory_allocated(self.device) / 2**30, 2) if self.cuda else None

    def describe(self) -> dict[str, Any]:
        out = {"device": str(self.device), "torch": self.torch.__version__, "python": platform.python_version()}
        if self.cuda:
            props = self.torch.cuda.get_device_properties(self.device)
            out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                       cuda=self.torch.version.cuda)
        return out

    def peak_tflops(self) -> float | None:
        if not self.cuda:
            return None
        name = self.torch.cuda.get_device_name(self.device)
        return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


class StepClock:
    """Times each denoising step (the device is synchronised at every step, so a step's time is its own)."""

    def __init__(self, dev: Device):
        self.dev = dev
        self.marks: list[float] = []

    def start(self) -> None:
        self.dev.sync()
        self.marks = [time.perf_counter()]

    def step(self) -> None:
        self.dev.sync()
        self.marks.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


class TransformerCalls:
    """Keeps the arguments of every transformer call in the first step of each stage, to count their FLOPs."""

    def __init__(self, transformer):
        self.transformer = transformer
        self.stage = None
        self.by_stage: dict[str, list[dict]] = {}
        self.step_of_stage: dict[str, int] = {}
        self.handle = transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if self.stage is not None and self.step_of_stage.get(self.stage, 0) == 0:
            self.by_stage.setdefault(self.stage, []).append(dict(kwargs))

    def flops_per_step(self, stage: str) -> float | None:
        from torch.utils.flop_counter import FlopCounterMode

        calls = self.by_stage.get(stage)
        if not calls:
            return None
        counter = FlopCounterMode(display=False)
        with counter, __import__("torch").no_grad():
            for kwargs in calls:
                self.transformer(**kwargs)
        return float(counter.get_total_flops())

    def close(self):
        self.handle.remove()


def summarise_steps(durations: list[float]) -> dict[str, Any]:
    if not durations:
        return {"count": 0}
    steady = durations[1:] if len(durations) > 1 else durations  # the first step pays one-off costs
    return {"count": len(durations), "first_s": round(durations[0], 3), "median_s": round(statistics.median(steady), 4)}


def mfu(flops: float | None, step_s: float | None, peak: float | None) -> dict[str, Any]:
    if not flops or not step_s:
        return {}
    achieved = flops / step_s / 1e12
    return {"flops_per_step": flops, "achieved_tflops": round(achieved, 1),
            "mfu": round(achieved / peak, 3) if peak else None}


# -- one case: pixgen --------------------------------------------------------------------------------------------
def case_folder(root: Path, case: Case, quality: str, *, steps: int | None, toy: bool) -> Path:
    """A folder holding only ``pixgen.json``: the case's recipe (the weights come from memory)."""
    folder = root / case.name
    folder.mkdir(parents=True, exist_ok=True)
    sampling: dict[str, Any] = {"two_stage_qualities": [quality] if case.two_stage else []}
    if steps is not None:
        sampling["num_inference_steps"] = steps
    if toy:
        sampling["max_sequence_length"] = 64  # the toy's connectors are small
    (folder / "pixgen.json").write_text(json.dumps({"recipe": case.recipe, "sampling": sampling}))
    return folder


def run_pixgen(case: Case, base, upsampler, dev: Device, args, work: Path, *, memory: str = "full",
               keep: Path | None = None, count_flops: bool = True) -> dict[str, Any]:
    from pixgen.core.spec import parse_request
    from pixgen.engine.ltx2.engine import LTX2Engine
    from pixgen.engine.ltx2.loading import pipelines_from
    from pixgen.engine.ltx2.recipes import RECIPES, detect

    steps = args.timed_steps if case.extrapolate else None
    quality = args.quality or case.quality
    folder = case_folder(work, case, quality, steps=steps, toy=args.scale == "toy")
    engine = LTX2Engine(folder, pipelines_from(base, upsampler), detect(folder), dev.device, memory=memory)
    request = parse_request({"prompt": PROMPT, "negative_prompt": NEGATIVE, "duration": args.duration,
                             "quality": quality, "aspect_ratio": "16:9", "seed": 1,
                             "thinking_type": "disabled"})
    calls = TransformerCalls(engine.pipes.text.transformer)
    stage_one_steps = engine.recipe.num_inference_steps
    clocks = {"stage1": StepClock(dev), "stage2": StepClock(dev)}

    def on_progress(p):
        if p.stage == "denoise":
            clock = clocks["stage1"] if p.step <= stage_one_steps else clocks["stage2"]
            clock.step()
            calls.step_of_stage[calls.stage] = calls.step_of_stage.get(calls.stage, 0) + 1
            if p.step == stage_one_steps:
                calls.stage = "stage2"
                clocks["stage2"].start()

    calls.stage = "stage1"
    dev.reset_peak()
    dev.sync()
    clocks["stage1"].start()
    t0 = time.perf_counter()
    result = engine.generate(request, work / f"{case.name}.mp4", on_progress=on_progress)
    dev.sync()
    wall = time.perf_counter() - t0
    calls.stage = None
    out: dict[str, Any] = {"wall_s": round(wall, 3), "peak_gib": dev.peak_gib(),
                           "stages_s": result.timings.as_dict(),
                           "generation_size": "{}x{}".format(*result.generation_size), "frames": result.num_frames,
                           "recipe": result.recipe, "two_stage": result.two_stage}
    peak = dev.peak_tflops()
    for stage, clock in clocks.items():
        steps_summary = summarise_steps(clock.durations())
        if steps_summary["count"]:
            if count_flops:  # off for the variants: a counting re-run would meet their caches and compiled code
                steps_summary.update(mfu(calls.flops_per_step(stage), steps_summary.get("median_s"), peak))
            out[stage] = steps_summary
    calls.close()
    if case.extrapolate:
        full = RECIPES[case.recipe].num_inference_steps
        out["timed_stage1_steps"] = steps
        out["extrapolated_wall_s"] = round(wall + (full - steps) * out["stage1"]["median_s"], 2)
    if keep is not None:
        (work / f"{case.name}.mp4").replace(keep)
    else:
        (work / f"{case.name}.mp4").unlink(missing_ok=True)
    return out


# -- variants: speed options and memory modes, each against the plain full-memory run ---------------------------
SPEED_VARIANTS = ("baseline", "attention:_native_cudnn", "attention:_native_flash", "attention:_flash_3",
                  "attention:sage", "taylorseer", "compile")
PSNR_BOUND_DB = 30.0  # an option counts as "within bound" when its frames stay at least this close to the plain run


def run_variants(kind: str, base, upsampler, dev: Device, args, work: Path, out: dict[str, Any],
                 save: Callable[[], None]) -> dict[str, Any]:
    """``speed``: each option alone on the plain model, then the fastest set within the quality bound; ``memory``:
    the memory modes down the list (each on top of the one before, as they cannot be undone). Every variant runs
    ``--variant-case`` and is compared with the first run: wall, peak memory, PSNR of frames and audio spectrum."""
    from pixgen.engine.ltx2.memory import MODES, apply_memory_mode

    case = CASES[args.variant_case]
    reference = work / f"{kind}-reference.mp4"
    out["case"] = case.name
    modules = {name: m for name, m in base.components.items() if hasattr(m, "parameters")}
    modules["latent_upsampler"] = upsampler
    names = tuple(args.speed_variants.split(",")) if kind == "speed" else MODES
    for name in names:
        video = work / f"{kind}-{name.replace(':', '-')}.mp4"
        # speed leaves time for the memory ladder after it; compile also pays its compilation
        reserve = (150 if kind == "speed" and "memory" in args.variants else 20) + (90 if name == "compile" else 0)
        if time_left() < reserve:
            out[name] = {"skipped": "out of device time"}
            continue
        try:
            if kind == "memory":
                apply_memory_mode(modules, name, dev.device, base.text_encoder.dtype)
                measured = run_pixgen(case, base, upsampler, dev, args, work, memory=name, keep=video,
                                      count_flops=False)
            else:
                with speed_option(base.transformer, name) as applied:
                    measured = {"applied": applied}
                    if name == "compile":  # the first job of a shape family pays the compilation
                        first = run_pixgen(case, base, upsampler, dev, args, work, count_flops=False)
                        measured["first_job_wall_s"] = first["wall_s"]
                    measured.update(run_pixgen(case, base, upsampler, dev, args, work, keep=video,
                                               count_flops=False))
        except Exception as exc:  # noqa: BLE001 - an option that cannot run here is a result too
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"{kind}/{name}: {out[name]['error']}", file=sys.stderr, flush=True)
            continue
        if not reference.exists():
            video.replace(reference)
        else:
            measured["quality"] = compare(reference, video)
            video.unlink(missing_ok=True)
        base_wall = out[names[0]]["wall_s"] if names[0] in out and "wall_s" in out[names[0]] else None
        if base_wall:
            measured["speedup"] = round(base_wall / measured["wall_s"], 3)
        out[name] = measured
        save()
        print(f"{kind}/{name}: {json.dumps(measured)[:300]}", file=sys.stderr, flush=True)
    if kind == "speed" and time_left() > 60:
        chosen = [n for n in names[1:] if out.get(n, {}).get("speedup", 0) > 1.0
                  and within_bound(out[n].get("quality", {}))]
        attention = [n for n in chosen if n.startswith("attention:")]
        chosen = [n for n in chosen if not n.startswith("attention:")] + (
            [max(attention, key=lambda n: out[n]["speedup"])] if attention else [])
        out["fastest_within_bound"] = {"options": chosen, "psnr_bound_db": PSNR_BOUND_DB}
        if chosen:
            video = work / "speed-fastest.mp4"
            with contextlib.ExitStack() as stack:
                for n in chosen:
                    stack.enter_context(speed_option(base.transformer, n))
                fastest = run_pixgen(case, base, upsampler, dev, args, work, keep=video, count_flops=False)
            fastest["quality"] = compare(reference, video)
            fastest["speedup"] = round(out["baseline"]["wall_s"] / fastest["wall_s"], 3)
            out["fastest_within_bound"].update(fastest)
    return out


def within_bound(quality: dict) -> bool:
    if quality.get("identical_frames"):
        return True
    return (quality.get("frames_psnr_db") or 0) >= PSNR_BOUND_DB


@contextlib.contextmanager
def speed_option(transformer, name: str):
    """One speed option on ``transformer`` for the block, then off again."""
    from pixgen.engine.ltx2.speed import MASK_FREE_ATTENTIONS, apply_speed_options

    if name == "baseline":
        yield []
        return
    kind, _, value = name.partition(":")
    kwargs = {"attention": {"attention_backend": value}, "taylorseer": {"step_cache": "taylorseer"},
              "compile": {"compile": True}}[kind]
    applied = apply_speed_options(transformer, **kwargs)
    try:
        yield applied
    finally:
        if kind == "attention":
            for block in transformer.transformer_blocks:
                for attr in MASK_FREE_ATTENTIONS:
                    getattr(block, attr).processor._attention_backend = None
        elif kind == "taylorseer":
            transformer.disable_cache()
        elif kind == "compile":
            for block in transformer.transformer_blocks:
                block._compiled_call_impl = None


def compare(reference: Path, candidate: Path) -> dict[str, float | None]:
    """PSNR of the candidate's frames against the reference's (decoded, frame by frame), and of its audio's
    log-magnitude spectrum (dB, 1024-sample windows)."""
    import av
    import numpy as np

    from pixgen.media.probe import read_audio

    squared, count = 0.0, 0
    with av.open(str(reference)) as a, av.open(str(candidate)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
            x = fa.to_ndarray(format="rgb24").astype(np.float64)
            y = fb.to_ndarray(format="rgb24").astype(np.float64)
            squared += float(((x - y) ** 2).sum())
            count += x.size
    frames = 10 * np.log10(255.0**2 / (squared / count)) if squared else float("inf")
    audio = None
    ra, rb = read_audio(reference), read_audio(candidate)
    if ra is not None and rb is not None:
        n = min(ra.shape[1], rb.shape[1])
        sa, sb = _log_spectrum(ra[:, :n]), _log_spectrum(rb[:, :n])
        mse = float(((sa - sb) ** 2).mean())
        span = float(sa.max() - sa.min())
        audio = round(10 * np.log10(span**2 / mse), 2) if mse else None  # None: identical
    return {"frames_psnr_db": round(frames, 2) if frames != float("inf") else None, "audio_spectrum_psnr_db": audio,
            "identical_frames": squared == 0}


def _log_spectrum(samples):
    import numpy as np

    window = np.hanning(1024)
    frames = [samples[:, i : i + 1024] * window for i in range(0, samples.shape[1] - 1024, 256)]
    spectrum = np.abs(np.fft.rfft(np.stack(frames, axis=1), axis=-1))
    return 20 * np.log10(spectrum + 1e-6)


# -- one case: diffusers' plain calls ---------------------------------------------------------------------------
def run_diffusers(case: Case, base, upsampler, dev: Device, args, work: Path, *, matched: bool) -> dict[str, Any]:
    """The job as diffusers' docs write it (``matched``: with pixgen's guidance instead, equal work)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
    from diffusers.utils import encode_video

    from pixgen.core.sizes import output_size
    from pixgen.engine.ltx2.geometry import plan_geometry
    from pixgen.engine.ltx2.recipes import RECIPES, UNGUIDED

    recipe = RECIPES[case.recipe]
    distilled = recipe.sigmas is not None
    width, height = output_size("16:9", args.quality or case.quality)
    geometry = plan_geometry(width, height, two_stage=case.two_stage)
    num_frames = args.duration * 24 + 1
    steps = args.timed_steps if case.extrapolate else recipe.num_inference_steps
    components = dict(base.components)
    scheduler_config = dict(components["scheduler"].config)
    if distilled:  # a distilled folder ships its scheduler without dynamic shifting
        components["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(
            scheduler_config, use_dynamic_shifting=False, shift_terminal=None)
    pipe = LTX2Pipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    # The docs pass guidance_scale only: every other term takes the pipeline's defaults (audio CFG 7, STG,
    # modality), also in the distilled calls. "matched" passes pixgen's recipe instead.
    guidance: dict[str, Any] = {**recipe.guidance.pipeline_kwargs()} if matched else \
        {"guidance_scale": recipe.guidance.guidance_scale}
    sequence = {"max_sequence_length": 64} if args.scale == "toy" else {}  # the toy's connectors are small
    clock = StepClock(dev)

    def on_step(p, i, t, kwargs):
        clock.step()
        return {}

    vocoder = pipe.vocoder
    quiet_cast(vocoder, base.vae.dtype)  # as diffusers loads it: in the pipeline's dtype (pixgen: float32)
    pipe.vae.enable_tiling()  # the docs' advice against running out of memory in the decode
    dev.reset_peak()
    dev.sync()
    t0 = time.perf_counter()
    try:
        w1, h1 = geometry.stage_one_size
        first = dict(prompt=PROMPT, negative_prompt=NEGATIVE, width=w1, height=h1, num_frames=num_frames,
                     frame_rate=24.0, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1),
                     callback_on_step_end=on_step, return_dict=False, **guidance, **sequence)
        if distilled:
            first["sigmas"] = DISTILLED_SIGMA_VALUES
        clock.start()
        if not case.two_stage:
            video, audio = pipe(output_type="np", **first)
            step_times = clock.durations()
        else:
            latents, audio_latents = pipe(output_type="latent", **first)
            step_times = clock.durations()
            up = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler)
            upscaled = up(latents=latents, output_type="latent", return_dict=False)[0]
            pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                scheduler_config, use_dynamic_shifting=False, shift_terminal=None)
            second = {**UNGUIDED.pipeline_kwargs()} if matched else {"guidance_scale": 1.0}
            video, audio = pipe(latents=upscaled, audio_latents=audio_latents, prompt=PROMPT,
                                negative_prompt=NEGATIVE, num_inference_steps=3,
                                noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0], sigmas=STAGE_2_DISTILLED_SIGMA_VALUES,
                                generator=torch.Generator("cpu").manual_seed(2), output_type="np",
                                return_dict=False, **second, **sequence)
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - its tqdm bar
            encode_video(video[0], fps=24, audio=audio[0].float().cpu(),
                         audio_sample_rate=pipe.vocoder.config.output_sampling_rate,
                         output_path=str(work / f"{case.name}-diffusers.mp4"))
        dev.sync()
        wall = time.perf_counter() - t0
    finally:
        quiet_cast(vocoder, torch.float32)
        pipe.vae.disable_tiling()
    out: dict[str, Any] = {"wall_s": round(wall, 3), "peak_gib": dev.peak_gib(), "call": "matched" if matched else
                           "docs", "stage1": summarise_steps(step_times)}
    if case.extrapolate:
        out["extrapolated_wall_s"] = round(wall + (recipe.num_inference_steps - steps)
                                           * out["stage1"]["median_s"], 2)
    (work / f"{case.name}-diffusers.mp4").unlink(missing_ok=True)
    return out


def quiet_cast(module, dtype) -> None:
    """``module.to(dtype)`` without diffusers' warning that casting with ``to()`` skips keep-in-float32 modules
    (the vocoder has none)."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        module.to(dtype)
    finally:
        logging.set_verbosity(level)


# -- smoke tests: the toy on the device through the CLI and the service -------------------------------------------
def smoke(work: Path, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {**os.environ, "PIXGEN_DEVICE": device, "PIXGEN_DTYPE": "bfloat16",
           "PIXGEN_CACHE_DIR": os.environ.get("PIXGEN_CACHE_DIR", str(work / "cache"))}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pixgen", "generate", "a lighthouse at night", "--duration", "2",
                           "--quality", "720p", "--seed", "5", "-o", str(work / "smoke.mp4")],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    out["generate"] = {"ok": proc.returncode == 0, "wall_s": round(time.perf_counter() - t0, 2),
                       "stdout": proc.stdout.strip()[-300:], "stderr": proc.stderr.strip()[-1500:]}
    try:
        out["serve"] = serve_smoke(work, env)
    except Exception as exc:  # noqa: BLE001 - report it, keep the numbers already measured
        out["serve"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


def serve_smoke(work: Path, env: dict[str, str]) -> dict[str, Any]:
    import httpx

    from pixgen.testing import start_server, wait_for

    server = start_server(work / "serve", workers=1, env={k: v for k, v in env.items() if k.startswith("PIXGEN_")},
                          ready=True, timeout=300)
    try:
        key = server.new_key(credits=100)
        headers = {"Authorization": f"Bearer {key}"}
        t0 = time.perf_counter()
        job = httpx.post(f"{server.url}/api/v1/models/pixverse-v6/run", headers=headers, timeout=30,
                         json={"prompt": "a red kite over a beach", "duration": 1, "quality": "540p", "seed": 3})
        job.raise_for_status()
        job_id = job.json()["jobId"]

        def done():
            status = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            return status if status["status"] in ("completed", "failed", "cancelled") else None

        status = wait_for(done, timeout=300)
        video = httpx.get(status["output"]["video"], timeout=60) if status["status"] == "completed" else None
        return {"ok": status["status"] == "completed" and video is not None and video.status_code == 200,
                "status": status["status"], "error": status.get("error"), "wall_s": round(time.perf_counter() - t0, 2),
                "video_bytes": len(video.content) if video is not None else 0}
    finally:
        server.stop()


# -- main ------------------------------------------------------------------------------------------------------
def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    cases = results["cases"]
    verdict: dict[str, Any] = {}
    distilled = cases.get("distilled-720p", {}).get("pixgen")
    if distilled:
        verdict["distilled_720p_wall_s"] = {"measured": distilled["wall_s"],
                                            "target": TARGETS["distilled_720p_wall_s"],
                                            "met": distilled["wall_s"] <= TARGETS["distilled_720p_wall_s"]}
    mfus = [c["pixgen"]["stage1"].get("mfu") for n, c in cases.items() if n.startswith("dev") and "pixgen" in c]
    mfus = [m for m in mfus if m is not None]
    if mfus:
        verdict["dev_denoise_mfu"] = {"measured": min(mfus), "target": TARGETS["dev_denoise_mfu"],
                                      "met": min(mfus) >= TARGETS["dev_denoise_mfu"]}
    ratios = {n: c["ratio"] for n, c in cases.items() if "ratio" in c}
    if ratios:
        verdict["pixgen_at_most_diffusers"] = {"ratios": ratios, "met": all(r <= 1.0 for r in ratios.values())}
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("full", "toy"), default="full")
    parser.add_argument("--version", choices=("2.0", "2.3"), default="2.0", help="full-size architecture")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--quality", default=None, help="override every case's quality (the toy test)")
    parser.add_argument("--timed-steps", type=int, default=3, help="stage-1 steps timed in extrapolated cases")
    parser.add_argument("--no-diffusers", action="store_true", help="skip diffusers' plain calls")
    parser.add_argument("--variants", default="", help="speed,memory: each speed option and memory mode, on "
                                                       "--variant-case, against the plain full-memory run")
    parser.add_argument("--variant-case", default="distilled-720p", choices=tuple(CASES))
    parser.add_argument("--speed-variants", default=",".join(SPEED_VARIANTS),
                        help="the speed variants, baseline first (default: all)")
    parser.add_argument("--smoke", action=argparse.BooleanOptionalAction, default=None,
                        help="toy model through pixgen generate and serve on the device (default: on a GPU)")
    parser.add_argument("--smoke-only", action="store_true", help="only the smoke tests (the first device step)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.profiler over one dev-720p stage-1 step: the top kernels (default: on a GPU)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds this run may take: what would not fit is skipped and recorded as skipped")
    parser.add_argument("--sizes", action="store_true", help="print full-size parameter counts and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()

    if args.sizes:
        print(json.dumps({v: meta_sizes(v) for v in ("2.0", "2.3")}, indent=2))
        return 0

    global BUDGET_S
    if args.budget_s is not None:
        BUDGET_S = args.budget_s
    import torch

    dev = Device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke_only:
        with tempfile.TemporaryDirectory(prefix="pixgen-gpu-smoke-") as tmp:
            results = {"machine": dev.describe(), "smoke": smoke(Path(tmp), str(dev.device))}
        write(results, args.out)
        return 0 if all(v.get("ok") for v in results["smoke"].values()) else 1
    results: dict[str, Any] = {"machine": dev.describe(), "scale": args.scale, "version": args.version,
                               "dtype": "bfloat16", "duration_s": args.duration, "cases": {}}
    try:
        import diffusers

        results["machine"]["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="pixgen-gpu-bench-") as tmp:
        work = Path(tmp)
        measure(args, dev, results, work)  # the full-size weights are freed when it returns
        if args.smoke if args.smoke is not None else dev.cuda:
            import gc

            gc.collect()
            if dev.cuda:
                torch.cuda.empty_cache()
            results["smoke"] = smoke(work, str(dev.device))
    results["targets"] = evaluate(results)
    write(results, args.out)
    failed = [k for k, v in results["cases"].items() if any("error" in x for x in v.values() if isinstance(x, dict))]
    smoke_failed = [k for k, v in results.get("smoke", {}).items() if not v.get("ok")]
    return 1 if failed or smoke_failed else 0


def measure(args, dev: Device, results: dict[str, Any], work: Path) -> None:
    """Build the model, then every case: pixgen, diffusers as documented, diffusers with pixgen's guidance."""
    import torch
    from diffusers import LTX2Pipeline
    from transformers import AutoTokenizer

    from pixgen.engine import resolve_model_dir

    t0 = time.perf_counter()
    if args.scale == "full":
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("tiny") / "tokenizer")
        components, upsampler = full_components(args.version, str(dev.device), torch.bfloat16, tokenizer)
    else:
        components, upsampler = toy_components(str(dev.device), torch.bfloat16)
    base = LTX2Pipeline(**components)
    dev.sync()
    results["build_s"] = round(time.perf_counter() - t0, 1)
    results["weights_gib"] = dev.allocated_gib()

    warm = Case("warmup", "ltx-2.0-distilled", "360p", False, False)  # kernels, allocator, x264: paid once here
    run_one(lambda: run_pixgen(warm, base, upsampler, dev, _with(args, duration=1, quality="360p"), work),
            results, "warmup", "pixgen")
    for name in [n.strip() for n in args.cases.split(",") if n.strip()]:
        case = CASES[name]
        entry = results["cases"].setdefault(name, {"recipe": case.recipe, "quality": args.quality or case.quality})
        if time_left() < 60:
            entry["skipped"] = "out of device time"
            continue
        run_one(lambda: run_pixgen(case, base, upsampler, dev, args, work), results, name, "pixgen")
        if not args.no_diffusers and time_left() > 45:
            run_one(lambda: run_diffusers(case, base, upsampler, dev, args, work, matched=False), results, name,
                    "diffusers")
            if not case.extrapolate:
                run_one(lambda: run_diffusers(case, base, upsampler, dev, args, work, matched=True), results,
                        name, "diffusers_matched")
        ours, theirs = entry.get("pixgen"), entry.get("diffusers")
        if ours and theirs and "error" not in ours and "error" not in theirs:
            key = "extrapolated_wall_s" if case.extrapolate else "wall_s"
            entry["ratio"] = round(ours[key] / theirs[key], 3)
        write(results, args.out)
    if (args.profile if args.profile is not None else dev.cuda) and time_left() > 90:
        run_one(lambda: profile_step(base, upsampler, dev, args, work), results, "profile", "pixgen")
        write(results, args.out)
    for kind in [k.strip() for k in args.variants.split(",") if k.strip()]:  # speed first: memory modes stay
        results[kind] = {}
        run_variants(kind, base, upsampler, dev, args, work, results[kind], lambda: write(results, args.out))
        write(results, args.out)


def profile_step(base, upsampler, dev: Device, args, work: Path) -> dict[str, Any]:
    """A dev-720p job cut to one stage-1 step (four guided passes), then decode and encode, under torch.profiler:
    where its device time goes, by kernel, and the shares of attention and matmuls."""
    from torch.profiler import ProfilerActivity, profile

    case = CASES["dev-720p"]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.cuda else [])
    with profile(activities=activities) as prof:
        run_pixgen(case, base, upsampler, dev, _with(args, timed_steps=1), work, count_flops=False)
    rows = []
    for evt in prof.key_averages():
        device_us = getattr(evt, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(evt, "self_cuda_time_total", 0)
        rows.append((device_us if dev.cuda else evt.self_cpu_time_total, evt.key, evt.count))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows) or 1.0

    def share(*needles):
        return round(sum(r[0] for r in rows if any(n in r[1].lower() for n in needles)) / total, 3)

    return {"clock": "device" if dev.cuda else "cpu", "total_ms": round(total / 1e3, 1),
            "attention_share": share("flash", "attention", "fmha", "sdpa", "cudnn"),
            "matmul_share": share("gemm", "matmul", "addmm", "mm", "cutlass", "nvjet", "linear"),
            "top": [{"name": k[:120], "ms": round(us / 1e3, 2), "calls": n, "share": round(us / total, 3)}
                    for us, k, n in rows[:25]]}


def _with(args, **changes):
    return argparse.Namespace(**{**vars(args), **changes})


def run_one(fn: Callable[[], dict], results: dict, case: str, who: str) -> None:
    """Run one measurement; a failure is recorded with its error and the run goes on to the next one."""
    import traceback

    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001
        value = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        print(f"{case}/{who} failed: {value['error']}", file=sys.stderr)
    if case in ("warmup", "profile"):
        results[case] = value
    else:
        results["cases"][case][who] = value
    print(f"{case}/{who}: {json.dumps(value)[:400]}", file=sys.stderr, flush=True)


def write(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
