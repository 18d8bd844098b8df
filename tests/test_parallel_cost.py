"""The cost model behind the README's multi-GPU table (``bench/parallel_cost.py``) counts what the code does: its
matmul FLOPs equal torch's count of a real transformer's forward, on one rank and on rank 0 of 2 sharing the
video tokens (padding included); and its table is labelled as computed."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixgen.testing import free_port

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import parallel_cost  # noqa: E402

SMALL = {**parallel_cost.TRANSFORMER["2.0"], "num_layers": 2, "num_attention_heads": 4, "attention_head_dim": 32,
         "cross_attention_dim": 128, "audio_num_attention_heads": 4, "audio_attention_head_dim": 16,
         "audio_cross_attention_dim": 64, "caption_channels": 96, "rope_double_precision": False}
F, H, W, A, T = 3, 5, 7, 13, 64  # 105 video tokens: odd, padded to 106 over 2 ranks


def counted_blocks(rank: int, world: int, port: int, out: str) -> None:
    """torch's count of the blocks' matmuls on this rank, for a forward over ``world`` ranks."""
    from diffusers import LTX2VideoTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from pixgen.engine.base import EngineOptions
    from pixgen.engine.distributed import init_rank_group, leave_rank_group
    from pixgen.engine.ltx2.parallel import parallelize

    torch.set_num_threads(1)
    init_rank_group(rank, world, port=port, device=torch.device("cpu"), timeout=60)
    try:
        torch.manual_seed(0)
        model = LTX2VideoTransformer3DModel(**SMALL).eval()
        parallelize(model, torch.device("cpu"), EngineOptions(guidance_parallel="off"))
        n = F * H * W
        kw = dict(hidden_states=torch.randn(1, n, 128), audio_hidden_states=torch.randn(1, A, 128),
                  encoder_hidden_states=torch.randn(1, T, 96), audio_encoder_hidden_states=torch.randn(1, T, 96),
                  timestep=torch.tensor([500.0]), sigma=torch.tensor([500.0]), num_frames=F, height=H, width=W,
                  audio_num_frames=A, return_dict=False)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(**kw)
        blocks = counter.get_flop_counts()
        total = sum(sum(v.values()) for k, v in blocks.items()
                    if k.endswith(("transformer_blocks.0", "transformer_blocks.1")))
    finally:
        leave_rank_group()
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(float(total)))


def test_matmul_flops_match_torchs_count_on_one_rank():
    check = parallel_cost.check()
    assert check["ratio"] == pytest.approx(1.0, rel=1e-9), check


def test_matmul_flops_per_rank_match_torchs_count_on_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "flops.pkl"
    mp.spawn(counted_blocks, args=(2, free_port(), str(out)), nprocs=2)
    counted = pickle.loads(out.read_bytes())
    shape = parallel_cost.Shape.from_config(SMALL)
    assert parallel_cost.pass_flops(shape, F * H * W, A, T, degree=2)["linear"] == pytest.approx(counted, rel=1e-9)
    assert counted < 0.6 * parallel_cost.pass_flops(shape, F * H * W, A, T)["linear"]  # about half, and a bit


def test_the_table_is_computed_and_says_so(tmp_path):
    out = tmp_path / "cost.json"
    done = subprocess.run([sys.executable, str(BENCH / "parallel_cost.py"), "--markdown", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Computed (not measured: measured only where a multi-GPU device is lent")
    result = json.loads(out.read_text())
    assert result["computed"] is True
    for row in result["cases"]:
        speedups = [row["gpus"][g]["speedup"] for g in ("2", "4", "8")]
        assert 1 < speedups[0] < speedups[1] < speedups[2] <= 8, row  # more GPUs, faster, never beyond linear
        if row["passes_per_step"] == 4:  # the dev step on 2 and 4 GPUs: its passes side by side, no tokens split
            assert row["gpus"]["2"]["layout"] == "2 guidance x 1 sequence"
            assert row["gpus"]["4"]["layout"] == "4 guidance x 1 sequence"
