"""GPU benchmark: pixgen's real engine on full-size LTX-2 (random weights), like with like against diffusers.

    bash bench/gpu_run.sh --plan speed          # the one prepared device call (≤ 8 min on one H200 or H100)
    python bench/gpu_bench.py --plan full       # every case, speed option and memory mode (longer)
    python bench/gpu_bench.py --plan speed --device cpu --toy --duration 1 --quality 360p   # the dry run (CPU)
                                                           # (tests: also --aspect-ratio 1:1 --repeats 1)
    python bench/gpu_bench.py --sizes           # full-size parameter counts, built on the meta device

Nothing is downloaded: every component is built from its published configuration (``ltx2_configs.py``) with
random weights directly on the device and wrapped in the real engine (``LTX2Engine`` over ``pipelines_from``), as a
loaded folder is. Random weights make noise, at the real cost of every stage.

How it compares like with like:
- The headline ratio is pixgen against diffusers called with the SAME guidance ("matched": pixgen's recipe, one
  pass a distilled step, unguided stage 2). diffusers as its docs write it ("docs": ``guidance_scale`` alone, so
  audio CFG, STG and modality guidance turn on: four passes a step) is shown apart, labelled, when asked.
- Both sides are timed per stage (diffusers: each pipeline call, its decode after the last step, its encode), with
  allocated and reserved memory peaks per stage.
- Every figure is the median of ``--repeats`` (≥ 3) runs, after an untimed run at the same shape (pixgen's through
  its own warm-up, ``engine.warm_up``), so no run pays a first shape's costs; the first job after the warm-up is
  reported against the warm ones (the "first job ≤ 1.1× warm" target).
- An option's error fails the run (exit 1); an option this machine cannot run (a kernel not installed, no float8
  matmuls) is recorded as unavailable, one that would not fit the time budget as skipped.
- The profile counts each device kernel once; "Command Buffer Full" and convolutions are not matmuls.

Plans (``--plan``):
- ``speed``: distilled 720p 5 s with audio: warm-up, baseline, diffusers matched, then float8 compute, compile
  (first job, warm jobs, a second shape, the graphs and recompiles), compile + float8, the decode/encode overlap,
  the fastest set within the quality bound and a queue of ``--queue-jobs`` jobs with it through pixgen's worker
  loop, one by one and with ``--overlap-jobs`` (jobs per hour against the baseline's), the dev 720p stage-1
  step's MFU, then ``--memory-modes`` (each on top of the last).
- ``full``: every case with diffusers matched and docs, the profile, every speed option, every memory mode.
- ``smoke``: the toy model through ``pixgen generate`` and ``pixgen serve`` on the device.
Results go to ``bench/results/gpu.json`` (``--out``), rewritten after each measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_measure import (
    CASES,
    ROOT,
    Device,
    Unavailable,
    classify,
    compare_written,
    full_components,
    job_request,
    make_engine,
    medians,
    meta_sizes,
    profile_rows,
    run_diffusers,
    run_pixgen,
    speed_option,
    toy_components,
)
from queue_run import worker_queue

from pixgen.core.sizes import ASPECT_RATIOS  # src is on the path once gpu_measure is imported

# The targets (issue 17), evaluated on what ran.
TARGETS = {"distilled_720p_warm_wall_s": 5.0, "first_job_over_warm": 1.1, "frames_psnr_db": 30.0,
           "speedup_over_diffusers_matched": 1.5, "dev_720p_mfu": 0.55, "queue_speedup": 1.3}
PSNR_BOUND_DB = TARGETS["frames_psnr_db"]  # an option is "within bound" when its frames stay this close to plain
SPEED_OPTIONS_FULL = ("fp8", "compile", "overlap", "taylorseer", "attention:_native_cudnn", "attention:_native_flash",
                      "attention:_flash_3", "attention:sage", "attention:flash")
STARTED = time.monotonic()
BUDGET_S = float("inf")


def time_left() -> float:
    return BUDGET_S - (time.monotonic() - STARTED)


class Results:
    """The results dict, written to ``path`` after every measurement (a run cut short keeps what it measured),
    with the errors that fail the run."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data
        self.errors: list[str] = []

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def measure(self, where: list[str], fn: Callable[[], Any], *, need_s: float = 0.0) -> Any:
        """``fn()`` stored at ``where`` (a key path); an error recorded there (and failing the run), an unavailable
        option recorded as such, and nothing run when under ``need_s`` seconds remain."""
        slot = self.data
        for key in where[:-1]:
            slot = slot.setdefault(key, {})
        name = "/".join(where)
        if time_left() < need_s:
            slot[where[-1]] = {"skipped": f"out of device time ({time_left():.0f} s left, {need_s:.0f} s needed)"}
            print(f"{name}: skipped", file=sys.stderr, flush=True)
            self.save()
            return None
        try:
            value = fn()
        except Unavailable as exc:
            slot[where[-1]] = {"unavailable": str(exc)[:500]}
            print(f"{name}: unavailable: {exc}", file=sys.stderr, flush=True)
            self.save()
            return None
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on, and fails at the end
            slot[where[-1]] = {"error": f"{type(exc).__name__}: {exc}"[:1000],
                               "traceback": traceback.format_exc()[-3000:]}
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
            self.save()
            return None
        slot[where[-1]] = value
        print(f"{name}: {json.dumps(value, default=str)[:400]}", file=sys.stderr, flush=True)
        self.save()
        return value


