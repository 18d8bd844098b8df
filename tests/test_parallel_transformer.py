"""The transformer over 2 (and 4) ranks against one, on gloo: sequence parallel (both exchanges, token counts that do
not divide, per-token timesteps, STG, isolated modalities, an IC-LoRA mask) and guidance parallel (the passes of a
step side by side), in float32 and bfloat16.

A toy LTX-2.3-style transformer (gated attention, cross-attention modulation, STG's perturbed attention) runs in
real processes; each rank computes the one-rank reference itself before its transformer is wrapped.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from pixgen.engine.base import EngineOptions
from pixgen.engine.parallel_plan import COND, MODALITY, STG, UNCOND
from pixgen.testing import free_port

pytestmark = pytest.mark.slow

CONFIG = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
              audio_in_channels=8, audio_out_channels=8, audio_num_attention_heads=2, audio_attention_head_dim=4,
              audio_cross_attention_dim=8, num_layers=2, caption_channels=32, rope_double_precision=False,
              gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
              perturbed_attn=True)
AUDIO_TOKENS, TEXT_TOKENS = 5, 12
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# (frames, height, width) in latents, and what else the call carries
SP_CASES = {
    "even": ((2, 3, 4), {}),
    "odd tokens, per-token timestep": ((1, 3, 3), {"per_token": True}),
    "STG on every row": ((2, 3, 3), {"spatio_temporal_guidance_blocks": [1]}),
    "STG on one row of two": ((2, 3, 3), {"spatio_temporal_guidance_blocks": [0], "perturbation_mask": (0.0, 1.0)}),
    "isolated modalities, odd": ((3, 3, 3), {"isolate_modalities": True, "per_token": True}),
    "IC-LoRA self-attention mask, odd": ((1, 3, 5), {"self_mask": True}),
}


def make_model(rope_type: str, dtype: torch.dtype):
    from diffusers import LTX2VideoTransformer3DModel

    torch.manual_seed(0)
    return LTX2VideoTransformer3DModel(**CONFIG, rope_type=rope_type).eval().to(dtype)


def call(model, shape, dtype, batch=2, per_token=False, self_mask=False, perturbation_mask=None, **flags):
    """The keyword arguments a pipeline passes (CFG's batch: row 0 the negative prompt, row 1 the prompt)."""
    f, h, w = shape
    n = f * h * w
    g = torch.Generator().manual_seed(1)
    kw = {"hidden_states": torch.randn(1, n, 8, generator=g).repeat(batch, 1, 1).to(dtype),
          "audio_hidden_states": torch.randn(1, AUDIO_TOKENS, 8, generator=g).repeat(batch, 1, 1).to(dtype),
          "encoder_hidden_states": torch.randn(batch, TEXT_TOKENS, 32, generator=g).to(dtype),
          "audio_encoder_hidden_states": torch.randn(batch, TEXT_TOKENS, 32, generator=g).to(dtype)}
    t = torch.full((batch,), 700.0)
    kw["timestep"] = t
    if per_token:  # conditioned tokens at 0, as the start-frame and condition pipelines pass it
        kw["timestep"] = t[:, None].repeat(1, n)
        kw["timestep"][:, : h * w] = 0.0
        kw["audio_timestep"] = t
    mask = torch.ones(batch, TEXT_TOKENS, dtype=torch.int64)
    kw.update(sigma=t, encoder_attention_mask=mask, audio_encoder_attention_mask=mask, num_frames=f, height=h,
              width=w, fps=24.0, audio_num_frames=AUDIO_TOKENS, isolate_modalities=False,
              spatio_temporal_guidance_blocks=None, perturbation_mask=None, use_cross_timestep=True,
              attention_kwargs=None)
    kw["video_coords"] = model.rope.prepare_video_coords(batch, f, h, w, torch.device("cpu"), fps=24.0)
    kw["audio_coords"] = model.audio_rope.prepare_audio_coords(batch, AUDIO_TOKENS, torch.device("cpu"))
    if self_mask:  # IC-LoRA: a multiplicative (B, N, N) mask, here with a band the video may not see
        m = torch.ones(batch, n, n)
        m[:, :, n // 2:] = 0.25
        kw["video_self_attention_mask"] = m
    if perturbation_mask is not None:
        kw["perturbation_mask"] = torch.tensor(perturbation_mask).to(dtype)
    kw.update(flags)
    return kw


def guided_step(model, kw, pieces, plan=None):
    """One step's calls as LTX2Pipeline makes them: CFG's batch, then STG and modality on the prompt's row."""
    from pixgen.engine.ltx2.parallel import PLAN_KEY, StepPlan

    first = dict(kw)
    if plan:
        first["attention_kwargs"] = {PLAN_KEY: StepPlan(pieces, [1])}
    batch = first["hidden_states"].shape[0]
    cond = {k: (v[batch - 1:] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch else v)
            for k, v in first.items()}
    outs = [model(**first, return_dict=False)]
    if STG in pieces:
        outs.append(model(**{**cond, "spatio_temporal_guidance_blocks": [1]}, return_dict=False))
    if MODALITY in pieces:
        outs.append(model(**{**cond, "isolate_modalities": True}, return_dict=False))
    return outs


def run_rank(rank: int, world: int, port: int, scenario: str, out: str) -> None:
    from pixgen.engine.distributed import init_rank_group, leave_rank_group
    from pixgen.engine.ltx2.parallel import parallelize

    torch.set_num_threads(1)
    init_rank_group(rank, world, port=port, device=torch.device("cpu"), timeout=60)
    results = {}
    try:
        with torch.no_grad():
            if scenario == "sequence":
                for rope in ("split", "interleaved"):
                    for exchange in ("ulysses", "allgather"):
                        for dname, dtype in DTYPES.items():
                            model = make_model(rope, dtype)
                            calls = {name: call(model, shape, dtype, **extra) for name, (shape, extra) in
                                     SP_CASES.items()}
                            refs = {name: model(**kw, return_dict=False) for name, kw in calls.items()}
                            parallelize(model, torch.device("cpu"),
                                        EngineOptions(guidance_parallel="off", sequence_exchange=exchange))
                            for name, kw in calls.items():
                                got = model(**kw, return_dict=False)
                                results[(rope, exchange, dname, name)] = _diff(got, refs[name])
            else:  # guidance: (pieces) per line, one reference each
                for dname, dtype in DTYPES.items():
                    for pieces in ((UNCOND, COND, STG, MODALITY), (UNCOND, COND), (UNCOND, COND, STG)):
                        model = make_model("split", dtype)
                        kw = call(model, (2, 3, 4), dtype)
                        refs = guided_step(model, kw, pieces)
                        parallelize(model, torch.device("cpu"), EngineOptions())
                        got = guided_step(model, kw, pieces, plan=True)
                        results[(dname, pieces)] = [_diff(g, r) for g, r in zip(got, refs, strict=True)]
    finally:
        leave_rank_group()
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(results))


def _diff(got, ref) -> dict:
    return {"video": (got[0].float() - ref[0].float()).abs().max().item(),
            "audio": (got[1].float() - ref[1].float()).abs().max().item(),
            "scale": ref[0].float().abs().max().item(),
            "identical": torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]),
            "shape": tuple(got[0].shape)}


