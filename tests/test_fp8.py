"""``--fp8-compute``: the transformer blocks' linear layers multiply in float8 e4m3 with row-wise scales.

torch 2.13 runs ``torch._scaled_mm`` on a CPU too, so these tests run the very call a Hopper GPU runs, and check it
against the emulation (the dequantised operands multiplied in float32: the numbers the kernel must give). The
quality bounds are the ones stated in ``fp8.py`` (one forward) and the speed issue's (a whole job), measured here on
the toy in float32 and bfloat16; the full-size figures come from ``bench/gpu_bench.py --plan speed``."""

from __future__ import annotations

import os

import pytest
import torch

from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.fp8 import (
    FORWARD_SNR_BOUND_DB,
    FP8,
    FP8_MAX,
    Fp8Linear,
    compute_in_float8,
    emulated_matmul,
    fp8_kernel_for,
    quantise_rows,
)
from pixgen.errors import ModelError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The speed issue's bound for a whole job against bfloat16 (frames; the audio spectrum held to the same).
JOB_BOUND_DB = 30.0


def request(**fields):
    return parse_request({"prompt": "a red kite over a windy beach", "duration": 1, "quality": "360p", "seed": 1,
                          "thinking_type": "disabled", **fields})


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.float(), other.float()
    return float(10 * torch.log10((reference**2).mean() / ((reference - other) ** 2).mean()))


def test_rows_are_scaled_to_the_float8_range_and_round_within_its_precision():
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 64)[:, None]
    values, scale = quantise_rows(x)
    assert values.dtype == FP8 and scale.shape == (64, 1) and scale.dtype == torch.float32
    assert torch.allclose(values.float().abs().amax(dim=1), torch.full((64,), FP8_MAX))  # each row's max → 448
    back = values.float() * scale
    normal = values.float().abs() >= 2**-6  # e4m3's normal range: 3 mantissa bits, relative error ≤ 2^-4
    assert ((back - x).abs()[normal] <= 2**-4 * x.abs()[normal] + 1e-12).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_scaled_mm_kernel_gives_the_emulations_numbers(dtype):
    """A transposed or misplaced scale would be off by far more than rounding: this pins the kernel call."""
    generator = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(64, 48).to(dtype)
    torch.nn.init.normal_(linear.weight, generator=generator)
    x = (torch.randn(3, 7, 64, generator=generator) * 5).to(dtype)
    holder = torch.nn.Module()
    holder.transformer_blocks = torch.nn.ModuleList([linear])  # where compute_in_float8 looks
    assert compute_in_float8(holder, kernel="scaled_mm", compute_dtype=dtype) == 1
    layer = holder.transformer_blocks[0]
    assert isinstance(layer, Fp8Linear) and layer.weight_fp8.dtype == FP8
    with torch.no_grad():
        kernel = layer(x)
        quantised, scale = quantise_rows(x.reshape(-1, 64))
        emulated = emulated_matmul(quantised, scale, layer.weight_fp8, layer.weight_scale, layer.stored_bias, dtype)
    assert kernel.shape == (3, 7, 48) and kernel.dtype == dtype
    torch.testing.assert_close(kernel.reshape(-1, 48), emulated)
    assert layer.weight.dtype == dtype and layer.weight.shape == (48, 64)  # what peft reads to place an adapter


def captured_calls(engine, count: int = 3):
    calls = []

    def keep(module, args, kwargs) -> None:
        if len(calls) < count:
            calls.append((args, kwargs))

    hook = engine.pipes.text.transformer.register_forward_pre_hook(keep, with_kwargs=True)
    return calls, hook


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_forward_stays_within_the_stated_snr_of_the_compute_dtype(dtype, tmp_path):
    """``FORWARD_SNR_BOUND_DB`` (20 dB: ~26 dB a layer from e4m3's rounding, 6 dB for the layers' sum), on the
    first three denoising calls of a job. The toy's audio branch is 8 wide, which ``_scaled_mm`` does not take: it
    stays in the compute dtype, and its output moves only through the audio↔video attention."""
    from pixgen.engine import load_engine

    plain = load_engine("tiny", dtype=dtype)
    fp8 = load_engine("tiny", dtype=dtype, fp8_compute=True)
    layers = [m for m in fp8.pipes.text.transformer.modules() if isinstance(m, Fp8Linear)]
    assert len(layers) == 20  # the video attentions' and feed-forward's, in both blocks
    calls, hook = captured_calls(plain)
    plain.start_generate(request(), tmp_path / "p.mp4")  # the job up to its decode: the calls are all it needs
    hook.remove()
    for args, kwargs in calls:
        with torch.no_grad():
            want = plain.pipes.text.transformer(*args, **kwargs)
            got = fp8.pipes.text.transformer(*args, **kwargs)
        video, audio = snr_db(want[0], got[0]), snr_db(want[1], got[1])
        assert video >= FORWARD_SNR_BOUND_DB and audio >= FORWARD_SNR_BOUND_DB, (video, audio)
        assert video < 80  # it really changed: float8, not the compute dtype