# -- the speed plan -------------------------------------------------------------------------------------------------
def repeated(engine: Any, request: Any, dev: Device, work: Path, repeats: int, *, first_untimed: bool = True,
             record: dict | None = None, count_flops: bool = False, extrapolate_to: int | None = None) -> dict:
    """An untimed run at the shape (unless the caller warmed it), then ``repeats`` timed ones: their medians (the
    last one's frames and audio into ``record``)."""
    if first_untimed:
        run_pixgen(engine, request, dev, work)
    runs = [run_pixgen(engine, request, dev, work, record=record if i == repeats - 1 else None,
                       count_flops=count_flops and i == 0, extrapolate_to=extrapolate_to) for i in range(repeats)]
    return medians(runs, dev.peak_tflops())


def with_quality(measured: dict, reference: dict, written: dict) -> dict:
    if reference.get("frames") is not None and written.get("frames") is not None:
        measured["quality"] = compare_written(reference, written)
    return measured


def within_bound(measured: dict | None) -> bool:
    quality = (measured or {}).get("quality") or {}
    return bool(quality.get("identical_frames")) or (quality.get("frames_psnr_db") or 0) >= PSNR_BOUND_DB


SPEED_STEPS = ("baseline", "diffusers", "dev-step", "fp8", "overlap", "compile", "compile+fp8", "queue", "memory")


