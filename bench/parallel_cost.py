"""What one job over 2, 4 or 8 GPUs should gain: a computed cost model, not a measurement.

    .venv/bin/python bench/parallel_cost.py [--gpus 2 4 8] [--markdown] [--check] [--json OUT]

No multi-GPU machine has been lent to this project (the one lent so far had one GPU), so the speed-ups of
``pixgen.engine.ltx2.parallel`` are computed here, per denoising step, from:

- **FLOPs per rank**: the transformer blocks' matmuls and attention, counted from LTX-2.0's published shapes
  (``ltx2_configs.TRANSFORMER["2.0"]``: 48 blocks, video 32x128, audio 32x64, text 1024 tokens), split the way the
  code splits them (``pixgen.engine.parallel_plan``: the layout ``G x S``, the padding, the exchange): video
  tokens over the ``S`` ranks of a pass, audio and the text keys whole on every rank, guidance passes over ``G``
  groups. ``--check`` compares the matmul formula with ``torch.utils.flop_counter`` on a small real transformer.
- **Bytes per rank**: the all-to-alls (ulysses) or all-gathers (allgather) of every video attention, the
  gathered output of each pass, the guidance exchange and rank 0's inputs broadcast at each call, at NVLink 4
  (H100 SXM: 450 GB/s each way, ``--link-efficiency`` of it achieved) plus a latency per collective.
- Time = compute at ``--mfu`` of the bf16 peak + communication, not overlapped (the code waits on each
  collective); speed-up against the same step on one GPU. Text encoding, the VAE decode and the MP4 (rank 0
  alone) are outside this model: the denoising is what is split.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from ltx2_configs import TRANSFORMER  # noqa: E402

from pixgen.engine.parallel_plan import bins, choose_layout, exchange, shard, video_tokens  # noqa: E402

BYTES = 2  # bf16
TEXT_TOKENS = 1024  # max_sequence_length: the connectors' output, padded
AUDIO_TOKENS_PER_SECOND = 25  # 16 kHz, hop 160, audio VAE x4 in time


@dataclass(frozen=True)
class Shape:
    """The transformer's widths (LTX-2.0 by default)."""

    layers: int
    video: int  # hidden width of the video stream (heads x head dim)
    video_heads: int
    audio: int
    audio_heads: int
    text_video: int  # width of the text the video attends to (after caption projection)
    text_audio: int
    audio_inner: int  # width of the a2v / v2a attentions (audio heads x audio head dim)
    out_channels: int

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> Shape:
        video = c["num_attention_heads"] * c["attention_head_dim"]
        audio = c["audio_num_attention_heads"] * c["audio_attention_head_dim"]
        return cls(c["num_layers"], video, c["num_attention_heads"], audio, c["audio_num_attention_heads"],
                   video, audio, audio, c["out_channels"])


@dataclass(frozen=True)
class Case:
    label: str
    width: int  # generation size (multiples of 32)
    height: int
    frames: int
    pieces: int  # batch-1 passes per step: 4 (dev: CFG x2, STG, modality) or 1 (distilled, stage 2)
    steps: int

    @property
    def tokens(self) -> int:
        return video_tokens(self.width, self.height, self.frames)

    @property
    def audio_tokens(self) -> int:
        return round((self.frames - 1) / 24 * AUDIO_TOKENS_PER_SECOND) + 1


CASES = (
    Case("dev stage 1, 720p 5 s", 1280, 736, 121, 4, 40),
    Case("dev stage 1, 720p 15 s", 1280, 736, 361, 4, 40),
    Case("distilled stage 1, 768x512 5 s", 768, 512, 121, 1, 8),
    Case("distilled stage 1, 1080p 5 s (960x544)", 960, 544, 121, 1, 8),
    Case("refine (stage 2), 1080p 5 s", 1920, 1088, 121, 1, 3),
    Case("refine (stage 2), 1080p 15 s", 1920, 1088, 361, 1, 3),
)


@dataclass(frozen=True)
class PassCost:
    flops: float  # per rank
    bytes: float  # sent per rank
    collectives: int


def pass_flops(s: Shape, n: int, a: int, t: int = TEXT_TOKENS, degree: int = 1, how: str = "auto") -> dict[str, float]:
    """One batch-1 pass on one rank of ``degree`` sharing its ``n`` video tokens (padded), the audio and text keys
    whole on each: the blocks' matmuls (2 FLOPs a multiply-add) and attention (4·queries·keys·width, as
    FlashAttention counts it). Outside the blocks (proj_in/out, caption projections, time embeddings): < 0.1 %."""
    per = shard(n, degree)[0]
    v, au, i = s.video, s.audio, s.audio_inner
    linear = (2 * per * v * v * (4 + 2 + 8)  # attn1 Q, K, V, out; attn2 Q, out; feed-forward (x4 up, down)
              + 2 * 2 * t * s.text_video * v + 2 * 2 * t * s.text_audio * au  # text K, V: whole on every rank
              + 2 * per * v * i * 2 + 2 * 2 * a * au * i  # a2v: Q, out (video rows); K, V (audio rows)
              + 2 * a * au * i * 2 + 2 * 2 * per * v * i  # v2a: Q, out (audio rows); K, V (video rows)
              + 2 * a * au * au * (4 + 2 + 8))  # the audio stream, whole on every rank
    v2a_heads = degree if degree > 1 and exchange(s.audio_heads, degree, how) == "ulysses" else 1
    attention = (4 * per * n * v + 4 * per * t * v + 4 * per * a * i  # video rows: self, text, a2v
                 + 4 * a * n * i / v2a_heads + 4 * a * a * au + 4 * a * t * au)  # audio rows: v2a, self, text
    return {"linear": s.layers * linear, "attention": s.layers * attention}