def written(monkeypatch):
    """What each job hands its MP4 writer (frames, waveform), by file name, passed through unchanged: the codecs'
    own noise is no property of the model (``pixgen.media.quality``)."""
    from pixgen.media.mp4 import Mp4Writer

    seen: dict[str, dict] = {}
    write_frames, write_audio = Mp4Writer.write_frames, Mp4Writer.write_audio

    def frames(self, chunk):
        seen.setdefault(self.path.name, {"frames": []})["frames"].append(chunk.copy())
        write_frames(self, chunk)

    def audio(self, samples):
        seen.setdefault(self.path.name, {"frames": []})["audio"] = samples.copy()
        write_audio(self, samples)

    monkeypatch.setattr(Mp4Writer, "write_frames", frames)
    monkeypatch.setattr(Mp4Writer, "write_audio", audio)
    return seen


def test_a_whole_job_stays_within_the_issues_bound_of_bfloat16(tmp_path, monkeypatch):
    """Frames PSNR and audio-spectrum SNR against the bfloat16 job of the same seed, ≥ 30 dB (the issue's bound),
    on what went into the encoder. Measured on the toy: 48.3 dB (frames); the audio, whose toy layers are too narrow
    for float8, moves only through the audio↔video attention (98 dB)."""
    import numpy as np

    from pixgen.engine import load_engine
    from pixgen.media.quality import closeness

    seen = written(monkeypatch)
    load_engine("tiny", dtype="bfloat16").generate(request(), tmp_path / "bf16.mp4")
    load_engine("tiny", dtype="bfloat16", fp8_compute=True).generate(request(), tmp_path / "fp8.mp4")
    plain, fp8 = seen["bf16.mp4"], seen["fp8.mp4"]
    close = closeness(np.concatenate(plain["frames"]), np.concatenate(fp8["frames"]), plain["audio"], fp8["audio"])
    assert not close.identical_frames
    assert close.frames_psnr_db is not None and close.frames_psnr_db >= JOB_BOUND_DB, close
    assert close.audio_spectrum_snr_db is None or close.audio_spectrum_snr_db >= JOB_BOUND_DB, close


def test_a_lora_loaded_after_the_conversion_stays_in_the_compute_dtype(toy_variant, tmp_path):
    """peft reads a base layer's ``weight`` to place a new adapter: the float8 layers show it in the compute dtype,
    so an adapter first used after load (a style's LoRA) is not made float8 (which matmuls refuse)."""
    from test_engine_stages import lora_file

    from pixgen.engine import load_engine
    from pixgen.engine.presets import STYLES

    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 2})
    (folder / "loras" / STYLES["anime"].lora).write_bytes(lora_file(seed=3))
    for options in ({"fp8_compute": True}, {"memory": "fp8"}):
        engine = load_engine(str(folder), dtype="bfloat16", **options)
        result = engine.generate(request(style="anime"), tmp_path / "styled.mp4")
        assert result.loras == ("style_anime",)
        adapters = [p for n, p in engine.pipes.text.transformer.named_parameters() if "lora_" in n]
        assert adapters and all(p.dtype == torch.bfloat16 for p in adapters), options


def test_the_flag_runs_from_the_command_line_and_the_memory_plan_counts_it(tmp_path):
    from cli_tools import pixgen

    from pixgen.engine.ltx2.memory import WeightBytes

    out = tmp_path / "fp8.mp4"
    proc = pixgen("generate", "a lighthouse", "--duration", "1", "--quality", "360p", "--seed", "1", "--fp8-compute",
                  "--dtype", "bfloat16", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    weights = WeightBytes({"transformer": 100, "text_encoder": 50, "vae": 10})
    fp8 = weights.with_float8_transformer()
    assert fp8.resident("full") == 110 and fp8.resident("text-offload") == 60
    assert fp8.resident("fp8") == weights.resident("fp8") == 60  # already float8: not halved again


def test_a_device_without_float8_matmuls_is_refused_naming_the_flag(monkeypatch):
    assert fp8_kernel_for(torch.device("cpu")) == "scaled_mm"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(ModelError) as info:
        fp8_kernel_for(torch.device("cuda"))
    assert info.value.field == "fp8_compute" and "--fp8-compute" in info.value.message and "8.0" in info.value.message
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert fp8_kernel_for(torch.device("cuda")) == "scaled_mm"
    with pytest.raises(ModelError, match="--fp8-compute"):
        fp8_kernel_for(torch.device("meta"))