def plan_speed(args: Any, dev: Device, base: Any, upsampler: Any, work: Path, results: Results) -> None:
    """The one-call plan, in the order of value (what does not fit ``--budget-s`` is skipped, and said so). The
    compiled blocks, once made, stay on for the steps after (compile + float8, the queue, the fast dev step): a
    second compilation would cost as much as the first."""
    from contextlib import ExitStack

    from pixgen.engine.ltx2.compile import compile_report

    steps = {s.strip() for s in args.steps.split(",") if s.strip()}
    unknown = steps - set(SPEED_STEPS)
    if unknown:
        raise SystemExit(f"--steps: {', '.join(sorted(unknown))} not among {', '.join(SPEED_STEPS)}")
    case = CASES[args.case]
    quality = args.quality or case.quality
    out = results.data.setdefault("speed", {"case": case.name, "quality": quality, "aspect_ratio": args.aspect_ratio,
                                            "duration_s": args.duration, "repeats": args.repeats})
    transformer = base.transformer
    request = job_request(args, quality)
    reference: dict[str, Any] = {}  # the baseline's frames and audio, as written

    # 1. The warm-up a worker runs at load, at the measured shape; then the first job and the warm ones.
    def baseline() -> dict:
        from pixgen.engine.ltx2.warmup import warm_up

        engine = make_engine(case, base, upsampler, dev, args, work, quality=quality)
        state = warm_up(engine, f"{quality}/{args.duration}/{args.aspect_ratio}")
        first = run_pixgen(engine, request, dev, work)
        measured = repeated(engine, request, dev, work, args.repeats, first_untimed=False, record=reference)
        measured.update(warmup_s=round(state.seconds, 2), warmup=state.describe(), first_job_wall_s=first["wall_s"],
                        first_job_stages_s=first["stages_s"],
                        first_job_over_warm=round(first["wall_s"] / measured["wall_s"], 3))
        return measured

    base_run = results.measure(["speed", "baseline"], baseline, need_s=60)
    if base_run is None or "wall_s" not in base_run:
        return
    out["serial_jobs_per_hour"] = round(3600 / base_run["wall_s"], 1)  # today: a worker runs jobs one by one

    # 2. diffusers with the same guidance (the headline), warmed at the shape the same way; the docs call apart.
    if "diffusers" in steps:
        def diffusers() -> dict:
            run_diffusers(case, base, upsampler, dev, args, work, quality=quality, matched=True)  # untimed
            return medians([run_diffusers(case, base, upsampler, dev, args, work, quality=quality, matched=True)
                            for _ in range(args.repeats)])

        matched = results.measure(["speed", "diffusers_matched"], diffusers, need_s=(args.repeats + 1) * 20)
        if matched and "wall_s" in matched:
            out["ratio_matched"] = round(base_run["wall_s"] / matched["wall_s"], 3)
        if args.docs_call:
            docs = results.measure(["speed", "diffusers_docs_call"], lambda: run_diffusers(
                case, base, upsampler, dev, args, work, quality=quality, matched=False), need_s=120)
            if docs and "wall_s" in docs:
                out["ratio_docs_call"] = round(base_run["wall_s"] / docs["wall_s"], 3)

    # 3. The dev recipe's stage-1 step (four passes a step), plain: its FLOPs and MFU.
    dev_case = CASES["dev-720p"]
    dev_quality = args.quality or dev_case.quality

    def dev_step(count_flops: bool) -> dict:
        runner = make_engine(dev_case, base, upsampler, dev, args, work, quality=dev_quality)
        return repeated(runner, job_request(args, dev_quality), dev, work, 1, count_flops=count_flops,
                        extrapolate_to=40)

    if "dev-step" in steps:
        results.measure(["speed", "dev_720p_step", "plain"], lambda: dev_step(True), need_s=60)

    # 4. Each option on the state the plan has reached: a first job (its one-off costs: conversion, compilation),
    #    then the warm ones; the frames and audio against the baseline's.
    def measure_now(applied: list[str], *, overlap: bool = False, second_shape: bool = False) -> dict:
        written: dict[str, Any] = {}
        runner = make_engine(case, base, upsampler, dev, args, work, quality=quality, overlap=overlap)
        t0 = time.perf_counter()
        first = run_pixgen(runner, request, dev, work)
        measured = {"applied": applied, "first_job_wall_s": first["wall_s"],
                    "first_job_setup_s": round(time.perf_counter() - t0, 2)}
        measured.update(repeated(runner, request, dev, work, args.repeats, first_untimed=False, record=written))
        report = compile_report(transformer)
        if report is not None:
            measured["compile"] = report
        if second_shape:  # another member of the shape family: nothing new should compile
            ratio = "9:16" if args.aspect_ratio != "9:16" else "16:9"
            other = job_request(args, quality, seed=2, ratio=ratio)
            measured["second_shape"] = {"shape": f"{quality} {ratio}", **run_pixgen(runner, other, dev, work),
                                        "compile_after": compile_report(transformer)}
        measured["speedup"] = round(base_run["wall_s"] / measured["wall_s"], 3)
        return with_quality(measured, reference, written)

    def alone(name: str) -> dict:
        with speed_option(transformer, name, dev, args) as applied:
            return measure_now(applied)

    one_job = base_run["wall_s"]
    if "fp8" in steps:
        results.measure(["speed", "fp8"], lambda: alone("fp8"), need_s=(args.repeats + 1) * one_job + 30)
    if "overlap" in steps:
        results.measure(["speed", "overlap"], lambda: measure_now(["overlap"], overlap=True),
                        need_s=(args.repeats + 1) * one_job + 30)

    compiled, float8 = ExitStack(), ExitStack()  # compiled from here on; float8 on top once measured
    with compiled, float8:
        on: list[str] = []

        def switch(name: str) -> list[str]:
            applied = (float8 if name == "fp8" else compiled).enter_context(
                speed_option(transformer, name, dev, args))
            on.append(name)
            return applied

        if "compile" in steps:
            results.measure(["speed", "compile"], lambda: measure_now(switch("compile"), second_shape=True),
                            need_s=(args.repeats + 2) * one_job + 180)
        if "compile+fp8" in steps and "compile" in on:
            results.measure(["speed", "compile+fp8"], lambda: measure_now(["compile", *switch("fp8")]),
                            need_s=(args.repeats + 1) * one_job + 180)

        # 5. The fastest set within the bound, and a queue of jobs with it (jobs per hour against today's).
        candidates = {"fp8": {"fp8"}, "overlap": {"overlap"}, "compile": {"compile"},
                      "compile+fp8": {"compile", "fp8"}}
        fastest = max((n for n in candidates if within_bound(out.get(n)) and out[n].get("speedup", 0) > 1.0),
                      key=lambda n: out[n]["speedup"], default=None)
        chosen = set(candidates[fastest]) if fastest else set()
        if fastest and (out.get("overlap") or {}).get("speedup", 0) > 1.0:
            chosen.add("overlap")
        out["fastest_within_bound"] = {"options": sorted(chosen), "psnr_bound_db": PSNR_BOUND_DB}
        if "fp8" in on and "fp8" not in chosen:
            float8.close()  # the bfloat16 weights back (compiled graphs for them are still cached)
            on.remove("fp8")

        def queue() -> dict:
            with ExitStack() as extra:
                for name in ("compile", "fp8"):
                    if name in chosen and name not in on:
                        extra.enter_context(speed_option(transformer, name, dev, args))
                runner = make_engine(case, base, upsampler, dev, args, work, quality=quality,
                                     overlap="overlap" in chosen)
                run_pixgen(runner, request, dev, work)  # at the shape with this set (and compiled)
                # pixgen's worker loop, one job after the other, then with --overlap-jobs (the next job's
                # denoising beside the last one's decode and encode)
                requests = [job_request(args, quality, seed=10 + i) for i in range(args.queue_jobs)]
                runs = {name: worker_queue(runner, requests, work / f"queue-{name}",
                                           overlap_jobs=name == "overlapped")
                        for name in ("one_by_one", "overlapped")}
            best = max(runs.values(), key=lambda r: r["jobs_per_hour"])
            return {"options": sorted(chosen), "jobs": args.queue_jobs, **runs,
                    "overlap_jobs_ratio": round(runs["overlapped"]["jobs_per_hour"]
                                                / runs["one_by_one"]["jobs_per_hour"], 3),
                    "overlap_jobs": best["overlap_jobs"], "jobs_per_hour": best["jobs_per_hour"],
                    "speedup": round(best["jobs_per_hour"] / out["serial_jobs_per_hour"], 3)}

        if "queue" in steps:
            results.measure(["speed", "queue"], queue, need_s=(2 * args.queue_jobs + 1) * one_job * 0.8 + 60)

        # 6. The dev step again with the fastest set (its four passes compile their own graphs first).
        if "dev-step" in steps and chosen - {"overlap"} and chosen - {"overlap"} <= set(on):
            plain = (out.get("dev_720p_step") or {}).get("plain") or {}

            def fast_step() -> dict:
                measured = dev_step(False)
                flops = (plain.get("stage1") or {}).get("flops_per_step")  # the same work, whatever the kernels
                peak = dev.peak_tflops()
                if flops and "stage1" in measured:
                    achieved = flops / measured["stage1"]["median_s"] / 1e12
                    measured["stage1"].update(achieved_tflops=round(achieved, 1),
                                              mfu_of_bf16_peak=round(achieved / peak, 3) if peak else None)
                return measured

            results.measure(["speed", "dev_720p_step", "fastest"], fast_step, need_s=150)

    # 7. Memory modes, each on top of the last (they cannot be undone): last.
    if "memory" in steps:
        memory_modes(args, dev, base, upsampler, work, results, case, quality, reference, full=base_run)