# What every rank imports: loaded once in the fork server, whose forks (the ranks) start with them imported instead
# of each importing torch and diffusers again (seconds of a CPU each, most of what the ranks do). The server lives
# until this process ends.
PRELOAD = ["torch", "diffusers.models.transformers.transformer_ltx2", "pixgen.engine.distributed",
           "pixgen.engine.ltx2.parallel", __name__]


def spawn(world: int, scenario: str, tmp_path: Path) -> dict:
    import multiprocessing

    import torch.multiprocessing as mp

    out = tmp_path / f"{scenario}-{world}.pkl"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)  # before the server's first start
    mp.start_processes(run_rank, args=(world, free_port(), scenario, str(out)), nprocs=world,
                       start_method="forkserver")
    return pickle.loads(out.read_bytes())


@pytest.fixture(scope="module")
def sequence_results(tmp_path_factory):
    return spawn(2, "sequence", tmp_path_factory.mktemp("sp"))


def test_sequence_parallel_matches_one_rank_in_float32(sequence_results):
    """Both exchanges, both RoPE layouts, every case: within float32 rounding (max |Δ| ≤ 1e-5 on outputs of ~1)."""
    fp32 = {k: v for k, v in sequence_results.items() if k[2] == "float32"}
    assert len(fp32) == 2 * 2 * len(SP_CASES)
    worst = max(max(v["video"], v["audio"]) for v in fp32.values())
    assert worst <= 1e-5, {k: v for k, v in fp32.items() if max(v["video"], v["audio"]) > 1e-5}


def test_sequence_parallel_matches_one_rank_in_bfloat16_to_a_rounding_step(sequence_results):
    """bfloat16 differs by at most a couple of its rounding steps (2^-8 relative) where the row counts differ."""
    for key, v in sequence_results.items():
        if key[2] == "bfloat16":
            assert v["video"] <= 4 * 2**-8 * max(1.0, v["scale"]), (key, v)
            assert v["audio"] <= 4 * 2**-8 * max(1.0, v["scale"]), (key, v)


def test_padding_and_isolated_audio_keep_outputs_whole(sequence_results):
    for key, v in sequence_results.items():
        frames, height, width = SP_CASES[key[3]][0]
        assert v["shape"][1] == frames * height * width  # padding cut off again
        if key[3].startswith("isolated"):  # no video→audio attention: the audio is the very same numbers
            assert v["audio"] == 0.0, key


@pytest.fixture(scope="module")
def guidance_results(tmp_path_factory):
    return spawn(2, "guidance", tmp_path_factory.mktemp("gp"))


def test_guidance_passes_side_by_side_are_identical_to_one_after_another(guidance_results):
    """4 pieces on 2 ranks: [negative+prompt as one batch] and [STG, modality]: bit for bit, both dtypes."""
    for dname in DTYPES:
        diffs = guidance_results[(dname, (UNCOND, COND, STG, MODALITY))]
        assert [d["shape"][0] for d in diffs] == [2, 1, 1]
        assert all(d["identical"] for d in diffs), diffs


def test_cfg_batch_split_over_ranks_stays_within_rounding(guidance_results):
    """CFG alone on 2 ranks: each rank one row (batch 1 against the pipeline's batch 2): float32 rounding only.
    Three pieces do not split evenly over 2: that step runs sequence parallel."""
    for dname in DTYPES:
        for pieces in ((UNCOND, COND), (UNCOND, COND, STG)):
            for d in guidance_results[(dname, pieces)]:
                limit = 1e-5 if dname == "float32" else 4 * 2**-8 * max(1.0, d["scale"])
                assert max(d["video"], d["audio"]) <= limit, (dname, pieces, d)


def test_four_ranks_run_the_four_guidance_passes_one_each(tmp_path):
    results = spawn(4, "guidance", tmp_path)
    for dname in DTYPES:
        diffs = results[(dname, (UNCOND, COND, STG, MODALITY))]
        assert all(d["identical"] for d in diffs[1:]), diffs  # STG and modality alone on their rank: the same
        limit = 1e-5 if dname == "float32" else 4 * 2**-8 * max(1.0, diffs[0]["scale"])
        assert max(diffs[0]["video"], diffs[0]["audio"]) <= limit  # CFG's two rows on two ranks