def sharded_pass(s: Shape, n: int, a: int, degree: int, how: str, t: int = TEXT_TOKENS) -> PassCost:
    """One pass over ``degree`` ranks: FLOPs, bytes sent and collectives per rank."""
    flops = sum(pass_flops(s, n, a, t, degree, how).values())
    if degree == 1:
        return PassCost(flops, 0.0, 0)
    per = shard(n, degree)[0]
    v, i = s.video, s.audio_inner
    away = (degree - 1) / degree
    if exchange(s.video_heads, degree, how) == "ulysses":  # Q, K, V out and back: 4 all-to-alls of N/S tokens
        self_bytes, self_calls = 4 * per * v * away * BYTES, 4
    else:  # every rank gathers all keys and values
        self_bytes, self_calls = 2 * per * v * (degree - 1) * BYTES, 2
    if exchange(s.audio_heads, degree, how) == "ulysses":  # K, V all-to-all; the audio rows' heads gathered
        v2a_bytes, v2a_calls = 2 * per * i * away * BYTES + a * i / degree * (degree - 1) * BYTES, 3
    else:
        v2a_bytes, v2a_calls = 2 * per * i * (degree - 1) * BYTES, 2
    output = per * s.out_channels * (degree - 1) * BYTES  # the pass's video output gathered
    return PassCost(flops, s.layers * (self_bytes + v2a_bytes) + output, s.layers * (self_calls + v2a_calls) + 1)


def inputs_bytes(s: Shape, n: int, a: int, batch: int, t: int = TEXT_TOKENS) -> float:
    """Rank 0's inputs of one call, broadcast (latents, text embeddings before projection, coordinates)."""
    return batch * (n * 128 + a * 128 + t * 3840 * 2 + n * 3 * 2 * 2 + a * 2 * 2) * BYTES


def step(s: Shape, case: Case, gpus: int, how: str = "auto", guidance: bool = True) -> dict[str, Any]:
    layout = choose_layout(gpus, case.pieces, guidance_parallel=guidance)
    n, a = case.tokens, case.audio_tokens
    per_group = len(bins(tuple(range(case.pieces)), layout.guidance)[0])
    one = sharded_pass(s, n, a, layout.sequence, how)
    flops = per_group * one.flops
    sent = per_group * one.bytes
    calls = per_group * one.collectives
    if gpus > 1:
        batch = 2 if case.pieces >= 2 else 1
        sent += inputs_bytes(s, n, a, batch) * (gpus - 1) / gpus  # a broadcast: about its size per rank
        calls += 2 + 1  # the agreement, the broadcast (per dtype: about 1)
        if layout.guidance > 1:  # every rank gets every group's outputs
            sent += per_group * (n * s.out_channels + a * 128) * (layout.guidance - 1) * BYTES
            calls += 2
    return {"layout": layout.describe(), "passes_per_rank": per_group, "sequence_exchange":
            exchange(s.video_heads, layout.sequence, how) if layout.sequence > 1 else "-",
            "padding": shard(n, layout.sequence)[1], "tflops_per_rank": flops / 1e12, "gbytes_per_rank": sent / 1e9,
            "collectives": calls}


def timed(entry: dict[str, Any], args: argparse.Namespace) -> float:
    compute = entry["tflops_per_rank"] * 1e12 / (args.peak_tflops * 1e12 * args.mfu)
    link = entry["gbytes_per_rank"] * 1e9 / (args.link_gbps * 1e9 * args.link_efficiency)
    return compute + link + entry["collectives"] * args.latency_us * 1e-6


