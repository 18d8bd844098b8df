"""Memory modes and speed options on the toy LTX-2 (CPU): every mode runs a whole job, the offloading ones change
nothing but where the weights are, FP8 storage stays within a stated distance, ``auto`` picks by free memory, the
decode goes through the offloading hooks; each speed option switches on and does what it says."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.memory import GIB, MODES, WeightBytes, plan_memory
from pixgen.errors import ModelError
from pixgen.media.probe import read_frames

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Mean distance of FP8-stored toy weights' frames from full precision, in 8-bit levels (measured 5.5; the toy's
# random weights make this a regression guard, not a quality statement).
FP8_MEAN_LEVELS = 8.0


def request(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 7,
                          "thinking_type": "disabled", **fields})


@pytest.fixture(scope="module")
def jobs_by_mode(tmp_path_factory):
    """One job per memory mode: its frames; and under ``offload``, for each call of the VAE's offloading hook
    during the job, whether it was the VAE's call."""
    from pixgen.engine import load_engine

    frames, vae_hook_calls = {}, []
    for mode in MODES:
        engine = load_engine("tiny", memory=mode)
        assert engine.memory == mode
        if mode == "offload":
            vae = engine.pipes.text.vae
            original = vae._hf_hook.pre_forward
            vae._hf_hook.pre_forward = lambda module, *a, _vae=vae, _original=original, **k: (
                vae_hook_calls.append(module is _vae), _original(module, *a, **k))[1]
        result = engine.generate(request(), tmp_path_factory.mktemp(mode) / "v.mp4")
        frames[mode] = read_frames(result.path).astype(int)
    return frames, vae_hook_calls


@pytest.fixture(scope="module")
def frames_by_mode(jobs_by_mode):
    return jobs_by_mode[0]


def test_every_memory_mode_runs_a_whole_job(frames_by_mode):
    assert set(frames_by_mode) == set(MODES)
    assert all(frames.shape == (25, 360, 640, 3) for frames in frames_by_mode.values())


def test_offloading_changes_nothing_but_where_the_weights_are(frames_by_mode):
    assert np.array_equal(frames_by_mode["text-offload"], frames_by_mode["full"])
    # offload and group-offload store the transformer in float8 like fp8 does, and add only data movement
    assert np.array_equal(frames_by_mode["offload"], frames_by_mode["fp8"])
    assert np.array_equal(frames_by_mode["group-offload"], frames_by_mode["fp8"])


def test_fp8_storage_stays_within_the_stated_distance(frames_by_mode):
    distance = np.abs(frames_by_mode["fp8"] - frames_by_mode["full"]).mean()
    assert 0 < distance <= FP8_MEAN_LEVELS


# LTX-2.0 at full size, bf16 (parameter counts from bench/gpu_bench.py --sizes); the vocoder is kept in float32.
LTX2_BYTES = WeightBytes({"transformer": 18_876_000_000 * 2, "text_encoder": 12_187_000_000 * 2,
                          "connectors": 1_431_000_000 * 2, "vae": 1_222_000_000 * 2, "audio_vae": 53_000_000 * 2,
                          "vocoder": 56_000_000 * 4, "latent_upsampler": 498_000_000 * 2})


@pytest.mark.parametrize("free_gib,mode", [(139, "full"), (79, "text-offload"), (45, "fp8"), (36, "offload"),
                                           (24, "group-offload")])
def test_auto_picks_the_most_resident_mode_that_fits_the_free_memory(free_gib, mode):
    plan = plan_memory("auto", LTX2_BYTES, torch.device("cuda"), free_bytes=int(free_gib * GIB))
    assert plan.mode == mode and f"{free_gib:.1f} GiB free" in plan.reason


def test_each_mode_keeps_less_on_the_gpu_than_the_one_before():
    resident = [LTX2_BYTES.resident(mode) / GIB for mode in MODES]
    assert resident == sorted(resident, reverse=True)
    assert 63 < resident[0] < 65  # full: ~64 GiB, as published
    assert resident[MODES.index("fp8")] < 24  # with activations, a 48 GB card's job


