"""What a GPU job needs, checked on a CPU: the weights keep their dtype through the engine's build and a whole job,
decoded frames leave the device only through the explicit host copy, a LoRA loaded by one job works for the next,
every worker of ``serve`` gets its own GPU, and the generation grid covers the output without stretching it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES, output_size
from pixgen.core.spec import parse_request
from pixgen.engine.ltx2.geometry import plan_geometry
from pixgen.errors import InvalidRequest
from pixgen.media.probe import probe

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def request(**fields):
    return parse_request({"prompt": "a red kite over a beach", "duration": 1, "quality": "360p", "seed": 3,
                          "thinking_type": "disabled", **fields})


# -- dtype -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_engine():
    from pixgen.engine import load_engine

    return load_engine("tiny", dtype="bfloat16")


def dtypes(engine) -> dict[str, torch.dtype]:
    return {name: {p.dtype for p in module.parameters()} for name, module in engine.pipes.modules.items()}


def test_a_bfloat16_load_stays_bfloat16_once_the_engine_is_built(bf16_engine):
    """diffusers' from_pipe (used before) cast every shared module to float32 in place: 2x the memory on a GPU."""
    from pixgen.engine.ltx2.loading import video_vae_dtype

    own = {"vocoder": torch.float32, "vae": video_vae_dtype(torch.bfloat16, bf16_engine.device)}
    expected = {name: {own.get(name, torch.bfloat16)} for name in dtypes(bf16_engine)}
    assert dtypes(bf16_engine) == expected  # the vocoder runs in float32, as the reference forces
    assert bf16_engine.dtype == torch.bfloat16
    pipes = bf16_engine.pipes
    shared = {id(p.transformer) for p in (pipes.text, pipes.image, pipes.condition)}
    assert len(shared) == 1  # one transformer behind every route, not copies


def test_the_video_vae_leaves_half_precision_only_on_a_cpu_without_fast_half_precision_convolutions():
    from pixgen.engine.ltx2.loading import video_vae_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for half in (torch.bfloat16, torch.float16):
        assert video_vae_dtype(half, gpu) == half  # a GPU: the worker's dtype, always
    assert video_vae_dtype(torch.float32, cpu) == torch.float32
    fast_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # AVX512-BF16 or AMX
    assert video_vae_dtype(torch.bfloat16, cpu) == (torch.bfloat16 if fast_bf16 else torch.float32)


@pytest.mark.parametrize("fields", [{}, {"two_stage": True, "generate_audio": False},
                                    {"image_input": "start", "end_image_input": "end"}])
def test_a_whole_job_runs_in_bfloat16(bf16_engine, tmp_path, monkeypatch, fields):
    """The two-stage case runs what a 1080p job runs after stage 1 (the latent upsampler, stage 2, the decode in
    spatial and temporal tiles), at 360p: 360p made a two-stage quality and the decode's tiles made small enough
    that 640x384 is cut into them (a 1080p job on the toy costs ~15x the CPU time, new shapes mostly)."""
    from pixgen.engine.ltx2 import decode
    from tests.test_engine_stages import image_uri

    fields = dict(fields)
    two_stage = fields.pop("two_stage", False)
    tiles = []
    if two_stage:
        monkeypatch.setattr(bf16_engine, "recipe", bf16_engine.recipe.with_overrides({"two_stage_qualities": ["360p"]}))
        monkeypatch.setattr(decode, "SPATIAL_TILING_ABOVE", 512)  # 640 px wide: tiles of 512 px across
        monkeypatch.setattr(decode, "TILE_PIXEL_FRAMES", 16 * 640 * 384)  # 16-frame temporal tiles
        decode_tile = decode.decode_tile
        monkeypatch.setattr(decode, "decode_tile", lambda vae, z, temb: (tiles.append(z.shape), decode_tile(
            vae, z, temb))[1])
    fields = {k: image_uri(i) if v in ("start", "end") else v for i, (k, v) in enumerate(fields.items())}
    result = bf16_engine.generate(request(**fields), tmp_path / "bf16.mp4")
    facts = probe(result.path)
    assert (facts.width, facts.height, facts.num_frames) == (*output_size("16:9", result.quality), 25)
    assert dtypes(bf16_engine)["transformer"] == {torch.bfloat16}  # nothing was upcast along the way
    assert result.two_stage == two_stage
    if two_stage:  # tiled across and in time: more than one width and more than one length of tile
        assert len({shape[-1] for shape in tiles}) > 1 and len({shape[2] for shape in tiles}) > 1, tiles


