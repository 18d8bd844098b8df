"""What ``gpu_bench.py`` measures with: the model built from published configs, the device's clocks and memory, one
pixgen job and one diffusers job with per-stage times and per-stage memory peaks, the speed options switched on and
off on one set of weights, the kernel profile. Imported by ``gpu_bench.py``; not a script."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = ("A red kite climbs over a windy beach at sunset while waves crash on the sand and gulls cry overhead; "
          "the camera follows it upward in one smooth handheld move.")
NEGATIVE = "blurry, distortion, low quality, grainy, warped faces, deformed hands, extra limbs, watermark"
# Dense bf16 tensor-core peaks (no sparsity), for MFU; other devices report achieved TFLOP/s only. FP8 doubles them.
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "RTX 4090": 165.2}
GIB = 2**30


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
def default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def full_components(version: str, device: str, dtype: Any, tokenizer: Any) -> tuple[dict, Any]:
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


def toy_components(device: str, dtype: Any) -> tuple[dict, Any]:
    """The toy model's components, loaded as pixgen loads any folder (the CPU dry run of the benchmark)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from pixgen.engine import resolve_model_dir
    from pixgen.engine.ltx2.loading import load_pipelines, resolve_device

    pipes = load_pipelines(resolve_model_dir("tiny"), device=resolve_device(device), dtype=dtype)
    base = dict(pipes.text.components)
    base["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(pipes.scheduler_config)
    assert pipes.upsample is not None
    return base, pipes.upsample.latent_upsampler


@contextlib.contextmanager
def unfilled() -> Iterator[None]:
    """Random fills (``uniform_``, ``normal_``: what every initialiser ends in) as no-ops, for a model built on the
    meta device, which holds no values to fill: there each fill still runs its decomposition in Python, most of the
    build's time."""
    import torch

    fills = {name: getattr(torch.Tensor, name) for name in ("uniform_", "normal_")}
    for name in fills:
        setattr(torch.Tensor, name, lambda self, *args, **kwargs: self)
    try:
        yield
    finally:
        for name, fill in fills.items():
            setattr(torch.Tensor, name, fill)


def meta_sizes(version: str) -> dict[str, float]:
    """Billions of parameters per full-size component, built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoTokenizer

    from pixgen.engine import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("tiny") / "tokenizer")
    with unfilled():
        parts, upsampler = full_components(version, "meta", torch.bfloat16, tokenizer)
    sizes = {name: sum(p.numel() for p in m.parameters()) / 1e9 for name, m in parts.items()
             if hasattr(m, "parameters")}
    sizes["latent_upsampler"] = sum(p.numel() for p in upsampler.parameters()) / 1e9
    return {k: round(v, 3) for k, v in sizes.items()}


# -- the device --------------------------------------------------------------------------------------------------
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

    def peaks(self) -> dict[str, float] | None:
        """Allocated and reserved (the caching allocator's blocks: what the card really holds) since the reset."""
        if not self.cuda:
            return None
        return {"allocated_gib": round(self.torch.cuda.max_memory_allocated(self.device) / GIB, 2),
                "reserved_gib": round(self.torch.cuda.max_memory_reserved(self.device) / GIB, 2)}

    def allocated_gib(self) -> float | None:
        return round(self.torch.cuda.memory_allocated(self.device) / GIB, 2) if self.cuda else None

    def free_gib(self) -> float | None:
        return round(self.torch.cuda.mem_get_info(self.device)[0] / GIB, 2) if self.cuda else None

    def describe(self) -> dict[str, Any]:
        out = {"device": str(self.device), "torch": self.torch.__version__, "python": platform.python_version()}
        if self.cuda:
            props = self.torch.cuda.get_device_properties(self.device)
            out.update(name=props.name, memory_gib=round(props.total_memory / GIB, 1), cuda=self.torch.version.cuda,
                       capability=".".join(map(str, self.torch.cuda.get_device_capability(self.device))))
        return out

    def peak_tflops(self) -> float | None:
        if not self.cuda:
            return None
        name = self.torch.cuda.get_device_name(self.device)
        return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)

    def clocks(self) -> dict[str, Any]:
        """SM clock, power and temperature now (nvidia-smi), to read a run's numbers against."""
        import subprocess

        if not self.cuda:
            return {}
        try:
            line = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm,power.draw,temperature.gpu,"
                                   "memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                  timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return {}
        keys = ("sm_mhz", "sm_max_mhz", "power_w", "temperature_c", "memory_used_mib")
        return dict(zip(keys, (v.strip() for v in line.split(",")), strict=False))


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
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


class StagePeaks:
    """Allocated and reserved peaks per stage of one job: the peak counters are read and reset at each stage
    the engine reports (``text``, stage 1's and stage 2's denoising, ``upsample``, ``decode``, ``encode``…)."""

    def __init__(self, dev: Device, stage_one_steps: int):
        self.dev, self.stage_one_steps = dev, stage_one_steps
        self.current: str | None = None
        self.by_stage: dict[str, dict[str, float]] = {}

    def on_progress(self, stage: str, step: int) -> None:
        name = ("stage1" if step <= self.stage_one_steps else "stage2") if stage == "denoise" else stage
        if name != self.current:
            self.close()
            self.current = name

    def close(self) -> None:
        peaks = self.dev.peaks()
        if self.current is not None and peaks is not None:
            held = self.by_stage.setdefault(self.current, {"allocated_gib": 0.0, "reserved_gib": 0.0})
            for key, value in peaks.items():
                held[key] = max(held[key], value)
        self.dev.reset_peak()


class TransformerCalls:
    """Keeps the arguments of every transformer call in the first step of each stage, to count their FLOPs."""

    def __init__(self, transformer: Any):
        self.transformer = transformer
        self.stage: str | None = None
        self.by_stage: dict[str, list[dict]] = {}
        self.step_of_stage: dict[str, int] = {}
        self.handle = transformer.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: Any, kwargs: dict) -> None:
        if self.stage is not None and self.step_of_stage.get(self.stage, 0) == 0:
            self.by_stage.setdefault(self.stage, []).append(dict(kwargs))

    def flops_per_step(self, stage: str) -> float | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        calls = self.by_stage.get(stage)
        if not calls:
            return None
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            for kwargs in calls:
                self.transformer(**kwargs)
        return float(counter.get_total_flops())

    def close(self) -> None:
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


