"""The toy LTX-2: byte-identical builds, loads with the real pipeline, cached once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest

from pixgen.engine.ltx2 import toy


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return toy.build_tiny_model(tmp_path_factory.mktemp("toy-a") / "model")


def test_build_is_byte_identical(built, tmp_path):
    import torch

    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    other = toy.build_tiny_model(tmp_path / "model")
    assert torch.equal(torch.rand(3), before), "the build must not disturb the caller's RNG"

    a, b = _files(built), _files(other)
    assert sorted(a) == sorted(b)
    assert {"model_index.json", "latent_upsampler/config.json", "pixgen.json"} <= set(a)
    for name in a:
        assert a[name] == b[name], name
    assert sum(len(v) for v in a.values()) < 24 * 1024 * 1024  # toy-sized: a few MB (the wide decoder is 15 MB)


def test_loads_and_generates(built):
    import torch
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(built)
    out = pipe(prompt="a cat walks in the rain", height=96, width=128, num_frames=25, num_inference_steps=2,
               output_type="np", max_sequence_length=toy.TOY_MAX_SEQUENCE_LENGTH, stg_scale=0.0,
               generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (1, 25, 96, 128, 3)
    assert out.frames.min() >= 0.0 and out.frames.max() <= 1.0
    audio = out.audio
    assert isinstance(audio, torch.Tensor)
    assert audio.ndim == 3 and audio.shape[:2] == (1, 2)
    # 25 frames at 24 fps ~ 1.04 s at the vocoder's 24 kHz
    assert abs(audio.shape[-1] - 25 / 24 * 24000) < 2400


def test_latent_upsampler_loads(built):
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    up = LTX2LatentUpsamplerModel.from_pretrained(built, subfolder="latent_upsampler")
    assert up.config.in_channels == 8


def test_tiny_model_dir_builds_once(tmp_path, monkeypatch):
    calls = []
    real_build = toy.build_tiny_model

    def counting_build(out_dir, generation="2.0"):
        calls.append(out_dir)
        return real_build(out_dir, generation)

    monkeypatch.setattr(toy, "build_tiny_model", counting_build)
    first = toy.tiny_model_dir(tmp_path)
    assert first == tmp_path / f"tiny-ltx2-{toy.TOY_VERSION}"
    stamp = (first / "model_index.json").stat().st_mtime_ns
    second = toy.tiny_model_dir(tmp_path)
    assert second == first
    assert (second / "model_index.json").stat().st_mtime_ns == stamp
    assert len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp folder left behind

    monkeypatch.setenv("PIXGEN_CACHE_DIR", str(tmp_path))
    assert toy.tiny_model_dir() == first
    assert len(calls) == 1


def test_cli_model_tiny(tmp_path, capsys):
    from pixgen.cli import main

    assert main(["model", "tiny", "--out", str(tmp_path / "m")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(last) == (tmp_path / "m").resolve()
    assert (Path(last) / "model_index.json").is_file()
