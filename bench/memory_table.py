"""Which GPU runs which job in which memory mode: the README's table, computed (or measured, where a GPU run left
numbers in bench/results/gpu.json).

    python bench/memory_table.py [--version 2.0] [--results bench/results/gpu.json]

Computed, not measured: weights per mode from the full-size components built on the ``meta`` device (the same
accounting as ``gpu_bench.py --sizes``), plus activations at ``ACTIVATION_BYTES_PER_TOKEN`` per video token of
the largest transformer call (CFG doubles the batch), plus ``RUNTIME_GIB`` for the CUDA context, cuBLAS workspace
and the decode's tiles. The activation figure is the meta-device live-tensor count of one full-size LTX-2.0
forward with flash-style attention (../shared/notes/gpu-audit.md §3: 4.0 GiB for 720p 5 s at batch 2, 12.9 GiB
for the 1080p 15 s refine at batch 1, i.e. ~146 kB a token either way). Each cell is the first mode, from
``full`` down, whose need fits the card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

GIB = 2**30
ACTIVATION_BYTES_PER_TOKEN = 146_000
RUNTIME_GIB = 1.5
CARDS = {"24 GB (RTX 4090)": 24.0, "32 GB (RTX 5090)": 31.8, "48 GB (L40S, A6000)": 44.5,
         "80 GB (A100, H100)": 79.3, "141 GB (H200)": 139.8}  # GiB usable, from each card's MiB
JOBS = (("720p 5 s", "720p", "16:9", 5), ("720p 15 s", "720p", "16:9", 15), ("1080p 5 s", "1080p", "16:9", 5),
        ("1080p 15 s", "1080p", "16:9", 15), ("21:9 1080p 15 s", "1080p", "21:9", 15))


def activation_tokens(quality: str, ratio: str, duration: int, recipe) -> int:
    """Video tokens × batch of the job's largest transformer call."""
    from pixgen.core.sizes import output_size
    from pixgen.engine.ltx2.geometry import plan_geometry

    width, height = output_size(ratio, quality)
    geometry = plan_geometry(width, height, two_stage=quality in recipe.two_stage_qualities)
    frames = (duration * 24) // 8 + 1

    def tokens(size):
        return frames * (size[0] // 32) * (size[1] // 32)

    batch = 2 if recipe.guidance.uses_negative_prompt else 1
    largest = tokens(geometry.stage_one_size) * batch
    if geometry.two_stage:
        largest = max(largest, tokens(geometry.full_size))  # the refine runs unguided: batch 1
    return largest


def weights(version: str):
    import torch
    from gpu_bench import full_components
    from transformers import AutoTokenizer

    from pixgen.engine import resolve_model_dir
    from pixgen.engine.ltx2.memory import WeightBytes

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("tiny") / "tokenizer")
    parts, upsampler = full_components(version, "meta", torch.bfloat16, tokenizer)
    modules = {k: v for k, v in parts.items() if hasattr(v, "parameters")}
    modules["latent_upsampler"] = upsampler
    return WeightBytes.from_modules(modules)


def table(version: str, recipe_name: str, measured: dict | None) -> str:
    from pixgen.engine.ltx2.memory import MODES
    from pixgen.engine.ltx2.recipes import RECIPES

    recipe = RECIPES[recipe_name]
    w = weights(version)
    lines = [f"| GPU | {' | '.join(label for label, *_ in JOBS)} |", "|---|" + "---|" * len(JOBS)]
    for card, usable in CARDS.items():
        cells = []
        for _, quality, ratio, duration in JOBS:
            need_act = activation_tokens(quality, ratio, duration, recipe) * ACTIVATION_BYTES_PER_TOKEN / GIB
            fit = next((m for m in MODES if w.resident(m) / GIB + need_act + RUNTIME_GIB <= usable), None)
            cells.append(f"{fit} ({w.resident(fit) / GIB + need_act + RUNTIME_GIB:.0f})" if fit else "no")
        lines.append(f"| {card} | {' | '.join(cells)} |")
    note = "computed (meta-device weights + activation estimate)"
    if measured:
        note += "; measured peaks on the GPU: " + ", ".join(f"{m} {v} GiB" for m, v in measured.items())
    return f"LTX-{version}, recipe `{recipe_name}`, bf16; cells: the mode, and its estimated need in GiB — {note}\n\n" \
           + "\n".join(lines)


def measured_peaks(path: Path) -> dict | None:
    if not path.is_file():
        return None
    memory = json.loads(path.read_text()).get("memory", {})
    peaks = {m: v.get("peak_gib") for m, v in memory.items() if isinstance(v, dict) and v.get("peak_gib")}
    return peaks or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", choices=("2.0", "2.3"), default="2.0")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()
    measured = measured_peaks(args.results)
    for recipe in (f"ltx-{args.version}-dev", f"ltx-{args.version}-distilled"):
        print(table(args.version, recipe, measured))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