# -- one pixgen job ----------------------------------------------------------------------------------------------
def case_folder(root: Path, case: Case, quality: str, *, steps: int | None, toy: bool) -> Path:
    """A folder holding only ``pixgen.json``: the case's recipe (the weights come from memory)."""
    folder = root / f"{case.name}-{quality}-{steps}"
    folder.mkdir(parents=True, exist_ok=True)
    sampling: dict[str, Any] = {"two_stage_qualities": ["540p", "720p", "1080p", quality] if case.two_stage else []}
    if steps is not None:
        sampling["num_inference_steps"] = steps
    if toy:
        sampling["max_sequence_length"] = 64  # the toy's connectors are small
    (folder / "pixgen.json").write_text(json.dumps({"recipe": case.recipe, "sampling": sampling}))
    return folder


def make_engine(case: Case, base: Any, upsampler: Any, dev: Device, args: Any, work: Path, *, quality: str,
                memory: str = "full", overlap: bool = False) -> Any:
    """pixgen's engine over the in-memory weights, as ``LTX2Engine.load`` builds it over a folder's."""
    from pixgen.engine.base import EngineOptions
    from pixgen.engine.ltx2.engine import LTX2Engine
    from pixgen.engine.ltx2.loading import pipelines_from
    from pixgen.engine.ltx2.recipes import detect

    steps = args.timed_steps if case.extrapolate else None
    folder = case_folder(work, case, quality, steps=steps, toy=args.toy)
    engine = LTX2Engine(folder, pipelines_from(base, upsampler), detect(folder), dev.device, memory=memory)
    engine.options = EngineOptions(overlap=overlap)
    return engine


def job_request(args: Any, quality: str, seed: int = 1, ratio: str | None = None) -> Any:
    """The plan's job: ``args.aspect_ratio`` (``--aspect-ratio``) unless another ``ratio`` is asked for."""
    from pixgen.core.spec import parse_request

    return parse_request({"prompt": PROMPT, "negative_prompt": NEGATIVE, "duration": args.duration,
                          "quality": quality, "aspect_ratio": ratio or args.aspect_ratio, "seed": seed,
                          "thinking_type": "disabled"})