def test_pixgen_generate_takes_a_dtype(tmp_path):
    from cli_tools import pixgen

    out = tmp_path / "cli.mp4"
    proc = pixgen("generate", "a lighthouse", "--duration", "1", "--quality", "360p", "--seed", "1", "--dtype",
                  "bfloat16", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "640x360, 25 frames" in proc.stdout and "recipe ltx-2.0-dev" in proc.stdout and out.is_file()
    bad = pixgen("generate", "x", "--dtype", "int8", "-o", str(tmp_path / "x.mp4"))
    assert bad.returncode == 2 and "dtype" in bad.stderr


# -- decode on a device ----------------------------------------------------------------------------------------
def test_decoded_frames_leave_the_device_only_through_the_host_copy():
    """On ``meta`` tensors hold no data, like a GPU's hold none the host can read: the decode must run there up to
    the one explicit host copy (before, it called ``.numpy()`` on the device tensor: "can't convert")."""
    from diffusers import AutoencoderKLLTX2Video

    from pixgen.engine import resolve_model_dir
    from pixgen.engine.ltx2 import decode

    vae = AutoencoderKLLTX2Video.from_pretrained(resolve_model_dir("tiny"), subfolder="vae").eval()
    meta_vae = copy.deepcopy(vae).to("meta")
    latents = torch.randn(1, 8, 2, 3, 4, device="meta")
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor") as info:
        next(decode.stream_frames(meta_vae, latents, None, decode.Crop(0, 0, 128, 96)))
    assert any(entry.name == "_to_host" for entry in info.traceback)


def test_host_copies_are_exact_on_the_cpu():
    from pixgen.engine.ltx2.decode import Crop, to_uint8_frames

    video = torch.linspace(-1.5, 1.5, 3 * 5 * 6 * 7).reshape(1, 3, 5, 6, 7)
    before = video.clone()
    frames = to_uint8_frames(video, Crop(1, 2, 5, 3))
    assert torch.equal(video, before)  # the decoder's buffer is read, not changed
    expected = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0, :, :, 2:5, 1:6].permute(1, 2, 3, 0)
    assert frames.shape == (5, 3, 5, 3) and np.array_equal(frames, expected.numpy())


# -- LoRAs -----------------------------------------------------------------------------------------------------
def test_a_preset_lora_first_loaded_by_extend_works_for_every_later_generate(toy_variant, tmp_path):
    """It used to be loaded under torch.inference_mode: the next generate failed in enable_lora()."""
    from pixgen.engine import load_engine
    from pixgen.engine.presets import STYLES
    from tests.test_engine_stages import lora_file
    from tests.test_extend import write_source

    folder = toy_variant("ltx-2.0-dev", {"num_inference_steps": 2})
    (folder / "loras").mkdir(exist_ok=True)  # the toy ships one (its IC-LoRA)
    (folder / "loras" / STYLES["anime"].lora).write_bytes(lora_file())
    engine = load_engine(str(folder))
    source = write_source(tmp_path / "src.mp4", frames=9, width=640, height=360)  # any MP4: no job of this engine
    extended = engine.extend(source, request(style="anime"), tmp_path / "ext.mp4")
    assert extended.loras == ("style_anime",)
    again = engine.generate(request(style="anime"), tmp_path / "again.mp4")
    assert again.loras == ("style_anime",) and probe(again.path).num_frames == 25


