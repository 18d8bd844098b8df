"""The benchmarks are not run by the suite (they take minutes to an hour), but each must at least start:
``--help`` imports the script and everything it imports, and shows its options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
LIBRARIES = {"common.py", "ltx2_configs.py", "gpu_measure.py", "queue_run.py"}  # imported by the scripts, not run
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in LIBRARIES)


def test_every_benchmark_is_listed():
    assert {"engine_bench.py", "service_bench.py", "fleet_bench.py", "decode_rss.py", "run_all.py",
            "gpu_bench.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_starts_and_shows_its_options(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and "--" in done.stdout


def gpu_bench(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    """The plan at its smallest: the toy, 1 s (the fewest frames), 360p 1:1 (the fewest pixels a job has)."""
    import json

    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py"), "--device", "cpu", "--toy", "--duration", "1",
                           "--quality", "360p", "--aspect-ratio", "1:1", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=1200, cwd=BENCH.parent)
    return done, json.loads(out.read_text()) if out.exists() else {}


def test_the_gpu_speed_plan_runs_end_to_end_at_toy_size_on_this_cpu(tmp_path):
    """``bench/gpu_run.sh --plan speed`` is the next GPU session's one call: its whole code path (warm-up, medians,
    per-stage peaks, diffusers matched stage by stage, float8, compile with its first job and a second shape,
    overlap, the queue, the dev step's FLOPs, group offload, the targets) runs here first, with the toy, dynamo's
    eager backend and one timed run a figure (every path a figure takes, its median of one), so it cannot rot
    between GPU runs."""
    done, results = gpu_bench(tmp_path, "--plan", "speed", "--repeats", "1", "--queue-jobs", "1",
                              "--memory-modes", "full,group-offload")
    assert done.returncode == 0, done.stderr[-3000:]
    assert results["errors"] == [] and results["compile_backend"] == "eager"
    speed = results["speed"]
    base = speed["baseline"]
    assert base["runs"] == 1 and len(base["runs_wall_s"]) == 1 and base["frames"] == 25 and base["two_stage"]
    assert base["generation_size"] == "384x384" and speed["aspect_ratio"] == "1:1"
    assert base["first_job_over_warm"] > 0 and base["warmup"].startswith("warm (360p 1 s 1:1)")
    assert {"text", "denoise", "upsample", "refine", "decode", "encode"} <= set(base["stages_s"])
    matched = speed["diffusers_matched"]
    assert matched["call"] == "matched" and matched["runs"] == 1
    assert {"stage1", "upsample", "stage2", "decode", "encode"} <= set(matched["stages_s"])
    assert speed["ratio_matched"] > 0 and "diffusers_docs_call" not in speed  # the docs call only when asked
    fp8 = speed["fp8"]
    assert fp8["applied"] == ["float8 compute in 20 linear layers"] and fp8["quality"]["frames_psnr_db"] > 30
    compiled = speed["compile"]
    assert compiled["compile"]["graphs"] >= 1 and compiled["compile"]["graph_breaks"] == 0
    assert compiled["second_shape"]["shape"] == "360p 9:16"
    assert compiled["second_shape"]["compile_after"] == compiled["compile"]  # 9:16 compiled nothing new
    assert compiled["quality"]["identical_frames"] is True  # eager: the traced ops as they are
    assert speed["compile+fp8"]["quality"] == fp8["quality"]
    assert speed["overlap"]["quality"]["identical_frames"] and speed["overlap"]["quality"]["identical_audio"]
    queue = speed["queue"]
    assert queue["jobs"] == 1 and queue["options"] == speed["fastest_within_bound"]["options"]
    # jobs/h over the serial jobs/h; both shown rounded to 0.1, so the ratio of the shown figures is within 0.001
    assert queue["speedup"] == pytest.approx(queue["jobs_per_hour"] / speed["serial_jobs_per_hour"], abs=1e-3)
    # through the worker loop, one by one and with --overlap-jobs (its Finish on the finishing thread)
    assert queue["one_by_one"]["overlap_jobs"] is False and queue["overlapped"]["overlap_jobs"] is True
    assert {"denoise", "decode", "encode"} <= set(queue["overlapped"]["stage_s"]) and queue["overlap_jobs_ratio"] > 0
    assert speed["dev_720p_step"]["plain"]["stage1"]["flops_per_step"] > 0
    memory = results["memory"]
    assert memory["full"]["same_as"] == "speed/baseline"
    assert memory["group-offload"]["quality"]["frames_psnr_db"] > 20  # float8 storage: close, not equal
    assert {"distilled_720p_warm_wall_s", "first_job_over_warm", "speedup_over_diffusers_matched",
            "pixgen_at_most_diffusers"} <= set(results["targets"])
    assert results["targets"]["pixgen_at_most_diffusers"]["ratios_matched"]["speed"] == speed["ratio_matched"]


def test_the_profile_counts_each_kernel_once_and_no_convolution_or_marker_as_a_matmul():
    sys.path.insert(0, str(BENCH))
    from gpu_measure import classify

    rows = [(500.0, "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_bias_TNT", 10),
            (300.0, "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7", 4),
            (100.0, "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_conv3d", 8),
            (100.0, "triton_poi_fused_add_mul_0", 30), (900.0, "Command Buffer Full", 99)]
    shares = classify(rows)
    assert shares["total_ms"] == 1.0  # the marker is no work
    assert shares["matmul_share"] == 0.5 and shares["attention_share"] == 0.3 and shares["conv_share"] == 0.1
    assert shares["top"][0]["name"].startswith("nvjet")


def test_the_full_size_architectures_have_the_published_parameter_counts():
    import json

    done = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py"), "--sizes"], capture_output=True, text=True,
                          timeout=300, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    sizes = json.loads(done.stdout)
    assert sizes["2.0"] == {"transformer": 18.876, "connectors": 1.431, "vae": 1.222, "audio_vae": 0.053,
                            "text_encoder": 12.187, "vocoder": 0.056, "latent_upsampler": 0.498}
    assert sizes["2.3"]["transformer"] == 18.989 and sizes["2.3"]["connectors"] == 3.172
    assert sizes["2.3"]["vae"] == 0.726 and sizes["2.3"]["vocoder"] == 0.129


def test_the_fleet_and_webhook_benchmarks_run_small(tmp_path):
    """The claim benchmark drives real ``Worker`` processes with an engine of its own and the webhook benchmark
    a real ``pixgen serve``: a change to the engine protocol or the job API must show here, not at the next
    benchmark run (the claim benchmark's engine once missed ``on_preview`` and every job failed)."""
    import json

    fleet = tmp_path / "fleet.json"
    done = subprocess.run([sys.executable, str(BENCH / "fleet_bench.py"), "--claims", "--jobs", "6",
                           "--worker-counts", "2", "--backends", "sqlite", "--json", str(fleet)],
                          capture_output=True, text=True, timeout=300, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(fleet.read_text())["claim_throughput"]["sqlite"]
    assert set(runs) == {"worker", "store"} and all(set(mode) == {"2_workers"} for mode in runs.values())
    assert all(run["jobs"] == 6 and run["jobs_per_s"] > 0 for mode in runs.values() for run in mode.values())

    hooks = tmp_path / "webhooks.json"
    done = subprocess.run([sys.executable, str(BENCH / "webhook_bench.py"), "--jobs", "4", "--batch", "6",
                           "--down", "0.5", "--json", str(hooks)], capture_output=True, text=True, timeout=300,
                          cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(hooks.read_text())
    assert results["latency"]["jobs"] == 4 and results["latency"]["max_s"] < 30
    outage = results["outage"]
    assert outage["distinct_webhook_ids"] == outage["jobs"] and outage["received"] >= outage["jobs"]
    assert results["fair"]["batch_jobs_started_ahead_of_it"] <= 1