def memory_modes(args: Any, dev: Device, base: Any, upsampler: Any, work: Path, results: Results, case: Any,
                 quality: str, reference: dict, full: dict | None = None) -> None:
    """``--memory-modes`` in order, each applied on top of the one before (``apply_memory_mode``'s ladder).
    ``full`` given: the plain run already measured is the ``full`` mode's."""
    from pixgen.engine.ltx2.memory import MODES, apply_memory_mode

    modules = {name: m for name, m in base.components.items() if hasattr(m, "parameters")}
    modules["latent_upsampler"] = upsampler
    wanted = [m.strip() for m in args.memory_modes.split(",") if m.strip()]
    for mode in wanted:
        if mode not in MODES:
            raise SystemExit(f"--memory-modes: {mode!r} is not one of {', '.join(MODES)}")

    def one(mode: str) -> dict:
        apply_memory_mode(modules, mode, dev.device, base.text_encoder.dtype)
        engine = make_engine(case, base, upsampler, dev, args, work, quality=quality, memory=mode)
        written: dict[str, Any] = {}
        repeats = args.repeats if mode not in ("offload", "group-offload") or time_left() > 300 else 1
        measured = repeated(engine, job_request(args, quality), dev, work, repeats, record=written)
        return with_quality(measured, reference, written)

    for mode in wanted:
        if mode == "full" and full is not None:
            results.data.setdefault("memory", {})["full"] = {"same_as": "speed/baseline", "wall_s": full["wall_s"],
                                                             "peaks": full.get("peaks")}
            continue
        results.measure(["memory", mode], lambda mode=mode: one(mode), need_s=90)