def test_a_named_mode_is_kept_and_a_cpu_gets_full():
    assert plan_memory("fp8", LTX2_BYTES, torch.device("cuda"), free_bytes=200 * GIB).mode == "fp8"
    assert plan_memory("auto", LTX2_BYTES, torch.device("cpu")).mode == "full"
    with pytest.raises(ModelError) as info:
        plan_memory("half", LTX2_BYTES, torch.device("cpu"))
    assert info.value.field == "memory"


def test_weight_bytes_are_read_from_the_folder_without_loading_it():
    from pixgen.engine import load_engine, resolve_model_dir

    on_disk = WeightBytes.from_folder(resolve_model_dir("tiny"), torch.float32)
    loaded = WeightBytes.from_modules(load_engine("tiny").pipes.modules)
    assert on_disk.sizes.keys() == loaded.sizes.keys()
    for name, size in loaded.sizes.items():  # element counts from the headers, at the load dtype; a loaded model
        assert abs(on_disk.sizes[name] - size) <= 4096, name  # also holds a few unsaved buffers (RoPE tables)


def test_under_offload_the_decode_goes_through_the_vaes_hook(jobs_by_mode):
    """The streaming decode calls ``vae.decode`` per tile, which runs the offloading hook that moves the VAE in
    (``vae.decoder`` directly would run it where it lies, in host memory). Watched on the ``offload`` job above."""
    _, calls = jobs_by_mode
    assert calls and all(calls)


# -- speed options ---------------------------------------------------------------------------------------------
def attention_calls(engine):
    """Counts the video self-attentions actually computed (their query projection runs; a cached one does not)."""
    counts = {"attn1": 0}
    for block in engine.pipes.text.transformer.transformer_blocks:
        block.attn1.to_q.register_forward_pre_hook(lambda *_: counts.__setitem__("attn1", counts["attn1"] + 1))
    return counts


def test_a_mask_free_attention_backend_leaves_the_text_cross_attention_alone():
    from diffusers.models.attention_dispatch import AttentionBackendName

    from pixgen.engine import load_engine

    engine = load_engine("tiny", attention_backend="native")
    for block in engine.pipes.text.transformer.transformer_blocks:
        for name in ("attn1", "audio_attn1", "audio_to_video_attn", "video_to_audio_attn"):
            assert getattr(block, name).processor._attention_backend == AttentionBackendName.NATIVE
        assert block.attn2.processor._attention_backend is None  # it takes the prompt's mask


@pytest.mark.parametrize("name,words", [("warp", "unknown backend"), ("flash", "needs an NVIDIA GPU"),
                                        ("flash_hub", "Hugging Face Hub")])
def test_an_attention_backend_that_cannot_run_is_refused_at_load_naming_the_flag(name, words):
    from pixgen.engine import load_engine

    with pytest.raises(ModelError) as info:
        load_engine("tiny", attention_backend=name)
    assert info.value.field == "attention_backend" and words in info.value.message
    assert info.value.message.startswith("--attention-backend")


@pytest.mark.parametrize("name,wheel", [("sage", "sageattention>=2.1.1"), ("_flash_3", "FlashAttention-3"),
                                        ("flash", "flash-attn")])
def test_a_gpu_backend_whose_kernel_is_not_installed_says_what_to_install(name, wheel):
    """On a GPU the refusal names the missing wheel (none of these is installed here; the device check is passed by
    naming a CUDA device, which is never touched)."""
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.speed import set_mask_free_attention_backend

    transformer = load_engine("tiny").pipes.text.transformer
    with pytest.raises(ModelError) as info:
        set_mask_free_attention_backend(transformer, name, torch.device("cuda"))
    assert info.value.field == "attention_backend" and "cannot run here" in info.value.message
    assert wheel in info.value.message