# -- one GPU per worker ----------------------------------------------------------------------------------------
def fake_nvidia_smi(tmp_path, count: int) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    lines = "".join(f"echo 'GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d})'\n" for i in range(count))
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{lines}")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_visible_gpus_come_from_cuda_visible_devices_or_nvidia_smi(tmp_path):
    from pixgen.jobs.gpus import visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3", **fake_nvidia_smi(tmp_path, 8)}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]  # CUDA stops at the first invalid id
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus(fake_nvidia_smi(tmp_path, 3)) == ["0", "1", "2"]
    assert visible_gpus({"PATH": str(tmp_path / "nowhere")}) == []  # no driver: CPU workers


def test_more_workers_than_gpus_is_refused_unless_shared():
    from pixgen.jobs.gpus import assign_gpus

    assert assign_gpus(2, ["0", "1"], share=False) == ["0", "1"]
    assert assign_gpus(3, [], share=False) == [None, None, None]  # no GPU at all: CPU workers, any number
    with pytest.raises(InvalidRequest) as info:
        assign_gpus(3, ["0", "1"], share=False)
    assert info.value.field == "workers" and "--share-gpus" in info.value.message
    assert assign_gpus(3, ["0", "1"], share=True) == ["0", "1", "0"]


def test_each_serve_worker_process_runs_with_its_own_gpu(tmp_path):
    """Real worker processes from the supervisor: each one's environment names a different GPU."""
    from pixgen.jobs.supervisor import Supervisor
    from pixgen.settings import load_settings

    settings = load_settings({"data_dir": str(tmp_path / "data"), "gpus": "0,1", "workers": 2}, environ={})
    supervisor = Supervisor(settings, 2)
    supervisor.start()
    try:
        seen = {}
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            for slot, proc in enumerate(supervisor._procs):
                if proc is not None and proc.poll() is None:
                    with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                        pairs = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
                    seen[slot] = (pairs.get(b"CUDA_VISIBLE_DEVICES"), pairs.get(b"CUDA_DEVICE_ORDER"))
            time.sleep(0.2)
    finally:
        supervisor.stop()
    assert seen == {0: (b"0", b"PCI_BUS_ID"), 1: (b"1", b"PCI_BUS_ID")}


def test_serve_refuses_more_workers_than_gpus_before_starting(tmp_path):
    env = {**os.environ, **fake_nvidia_smi(tmp_path, 1)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "pixgen", "serve", "--workers", "2", "--port", "0", "--data-dir",
                           str(tmp_path / "d")], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and "(workers)" in proc.stderr and "1 GPU" in proc.stderr


# -- geometry --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("two_stage", [False, True])
def test_the_generation_grid_covers_every_output_size_and_is_cropped_not_stretched(two_stage):
    unit = 64 if two_stage else 32
    for ratio in ASPECT_RATIOS:
        for quality in QUALITIES:
            width, height = output_size(ratio, quality)
            g = plan_geometry(width, height, two_stage=two_stage)
            assert g.gen_width % unit == 0 and g.gen_height % unit == 0
            assert width <= g.gen_width < width + unit and height <= g.gen_height < height + unit
            assert g.left + width <= g.gen_width and g.top + height <= g.gen_height
            w1, h1 = g.stage_one_size
            assert w1 % 32 == 0 and h1 % 32 == 0 and (w1 * (2 if two_stage else 1), h1 * (2 if two_stage else 1)) \
                == g.full_size


def test_a_condition_image_is_the_fitted_image_at_the_centre_of_the_grid():
    from PIL import Image

    from pixgen.media.images import fit_to_size

    g = plan_geometry(720, 1080, two_stage=False)  # 2:3 720p: 736x1088 covers it
    assert g.full_size == (736, 1088) and (g.left, g.top) == (8, 4)
    pixels = (np.random.default_rng(0).random((900, 700, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    framed = np.asarray(g.condition_image(image, g.full_size))
    fitted = np.asarray(fit_to_size(image, 720, 1080))
    assert framed.shape == (1088, 736, 3)
    assert np.array_equal(framed[4:1084, 8:728], fitted)  # exactly the image as the contract fits it
    assert np.array_equal(framed[:4, 8:728], fitted[3::-1])  # the border mirrors its edge