# -- the full plan --------------------------------------------------------------------------------------------------
def plan_full(args: Any, dev: Device, base: Any, upsampler: Any, work: Path, results: Results) -> None:
    for name in [n.strip() for n in args.cases.split(",") if n.strip()]:
        full_case(args, dev, base, upsampler, work, results, CASES[name])
    if args.profile:
        results.measure(["profile"], lambda: profile_step(args, dev, base, upsampler, work), need_s=90)
    case = CASES[args.case]
    quality = args.quality or case.quality
    reference: dict[str, Any] = {}
    engine = make_engine(case, base, upsampler, dev, args, work, quality=quality)
    base_run = results.measure(["speed", "baseline"], lambda: repeated(
        engine, job_request(args, quality), dev, work, args.repeats, record=reference), need_s=60)
    for name in [n.strip() for n in args.options.split(",") if n.strip()]:
        def one(name: str = name) -> dict:
            written: dict[str, Any] = {}
            runner = make_engine(case, base, upsampler, dev, args, work, quality=quality, overlap=name == "overlap")
            with speed_option(base.transformer, name, dev, args) as applied:
                measured = {"applied": applied, **repeated(runner, job_request(args, quality), dev, work,
                                                           args.repeats, record=written)}
            if base_run:
                measured["speedup"] = round(base_run["wall_s"] / measured["wall_s"], 3)
            return with_quality(measured, reference, written)
        results.measure(["speed", name], one, need_s=240 if name == "compile" else 60)
    memory_modes(args, dev, base, upsampler, work, results, case, quality, reference)


def full_case(args: Any, dev: Device, base: Any, upsampler: Any, work: Path, results: Results, case: Any) -> None:
    """One case: pixgen, diffusers matched (the ratio), diffusers as its docs call it (apart, labelled)."""
    from pixgen.engine.ltx2.recipes import RECIPES

    quality = args.quality or case.quality
    entry = results.data.setdefault("cases", {}).setdefault(case.name, {"recipe": case.recipe, "quality": quality})
    engine = make_engine(case, base, upsampler, dev, args, work, quality=quality)
    request = job_request(args, quality)
    full = RECIPES[case.recipe].num_inference_steps if case.extrapolate else None
    ours = results.measure(["cases", case.name, "pixgen"], lambda: repeated(
        engine, request, dev, work, args.repeats, count_flops=True, extrapolate_to=full), need_s=60)
    for matched, label in ((True, "diffusers_matched"), (False, "diffusers_docs_call")):
        def call(matched: bool = matched) -> dict:
            run_diffusers(case, base, upsampler, dev, args, work, quality=quality, matched=matched)  # untimed
            return medians([run_diffusers(case, base, upsampler, dev, args, work, quality=quality,
                                          matched=matched) for _ in range(args.repeats if matched else 1)])
        theirs = results.measure(["cases", case.name, label], call, need_s=90)
        key = "extrapolated_wall_s" if case.extrapolate else "wall_s"
        if ours and theirs and key in ours and key in theirs:
            entry["ratio_matched" if matched else "ratio_docs_call"] = round(ours[key] / theirs[key], 3)