def table(args: argparse.Namespace) -> dict[str, Any]:
    s = Shape.from_config(TRANSFORMER["2.0"])
    out: dict[str, Any] = {"computed": True, "measured": "only where a multi-GPU device is lent (none so far)",
                           "assumptions": {k: getattr(args, k) for k in ("peak_tflops", "mfu", "link_gbps",
                                                                         "link_efficiency", "latency_us")},
                           "shape": asdict(s), "cases": []}
    for case in CASES:
        base = step(s, case, 1)
        t1 = timed(base, args)
        row: dict[str, Any] = {"case": case.label, "video_tokens": case.tokens, "audio_tokens": case.audio_tokens,
                               "passes_per_step": case.pieces, "steps": case.steps, "one_gpu_step_s": t1,
                               "tflops_per_step_1_gpu": base["tflops_per_rank"], "gpus": {}}
        for g in args.gpus:
            entry = step(s, case, g, args.exchange, args.guidance_parallel != "off")
            tg = timed(entry, args)
            entry.update(step_s=tg, speedup=t1 / tg, efficiency=t1 / tg / g)
            row["gpus"][str(g)] = entry
        out["cases"].append(row)
    return out


def markdown(result: dict[str, Any], gpus: list[int]) -> str:
    a = result["assumptions"]
    lines = [f"Computed (not measured: measured only where a multi-GPU device is lent, none so far). H100 bf16 "
             f"{a['peak_tflops']:.0f} TFLOP/s at {a['mfu']:.0%} MFU; NVLink 4 {a['link_gbps']:.0f} GB/s each way at "
             f"{a['link_efficiency']:.0%}, {a['latency_us']:.0f} µs a collective; compute and transfers not "
             f"overlapped. Per denoising step; per rank: TFLOPs / GB sent.", "",
             "| job shape (tokens video+audio, passes/step) | 1 GPU step | " +
             " | ".join(f"{g} GPUs: layout, TFLOP / GB per rank, step, speed-up" for g in gpus) + " |",
             "|---|---|" + "---|" * len(gpus)]
    for row in result["cases"]:
        cells = [f"{row['case']} ({row['video_tokens']}+{row['audio_tokens']}, {row['passes_per_step']})",
                 f"{row['one_gpu_step_s']:.2f} s ({row['tflops_per_step_1_gpu']:.0f} TFLOP)"]
        for g in gpus:
            e = row["gpus"][str(g)]
            cells.append(f"{e['layout']}, {e['tflops_per_rank']:.0f} / {e['gbytes_per_rank']:.2f}, "
                         f"{e['step_s']:.2f} s, **{e['speedup']:.2f}x**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check() -> dict[str, Any]:
    """The FLOP formula against torch's own count of a real (small, random) LTX-2 transformer's forward."""
    import torch
    from diffusers import LTX2VideoTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    config = {**TRANSFORMER["2.0"], "num_layers": 2, "num_attention_heads": 4, "attention_head_dim": 32,
              "cross_attention_dim": 128, "audio_num_attention_heads": 4, "audio_attention_head_dim": 16,
              "audio_cross_attention_dim": 64, "caption_channels": 96, "rope_double_precision": False}
    model = LTX2VideoTransformer3DModel(**config).eval()
    f, h, w, a, t = 3, 8, 12, 13, 64
    n = f * h * w
    kw = dict(hidden_states=torch.randn(1, n, 128), audio_hidden_states=torch.randn(1, a, 128),
              encoder_hidden_states=torch.randn(1, t, 96), audio_encoder_hidden_states=torch.randn(1, t, 96),
              timestep=torch.tensor([500.0]), sigma=torch.tensor([500.0]), num_frames=f, height=h, width=w,
              audio_num_frames=a, return_dict=False)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**kw)
    # torch counts the matmuls (its CPU attention kernel is not in its table): compare the blocks' matmuls.
    blocks = counter.get_flop_counts()
    counted = float(sum(sum(v.values()) for k, v in blocks.items() if k.endswith(tuple(
        f"transformer_blocks.{b}" for b in range(config["num_layers"])))))
    formula = pass_flops(Shape.from_config(config), n, a, t)["linear"]
    return {"counted": counted, "formula": formula, "ratio": formula / counted}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--peak-tflops", type=float, default=989.4, help="dense bf16 peak of one GPU (H100 SXM)")
    parser.add_argument("--mfu", type=float, default=0.45, help="share of the peak the transformer reaches")
    parser.add_argument("--link-gbps", type=float, default=450.0, help="NVLink 4, GB/s each way per GPU")
    parser.add_argument("--link-efficiency", type=float, default=0.8)
    parser.add_argument("--latency-us", type=float, default=20.0, help="fixed cost of one collective")
    parser.add_argument("--exchange", default="auto", choices=("auto", "ulysses", "allgather"))
    parser.add_argument("--guidance-parallel", default="auto", choices=("auto", "off"))
    parser.add_argument("--markdown", action="store_true", help="print the README's table")
    parser.add_argument("--check", action="store_true", help="compare the FLOP formula with torch's count")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = table(args)
    if args.check:
        result["check"] = check()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, args.gpus) if args.markdown else json.dumps(result, indent=2))
    if args.check:
        print(f"FLOP formula / torch's count on a small transformer: {result['check']['ratio']:.4f}",
              file=sys.stderr)
    return 0 if not args.check or math.isclose(result["check"]["ratio"], 1.0, rel_tol=0.02) else 1


if __name__ == "__main__":
    sys.exit(main())
