"""The benchmarks are not run by the suite (they take minutes to an hour), but each must at least start:
``--help`` imports the script and everything it imports, and shows its options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
LIBRARIES = {"common.py", "ltx2_configs.py"}  # imported by the scripts, not run
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


def test_the_gpu_benchmark_runs_every_case_at_toy_size(tmp_path):
    """The GPU benchmark's own code path (engine over in-memory components, step clocks, FLOP counts, diffusers'
    documented calls, extrapolation, targets) on the toy model on this CPU, so it cannot rot between GPU runs."""
    import json

    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py"), "--scale", "toy", "--duration", "1",
                           "--quality", "360p", "--no-smoke", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["scale"] == "toy" and "error" not in results["warmup"]
    cases = results["cases"]
    assert set(cases) == {"distilled-720p", "dev-720p", "dev-1080p"}
    for name, case in cases.items():
        ours = case["pixgen"]
        assert "error" not in ours and ours["frames"] == 25 and ours["stage1"]["flops_per_step"] > 0, name
        assert ours["two_stage"] is (name != "dev-720p"), name
        assert case["diffusers"]["call"] == "docs" and case["ratio"] > 0, name
        if ours["two_stage"]:
            assert ours["stage2"]["count"] == 3 and {"upsample", "refine"} <= set(ours["stages_s"]), name
        if name.startswith("dev"):  # 3 steps timed of the recipe's 40, the rest extrapolated
            assert ours["stage1"]["count"] == 3 and ours["extrapolated_wall_s"] > ours["wall_s"], name
    assert cases["distilled-720p"]["pixgen"]["stage1"]["count"] == 8
    # 4 batch-1 passes a dev step against 1 distilled step, at the same (stage-1) size; the modality-isolated
    # pass skips the audio/video cross-attention, so a little under 4x
    dev = cases["dev-1080p"]["pixgen"]["stage1"]["flops_per_step"]
    distilled = cases["distilled-720p"]["pixgen"]["stage1"]["flops_per_step"]
    assert 3.5 * distilled < dev <= 4 * distilled
    assert cases["distilled-720p"]["diffusers_matched"]["call"] == "matched"
    assert "pixgen_at_most_diffusers" in results["targets"]


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


def test_the_gpu_benchmark_variants_run_at_toy_size(tmp_path):
    """Memory modes down the ladder and two speed variants (inductor's compile is left to the GPU: minutes on this
    CPU), each compared with the plain run."""
    import json

    out = tmp_path / "variants.json"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py"), "--scale", "toy", "--duration", "1",
                           "--quality", "360p", "--no-smoke", "--cases", "", "--variants", "speed,memory",
                           "--speed-variants", "baseline,taylorseer", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    memory = results["memory"]
    assert list(memory) == ["case", "full", "text-offload", "fp8", "offload", "group-offload"]
    assert memory["text-offload"]["quality"]["identical_frames"] is True
    assert 20 < memory["fp8"]["quality"]["frames_psnr_db"] < 60  # float8 storage: close, not equal
    assert memory["offload"]["quality"] == memory["fp8"]["quality"]  # offloading adds no error of its own
    speed = results["speed"]
    assert speed["taylorseer"]["applied"] == ["taylorseer step cache"] and "speedup" in speed["taylorseer"]
    assert speed["fastest_within_bound"]["psnr_bound_db"] == 30.0


def test_the_fleet_and_webhook_benchmarks_run_small(tmp_path):
    """The claim benchmark drives real ``Worker`` processes with an engine of its own and the webhook benchmark
    a real ``pixgen serve``: a change to the engine protocol or the job API must show here, not at the next
    benchmark run (the claim benchmark's engine once missed ``on_preview`` and every job failed)."""
    import json

    fleet = tmp_path / "fleet.json"
    done = subprocess.run([sys.executable, str(BENCH / "fleet_bench.py"), "--claims", "--jobs", "6",
                           "--backends", "sqlite", "--json", str(fleet)], capture_output=True, text=True,
                          timeout=300, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(fleet.read_text())["claim_throughput"]["sqlite"]
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