def profile_step(args: Any, dev: Device, base: Any, upsampler: Any, work: Path) -> dict[str, Any]:
    """A dev-720p job cut to one stage-1 step (four guided passes), then decode and encode, under torch.profiler:
    where its device time goes, each kernel counted once."""
    from torch.profiler import ProfilerActivity, profile

    case = CASES["dev-720p"]
    one_step = argparse.Namespace(**{**vars(args), "timed_steps": 1})
    engine = make_engine(case, base, upsampler, dev, one_step, work, quality=args.quality or case.quality)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.cuda else [])
    with profile(activities=activities) as prof:
        run_pixgen(engine, job_request(args, args.quality or case.quality), dev, work)
    return {"clock": "device kernels" if dev.cuda else "cpu operators (self time)",
            **classify(profile_rows(prof, dev.cuda))}


# -- smoke tests: the toy on the device through the CLI and the service ---------------------------------------------
def smoke(work: Path, device: str) -> dict[str, Any]:
    import os

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

        def done() -> dict | None:
            status = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
            return status if status["status"] in ("completed", "failed", "cancelled") else None

        status = wait_for(done, timeout=300)
        video = httpx.get(status["output"]["video"], timeout=60) if status["status"] == "completed" else None
        return {"ok": status["status"] == "completed" and video is not None and video.status_code == 200,
                "status": status["status"], "error": status.get("error"), "wall_s": round(time.perf_counter() - t0, 2),
                "video_bytes": len(video.content) if video is not None else 0}
    finally:
        server.stop()


