"""``bench/gpu_bench.py --plan full`` at toy size on this CPU (its ``--plan speed`` twin is in
``test_bench_scripts.py``). A module of its own so that pytest-xdist (``--dist loadfile``) runs the two long plans on
two workers at once."""

from __future__ import annotations

from test_bench_scripts import gpu_bench


def test_the_gpu_full_plan_runs_its_cases_options_profile_and_a_failing_option_fails_the_run(tmp_path):
    done, results = gpu_bench(tmp_path, "--plan", "full", "--cases", "distilled-720p,dev-720p", "--repeats", "1",
                              "--options", "taylorseer,attention:sage,bogus", "--memory-modes", "text-offload",
                              "--profile")
    assert done.returncode == 1 and "speed/bogus" in done.stderr  # an option's error fails the run
    assert results["errors"] == ["speed/bogus: ValueError: unknown speed option 'bogus'"]
    for name in ("distilled-720p", "dev-720p"):
        case = results["cases"][name]
        assert case["pixgen"]["frames"] == 25 and case["ratio_matched"] > 0 and case["ratio_docs_call"] > 0, name
        assert case["diffusers_docs_call"]["call"] == "docs" and case["diffusers_matched"]["call"] == "matched"
    dev = results["cases"]["dev-720p"]["pixgen"]
    assert dev["stage1"]["count"] == 3 and dev["extrapolated_wall_s"] > dev["wall_s"]
    speed = results["speed"]
    assert speed["taylorseer"]["applied"] == ["taylorseer step cache"] and "speedup" in speed["taylorseer"]
    assert "needs an NVIDIA GPU" in speed["attention:sage"]["unavailable"]  # a result, not an error
    assert results["memory"]["text-offload"]["quality"]["identical_frames"] is True
    profile = results["profile"]
    assert profile["total_ms"] > 0 and 0 <= profile["matmul_share"] <= 1 and profile["top"]