@contextlib.contextmanager
def recording(into: dict[str, Any] | None, file_name: str) -> Iterator[None]:
    """What the job hands the MP4 writer of ``file_name`` (its uint8 frames, its float waveform), kept in ``into``
    on the way through: the quality figures compare these, not the decoded MP4s (whose codec noise is no property
    of the model: ``pixgen.media.quality``)."""
    if into is None:
        yield
        return
    import numpy as np

    from pixgen.media.mp4 import Mp4Writer

    write_frames, write_audio = Mp4Writer.write_frames, Mp4Writer.write_audio
    frames: list[Any] = []

    def keep_frames(self: Any, chunk: Any) -> None:
        if self.path.name == file_name:
            frames.append(chunk.copy())
        write_frames(self, chunk)

    def keep_audio(self: Any, samples: Any) -> None:
        if self.path.name == file_name:
            into["audio"] = np.array(samples, dtype=np.float32)
        write_audio(self, samples)

    Mp4Writer.write_frames, Mp4Writer.write_audio = keep_frames, keep_audio  # type: ignore[method-assign]
    try:
        yield
    finally:
        Mp4Writer.write_frames, Mp4Writer.write_audio = write_frames, write_audio  # type: ignore[method-assign]
        into["frames"] = np.concatenate(frames) if frames else None