# -- targets --------------------------------------------------------------------------------------------------------
def evaluate(data: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, on what ran: measured, target, met."""
    verdict: dict[str, Any] = {}
    speed = data.get("speed", {})
    baseline = speed.get("baseline") or {}

    def target(name: str, measured: float | None, ok: Callable[[float], bool], **extra: Any) -> None:
        if measured is not None:
            verdict[name] = {"measured": measured, "target": TARGETS.get(name), "met": ok(measured), **extra}

    chosen = (speed.get("fastest_within_bound") or {}).get("options") or []
    fastest = max((v for k, v in speed.items() if k in ("fp8", "overlap", "compile", "compile+fp8")
                   and isinstance(v, dict) and "speedup" in v and within_bound(v)),
                  key=lambda v: v["speedup"], default=baseline)
    if "wall_s" in baseline:
        target("distilled_720p_warm_wall_s", fastest.get("wall_s"),
               lambda m: m <= TARGETS["distilled_720p_warm_wall_s"], options=chosen, baseline_wall_s=baseline["wall_s"])
        target("first_job_over_warm", baseline.get("first_job_over_warm"),
               lambda m: m <= TARGETS["first_job_over_warm"])
    psnrs = [(v.get("quality") or {}).get("frames_psnr_db") for k, v in speed.items()
             if isinstance(v, dict) and k in ("fp8", "compile+fp8")]
    psnrs = [p for p in psnrs if p is not None]
    if psnrs:
        target("frames_psnr_db", min(psnrs), lambda m: m >= TARGETS["frames_psnr_db"])
    ratios = {"speed": speed.get("ratio_matched")} | {n: c.get("ratio_matched")
                                                      for n, c in data.get("cases", {}).items()}
    ratios = {k: v for k, v in ratios.items() if v}
    if ratios:  # equal work: pixgen / diffusers with the same guidance
        worst = max(ratios.values())
        target("speedup_over_diffusers_matched", round(1 / worst, 3),
               lambda m: m >= TARGETS["speedup_over_diffusers_matched"], ratios_matched=ratios)
        verdict["pixgen_at_most_diffusers"] = {"ratios_matched": ratios, "met": worst <= 1.0}
    step = (speed.get("dev_720p_step") or {}).get("plain") or {}
    if (step.get("stage1") or {}).get("mfu") is not None:
        target("dev_720p_mfu", step["stage1"]["mfu"], lambda m: m >= TARGETS["dev_720p_mfu"])
    queue = speed.get("queue") or {}
    if queue.get("speedup"):  # against today's serial jobs per hour (a worker runs one job after another)
        target("queue_speedup", queue["speedup"], lambda m: m >= TARGETS["queue_speedup"])
    return verdict


# -- main -----------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", choices=("speed", "full", "smoke"), default="speed")
    parser.add_argument("--toy", action="store_true", help="the toy model instead of full-size LTX-2 (the dry run)")
    parser.add_argument("--scale", choices=("full", "toy"), default=None, help="the same as --toy (older name)")
    parser.add_argument("--version", choices=("2.0", "2.3"), default="2.0", help="full-size architecture")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--case", default="distilled-720p", choices=tuple(CASES), help="the speed plan's case")
    parser.add_argument("--cases", default=",".join(CASES), help="the full plan's cases")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--quality", default=None, help="override every case's quality (the dry run)")
    parser.add_argument("--aspect-ratio", default="16:9", choices=ASPECT_RATIOS,
                        help="every job's ratio (default 16:9; the dry run: 1:1, the fewest pixels a quality has)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the median is reported)")
    parser.add_argument("--timed-steps", type=int, default=3, help="stage-1 steps timed in extrapolated cases")
    parser.add_argument("--queue-jobs", type=int, default=10, help="jobs in the queue measured for jobs per hour")
    parser.add_argument("--memory-modes", default="full,group-offload",
                        help="memory modes measured, each on top of the last (default full,group-offload)")
    parser.add_argument("--docs-call", action="store_true", help="also diffusers as its docs call it (speed plan)")
    parser.add_argument("--steps", default=",".join(SPEED_STEPS),
                        help=f"the speed plan's steps, in its order (default all: {','.join(SPEED_STEPS)}); the "
                             "baseline always runs")
    parser.add_argument("--options", default=",".join(SPEED_OPTIONS_FULL),
                        help="the full plan's speed options, each alone (default: all)")
    parser.add_argument("--compile-backend", default=None, help="default inductor on a GPU, eager on a CPU")
    parser.add_argument("--smoke", action=argparse.BooleanOptionalAction, default=False,
                        help="also the toy through pixgen generate and serve on the device (default off)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="the full plan's kernel profile (default: on a GPU)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds this run may take: what would not fit is skipped and recorded as skipped")
    parser.add_argument("--sizes", action="store_true", help="print full-size parameter counts and exit")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()
    args.toy = args.toy or args.scale == "toy"
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    if args.sizes:
        print(json.dumps({v: meta_sizes(v) for v in ("2.0", "2.3")}, indent=2))
        return 0
    global BUDGET_S
    if args.budget_s is not None:
        BUDGET_S = args.budget_s
    import torch

    dev = Device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.compile_backend = args.compile_backend or ("inductor" if dev.cuda else "eager")
    if args.profile is None:
        args.profile = dev.cuda
    results = Results(args.out, {"machine": dev.describe(), "plan": args.plan, "scale": "toy" if args.toy else "full",
                                 "version": args.version, "dtype": "bfloat16", "duration_s": args.duration,
                                 "repeats": args.repeats, "compile_backend": args.compile_backend})
    with tempfile.TemporaryDirectory(prefix="pixgen-gpu-bench-") as tmp:
        work = Path(tmp)
        if args.plan != "smoke":
            build(args, dev, results, work)
        if args.smoke or args.plan == "smoke":
            import gc

            gc.collect()
            if dev.cuda:
                torch.cuda.empty_cache()
            results.data["smoke"] = smoke(work, str(dev.device))
            results.errors += [f"smoke {k}" for k, v in results.data["smoke"].items() if not v.get("ok")]
    results.data["clocks_end"] = dev.clocks()
    results.data["targets"] = evaluate(results.data)
    results.data["errors"] = results.errors
    results.data["wall_s"] = round(time.monotonic() - STARTED, 1)
    results.save()
    if results.errors:
        print("errors:\n  " + "\n  ".join(results.errors), file=sys.stderr)
    return 1 if results.errors else 0


def build(args: Any, dev: Device, results: Results, work: Path) -> None:
    """Build the model, then run the plan (the weights are freed when it returns)."""
    import torch
    from diffusers import LTX2Pipeline
    from transformers import AutoTokenizer

    from pixgen.engine import resolve_model_dir

    t0 = time.perf_counter()
    if args.toy:
        components, upsampler = toy_components(str(dev.device), torch.bfloat16)
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("tiny") / "tokenizer")
        components, upsampler = full_components(args.version, str(dev.device), torch.bfloat16, tokenizer)
    base = LTX2Pipeline(**components)
    dev.sync()
    import diffusers

    results.data["machine"]["diffusers"] = diffusers.__version__
    results.data["build_s"] = round(time.perf_counter() - t0, 1)
    results.data["weights_gib"] = dev.allocated_gib()
    results.data["clocks_start"] = dev.clocks()
    results.save()
    (plan_speed if args.plan == "speed" else plan_full)(args, dev, base, upsampler, work, results)


if __name__ == "__main__":
    sys.exit(main())