def test_the_taylorseer_cache_skips_attention_work_and_the_job_still_completes(toy_variant, tmp_path):
    from pixgen.engine import load_engine

    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 8})
    plain, cached = load_engine(str(folder)), load_engine(str(folder), step_cache="taylorseer")
    counts = {}
    for name, engine in (("plain", plain), ("cached", cached)):
        calls = attention_calls(engine)
        result = engine.generate(request(), tmp_path / f"{name}.mp4")
        assert result.num_frames == 25
        counts[name] = calls["attn1"]
    assert counts["cached"] < counts["plain"]


def test_float8_storage_gives_diffusers_layerwise_castings_numbers_without_its_hooks():
    """``fp8.Float8StoredLinear`` replaced ``enable_layerwise_casting`` (whose hooks re-create every parameter at
    each call, which torch.compile cannot trace): the same layers, the same bits out."""
    import copy

    from pixgen.engine import load_engine
    from pixgen.engine.ltx2.fp8 import FP8, Float8StoredLinear, store_in_float8

    engine = load_engine("tiny", dtype="bfloat16")
    transformer = engine.pipes.text.transformer
    hooked, ours = copy.deepcopy(transformer), copy.deepcopy(transformer)
    hooked.enable_layerwise_casting(storage_dtype=FP8, compute_dtype=torch.bfloat16)
    count = store_in_float8(ours, torch.bfloat16)
    assert count == sum(isinstance(m, Float8StoredLinear) for m in ours.modules()) > 0
    assert not any(hasattr(m, "_diffusers_hook") for m in ours.modules())
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 960, 8, generator=generator, dtype=torch.bfloat16)
    audio = torch.randn(1, 26, 8, generator=generator, dtype=torch.bfloat16)
    kwargs = dict(hidden_states=hidden, audio_hidden_states=audio,
                  encoder_hidden_states=torch.randn(1, 64, 32, generator=generator, dtype=torch.bfloat16),
                  audio_encoder_hidden_states=torch.randn(1, 64, 32, generator=generator, dtype=torch.bfloat16),
                  timestep=torch.tensor([500.0]), num_frames=4, height=12, width=20, audio_num_frames=26,
                  return_dict=False)
    with torch.no_grad():
        want, got = hooked(**kwargs), ours(**kwargs)
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w, g)
    assert sum(p.numel() * p.element_size() for p in ours.parameters()) < \
        0.6 * sum(p.numel() * p.element_size() for p in transformer.parameters())


def test_memory_and_speed_settings_come_from_flags_and_bad_values_name_the_flag(tmp_path):
    from cli_tools import pixgen

    out = tmp_path / "fp8.mp4"
    proc = pixgen("generate", "a lighthouse", "--duration", "1", "--quality", "360p", "--seed", "1", "--memory",
                  "fp8", "--step-cache", "taylorseer", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    bad = pixgen("generate", "x", "--memory", "half", "-o", str(tmp_path / "x.mp4"))
    assert bad.returncode == 2 and "--memory" in bad.stderr


def test_streamed_offloads_warning_about_layers_that_never_ran_is_one_short_line():
    """On the H200 the text encoder's streamed offload logged all ~450 vision-tower layer names on one line (the
    vision tower never runs for text prompts); the filter installed with the offload shortens it to a count."""
    import logging

    from diffusers.utils import logging as diffusers_logging

    from pixgen.engine.ltx2.memory import _group_offload

    _group_offload(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.device("cpu"), use_stream=False)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = diffusers_logging.get_logger("diffusers.hooks.group_offloading")
    handler = Keep()
    logger.addHandler(handler)
    try:
        names = [f"model.vision_tower.encoder.layers.{i}.mlp.fc1" for i in range(450)]
        logger.warning("It seems like some layers were not executed during the forward pass. The following layers "
                       f"were not executed:\nunexecuted_layers={names!r}")
        logger.warning("an unrelated warning")
    finally:
        logger.removeHandler(handler)
    assert seen[0].startswith("streamed offload: 450 layers did not run") and len(seen[0]) < 200
    assert seen[1] == "an unrelated warning"