def compare_written(reference: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    from pixgen.media.quality import closeness

    return closeness(reference["frames"], candidate["frames"], reference.get("audio"),
                     candidate.get("audio")).as_dict()


def run_pixgen(engine: Any, request: Any, dev: Device, work: Path, *, record: dict[str, Any] | None = None,
               count_flops: bool = False, extrapolate_to: int | None = None) -> dict[str, Any]:
    """One job: wall, per-stage times and memory peaks, per-step times (and FLOPs: MFU); with ``record``, what it
    wrote (``recording``)."""
    calls = TransformerCalls(engine.pipes.text.transformer) if count_flops else None
    stage_one_steps = engine.recipe.num_inference_steps
    clocks = {"stage1": StepClock(dev), "stage2": StepClock(dev)}
    peaks = StagePeaks(dev, stage_one_steps)

    def on_progress(p: Any) -> None:
        peaks.on_progress(p.stage, p.step)
        if p.stage == "denoise":
            clock = clocks["stage1"] if p.step <= stage_one_steps else clocks["stage2"]
            clock.step()
            if calls is not None and calls.stage is not None:
                calls.step_of_stage[calls.stage] = calls.step_of_stage.get(calls.stage, 0) + 1
            if p.step == stage_one_steps:
                if calls is not None:
                    calls.stage = "stage2"
                clocks["stage2"].start()

    if calls is not None:
        calls.stage = "stage1"
    out_path = work / "job.mp4"
    dev.sync()
    dev.reset_peak()
    clocks["stage1"].start()
    with recording(record, out_path.name):
        t0 = time.perf_counter()
        result = engine.generate(request, out_path, on_progress=on_progress)
        dev.sync()
        wall = time.perf_counter() - t0
    peaks.close()
    out: dict[str, Any] = {"wall_s": round(wall, 3), "stages_s": result.timings.as_dict(),
                           "peaks": peaks.by_stage or None,
                           "generation_size": "{}x{}".format(*result.generation_size), "frames": result.num_frames,
                           "recipe": result.recipe, "two_stage": result.two_stage}
    peak = dev.peak_tflops()
    for stage, clock in clocks.items():
        summary = summarise_steps(clock.durations())
        if summary["count"]:
            if calls is not None:  # off for most runs: a counting re-run would meet caches and compiled code
                summary.update(mfu(calls.flops_per_step(stage), summary.get("median_s"), peak))
            out[stage] = summary
    if calls is not None:
        calls.stage = None
        calls.close()
    if extrapolate_to:
        out["timed_stage1_steps"] = stage_one_steps
        out["extrapolated_wall_s"] = round(wall + (extrapolate_to - stage_one_steps) * out["stage1"]["median_s"], 2)
    out_path.unlink(missing_ok=True)
    return out


def medians(runs: list[dict[str, Any]], peak_tflops: float | None = None) -> dict[str, Any]:
    """The median of each figure over ``runs`` (≥ 3 in a plan), the per-run walls, and the highest peaks."""
    out = dict(runs[-1])
    out["runs"] = len(runs)
    out["wall_s"] = round(statistics.median(r["wall_s"] for r in runs), 3)
    out["runs_wall_s"] = [r["wall_s"] for r in runs]
    stages = {s for r in runs for s in r.get("stages_s", {})}
    out["stages_s"] = {s: round(statistics.median(r["stages_s"].get(s, 0.0) for r in runs), 3) for s in sorted(stages)}
    if "extrapolated_wall_s" in runs[0]:
        out["extrapolated_wall_s"] = round(statistics.median(r["extrapolated_wall_s"] for r in runs), 2)
    for stage in ("stage1", "stage2"):
        if all(stage in r for r in runs):
            out[stage] = {**runs[-1][stage], "median_s": round(statistics.median(r[stage]["median_s"] for r in runs),
                                                               4)}
            flops = next((r[stage].get("flops_per_step") for r in runs if r[stage].get("flops_per_step")), None)
            out[stage].update(mfu(flops, out[stage]["median_s"], peak_tflops))
    peaks: dict[str, dict[str, float]] = {}
    for r in runs:
        for stage, values in (r.get("peaks") or {}).items():
            held = peaks.setdefault(stage, {"allocated_gib": 0.0, "reserved_gib": 0.0})
            for key, value in values.items():
                held[key] = max(held[key], value)
    out["peaks"] = peaks or None
    return out


# -- one diffusers job ---------------------------------------------------------------------------------------------
def run_diffusers(case: Case, base: Any, upsampler: Any, dev: Device, args: Any, work: Path, *, quality: str,
                  matched: bool) -> dict[str, Any]:
    """The job through diffusers' own calls, each stage timed: ``matched`` with pixgen's guidance (equal
    denoising work: the headline), else as diffusers' docs write it (guidance_scale alone, so its defaults turn
    on audio CFG, STG and modality guidance: four passes a step; shown apart, labelled).

    Stages: ``stage1`` (a pipeline call: its prompt encoding and its steps), ``upsample``, ``stage2``, ``decode``
    (the last call's work after its last step: the VAE with tiling as the docs advise, the audio VAE, the vocoder,
    the float32 postprocess) and ``encode`` (``diffusers.utils.encode_video``)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, LTX2LatentUpsamplePipeline, LTX2Pipeline
    from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES
    from diffusers.utils import encode_video

    from pixgen.core.sizes import output_size
    from pixgen.engine.ltx2.geometry import plan_geometry
    from pixgen.engine.ltx2.recipes import RECIPES, UNGUIDED

    recipe = RECIPES[case.recipe]
    distilled = recipe.sigmas is not None
    width, height = output_size(args.aspect_ratio, quality)
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
    guidance: dict[str, Any] = {**recipe.guidance.pipeline_kwargs()} if matched else \
        {"guidance_scale": recipe.guidance.guidance_scale}
    sequence = {"max_sequence_length": 64} if args.toy else {}  # the toy's connectors are small
    clock = StepClock(dev)
    peaks = StagePeaks(dev, 10**9)

    after_steps: dict[str, Any] = {}  # the stage the current call's work after its last step belongs to

    def on_step(p: Any, i: int, t: Any, kwargs: dict) -> dict:
        clock.step()
        if after_steps and i + 1 == after_steps["steps"]:
            peaks.on_progress(after_steps["stage"], 0)  # the decode's memory apart from the steps'
        return {}

    stages: dict[str, float] = {}

    def call(stage: str, fn: Callable[[], Any], *, steps: int = 0, last_stage: str | None = None) -> Any:
        """A pipeline call timed as ``stage`` up to its last step, the rest as ``last_stage`` (its decode)."""
        peaks.on_progress(stage, 0)
        after_steps.clear()
        if last_stage is not None:
            after_steps.update(stage=last_stage, steps=steps)
        clock.start()
        start = clock.marks[0]
        result = fn()
        dev.sync()
        end = time.perf_counter()
        last_step = clock.marks[-1] if len(clock.marks) > 1 else end
        stages[stage] = stages.get(stage, 0.0) + last_step - start
        if last_stage is None:
            stages[stage] += end - last_step
        else:
            stages[last_stage] = end - last_step
        return result

    # diffusers loads the vocoder in the pipeline's dtype, the transformer's (pixgen: float32). A copy: casting the
    # shared one to bfloat16 and back would round pixgen's vocoder weights for every later run.
    pipe.vocoder = copy.deepcopy(pipe.vocoder)
    quiet_cast(pipe.vocoder, pipe.transformer.dtype)
    pipe.vae.enable_tiling()  # the docs' advice against running out of memory in the decode
    dev.sync()
    dev.reset_peak()
    t0 = time.perf_counter()
    step_times: list[float] = []
    try:
        w1, h1 = geometry.stage_one_size
        first = dict(prompt=PROMPT, negative_prompt=NEGATIVE, width=w1, height=h1, num_frames=num_frames,
                     frame_rate=24.0, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1),
                     callback_on_step_end=on_step, return_dict=False, **guidance, **sequence)
        if distilled:
            first["sigmas"] = DISTILLED_SIGMA_VALUES
        if not case.two_stage:
            video, audio = call("stage1", lambda: pipe(output_type="np", **first), steps=steps, last_stage="decode")
            step_times = clock.durations()
        else:
            latents, audio_latents = call("stage1", lambda: pipe(output_type="latent", **first))
            step_times = clock.durations()
            up = LTX2LatentUpsamplePipeline(vae=pipe.vae, latent_upsampler=upsampler)
            upscaled = call("upsample", lambda: up(latents=latents, output_type="latent", return_dict=False)[0])
            pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                scheduler_config, use_dynamic_shifting=False, shift_terminal=None)
            second = {**UNGUIDED.pipeline_kwargs()} if matched else {"guidance_scale": 1.0}
            video, audio = call("stage2", lambda: pipe(
                latents=upscaled, audio_latents=audio_latents, prompt=PROMPT, negative_prompt=NEGATIVE,
                num_inference_steps=3, noise_scale=STAGE_2_DISTILLED_SIGMA_VALUES[0],
                sigmas=STAGE_2_DISTILLED_SIGMA_VALUES, generator=torch.Generator("cpu").manual_seed(2),
                output_type="np", return_dict=False, callback_on_step_end=on_step, **second, **sequence),
                steps=3, last_stage="decode")
        peaks.on_progress("encode", 0)
        t_encode = time.perf_counter()
        with contextlib.redirect_stderr(open(os.devnull, "w")):  # its tqdm bar
            encode_video(video[0], fps=24, audio=audio[0].float().cpu(),
                         audio_sample_rate=pipe.vocoder.config.output_sampling_rate,
                         output_path=str(work / f"{case.name}-diffusers.mp4"))
        dev.sync()
        stages["encode"] = time.perf_counter() - t_encode
        wall = time.perf_counter() - t0
        peaks.close()
    finally:
        pipe.vae.disable_tiling()
    out: dict[str, Any] = {"wall_s": round(wall, 3), "call": "matched" if matched else "docs",
                           "stages_s": {k: round(v, 3) for k, v in stages.items()}, "peaks": peaks.by_stage or None,
                           "stage1": summarise_steps(step_times)}
    if case.extrapolate:
        out["extrapolated_wall_s"] = round(wall + (recipe.num_inference_steps - steps)
                                           * out["stage1"]["median_s"], 2)
    (work / f"{case.name}-diffusers.mp4").unlink(missing_ok=True)
    return out


def quiet_cast(module: Any, dtype: Any) -> None:
    """``module.to(dtype)`` without diffusers' warning that casting with ``to()`` skips keep-in-float32 modules
    (the vocoder has none)."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        module.to(dtype)
    finally:
        logging.set_verbosity(level)


# -- the speed options, on and off on one set of weights ------------------------------------------------------------
class Unavailable(Exception):
    """The option cannot run on this machine (a kernel not installed, a device without float8 matmuls): a result,
    not a failure of the run."""


@contextlib.contextmanager
def speed_option(transformer: Any, name: str, dev: Device, args: Any) -> Iterator[list[str]]:
    """One option on ``transformer`` (whose weights are placed without hooks) for the block, then off again:
    ``fp8`` (float8 compute), ``compile``, ``taylorseer``, ``attention:<backend>``; ``overlap`` is the engine's."""
    from pixgen.engine.ltx2.compile import compile_transformer, uncompile
    from pixgen.engine.ltx2.speed import MASK_FREE_ATTENTIONS, set_mask_free_attention_backend, step_cache_config
    from pixgen.errors import ModelError

    kind, _, value = name.partition(":")
    if kind in ("baseline", "overlap"):
        yield []
    elif kind == "fp8":
        with float8_compute(transformer, dev) as count:
            yield [f"float8 compute in {count} linear layers"]
    elif kind == "compile":
        compile_transformer(transformer, backend=args.compile_backend)
        try:
            yield [f"torch.compile ({args.compile_backend}) of the repeated blocks"]
        finally:
            uncompile(transformer)
    elif kind == "taylorseer":
        transformer.enable_cache(step_cache_config("taylorseer"))
        try:
            yield ["taylorseer step cache"]
        finally:
            transformer.disable_cache()
    elif kind == "attention":
        try:
            count = set_mask_free_attention_backend(transformer, value, dev.device)
        except ModelError as exc:
            raise Unavailable(exc.message) from exc
        try:
            yield [f"{value} attention on {count} mask-free attention modules"]
        finally:
            for block in transformer.transformer_blocks:
                for attr in MASK_FREE_ATTENTIONS:
                    getattr(block, attr).processor._attention_backend = None
    else:
        raise ValueError(f"unknown speed option {name!r}")


@contextlib.contextmanager
def float8_compute(transformer: Any, dev: Device) -> Iterator[int]:
    """``fp8.compute_in_float8``'s layers on the blocks, undone after. The bfloat16 weights are kept to put back:
    in host memory, layer by layer as each is quantised, when the card has no room for both (an H100 holding the
    whole bfloat16 model)."""
    import torch

    from pixgen.engine.ltx2.fp8 import computes_in_float8, fp8_kernel_for, to_fp8_linear
    from pixgen.errors import ModelError

    try:
        kernel = fp8_kernel_for(dev.device)
    except ModelError as exc:
        raise Unavailable(exc.message) from exc
    layers = [(name, m) for name, m in transformer.named_modules() if computes_in_float8(name, m)]
    need = sum(m.weight.numel() for _, m in layers) / GIB  # one byte each in float8
    free = dev.free_gib()
    stash = free is not None and free < need + 16  # 16 GiB: the activations of the benchmark's jobs
    originals = {}
    for name, module in layers:
        weight, bias = module.weight, module.bias
        to_fp8_linear(module, kernel=kernel, compute_dtype=torch.bfloat16)
        if stash:
            weight.data = weight.data.to("cpu")
        originals[name] = (weight, bias)
    try:
        yield len(layers)
    finally:
        for name, (weight, bias) in originals.items():
            module = transformer.get_submodule(name)
            del module.weight_fp8, module.stored_bias, module.weight_scale
            module.__class__ = torch.nn.Linear
            if stash:
                weight.data = weight.data.to(dev.device)
            module.register_parameter("weight", weight)
            module.register_parameter("bias", bias)


# -- the kernel profile --------------------------------------------------------------------------------------------
MATMUL = re.compile(r"gemm|nvjet|cublas|scaled_mm|wgmma|\bmm\b|addmm|matmul|linear", re.IGNORECASE)
CONV = re.compile(r"conv|implicit_gemm|winograd", re.IGNORECASE)
ATTENTION = re.compile(r"flash|fmha|sdpa|attention|attn", re.IGNORECASE)
NOT_KERNELS = ("Command Buffer Full",)  # a CUDA runtime marker, not work


def classify(rows: list[tuple[float, str, int]]) -> dict[str, Any]:
    """``rows`` of (device µs, kernel name, calls), each kernel once: shares of attention, matmuls (not convs) and
    convolutions, and the top 25."""
    rows = sorted((r for r in rows if r[1] not in NOT_KERNELS), reverse=True)
    total = sum(r[0] for r in rows) or 1.0

    def share(test: Callable[[str], bool]) -> float:
        return round(sum(r[0] for r in rows if test(r[1])) / total, 3)

    return {"total_ms": round(total / 1e3, 1),
            "attention_share": share(lambda n: bool(ATTENTION.search(n)) and not CONV.search(n)),
            "matmul_share": share(lambda n: bool(MATMUL.search(n)) and not CONV.search(n)
                                  and not ATTENTION.search(n)),
            "conv_share": share(lambda n: bool(CONV.search(n))),
            "top": [{"name": name[:120], "ms": round(us / 1e3, 2), "calls": calls, "share": round(us / total, 3)}
                    for us, name, calls in rows[:25]]}


def profile_rows(prof: Any, cuda: bool) -> list[tuple[float, str, int]]:
    """Device kernels only on a GPU (an operator's row also carries its kernels' time: counting both doubled
    every kernel); on a CPU each operator's self time."""
    from torch.autograd import DeviceType

    rows = []
    for evt in prof.key_averages():
        if cuda:
            if evt.device_type != DeviceType.CUDA:
                continue
            us = getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0)
        else:
            us = evt.self_cpu_time_total
        if us:
            rows.append((float(us), evt.key, int(evt.count)))
    return rows
