"""Streaming decode matches the VAE's own temporal tiling; the MP4 writer's audio fitting and frame checks, and its
background encoder (``--overlap``) writing the serial writer's bytes."""

import dataclasses

import numpy as np
import pytest
import torch

from pixgen.media.mp4 import Mp4Writer, fit_audio
from pixgen.media.probe import probe, read_frames


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLLTX2Video

    from pixgen.engine import resolve_model_dir

    return AutoencoderKLLTX2Video.from_pretrained(resolve_model_dir("tiny"), subfolder="vae").eval()


@pytest.mark.parametrize("latent_frames,size", [(4, (3, 4)), (13, (2, 3))])
def test_streamed_decode_equals_the_vaes_temporal_tiled_decode(vae, latent_frames, size, monkeypatch):
    from pixgen.engine.ltx2 import decode

    monkeypatch.setattr(decode, "plan_tiles", lambda vae, h, w: (16, 8))
    torch.manual_seed(0)
    latents = torch.randn(1, 8, latent_frames, *size)
    with torch.no_grad():
        streamed = torch.cat(list(decode.iter_decode(vae, latents, dtype=torch.float32)), dim=2)
        vae.use_framewise_decoding, vae.use_tiling = True, False
        vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = 16, 8
        reference = vae.decode(latents, return_dict=False)[0]
        vae.use_framewise_decoding = False
    assert streamed.shape == reference.shape == (1, 3, (latent_frames - 1) * 8 + 1, size[0] * 32, size[1] * 32)
    torch.testing.assert_close(streamed, reference)


def test_spatial_and_temporal_tiles_equal_the_vaes_tiled_decode(vae, monkeypatch):
    from pixgen.engine.ltx2 import decode

    monkeypatch.setattr(decode, "plan_tiles", lambda vae, h, w: (24, 16))
    monkeypatch.setattr(decode, "SPATIAL_TILE", 128)
    monkeypatch.setattr(decode, "SPATIAL_TILING_ABOVE", 128)
    monkeypatch.setattr(decode, "SPATIAL_OVERLAP", 32)
    torch.manual_seed(1)
    # 192x160 samples: 2x2 spatial tiles of 128 (stride 96) with ragged edges, the last blending the tile above it
    # and the one on its left; 33 frames: two temporal tiles of 24 (stride 16), the second ragged
    latents = torch.randn(1, 8, 5, 6, 5)
    state = (vae.use_framewise_decoding, vae.use_tiling, vae.tile_sample_min_height, vae.tile_sample_min_width,
             vae.tile_sample_stride_height, vae.tile_sample_stride_width, vae.tile_sample_min_num_frames,
             vae.tile_sample_stride_num_frames)
    try:
        with torch.no_grad():
            streamed = torch.cat(list(decode.iter_decode(vae, latents, dtype=torch.float32)), dim=2)
            half = torch.cat(list(decode.iter_decode(vae, latents)), dim=2)
            vae.use_framewise_decoding = vae.use_tiling = True
            vae.tile_sample_min_height = vae.tile_sample_min_width = 128
            vae.tile_sample_stride_height = vae.tile_sample_stride_width = 96
            vae.tile_sample_min_num_frames, vae.tile_sample_stride_num_frames = 24, 16
            reference = vae.decode(latents, return_dict=False)[0]
    finally:
        (vae.use_framewise_decoding, vae.use_tiling, vae.tile_sample_min_height, vae.tile_sample_min_width,
         vae.tile_sample_stride_height, vae.tile_sample_stride_width, vae.tile_sample_min_num_frames,
         vae.tile_sample_stride_num_frames) = state
    assert streamed.shape == reference.shape == (1, 3, 33, 192, 160)
    torch.testing.assert_close(streamed, reference)
    # the default half-precision buffers: the same frames to within one 8-bit level
    assert half.dtype == torch.float16
    whole = decode.Crop(0, 0, 160, 192)
    frames_half = decode.to_uint8_frames(half, whole).astype(int)
    frames_full = decode.to_uint8_frames(reference, whole).astype(int)
    assert np.abs(frames_half - frames_full).max() <= 1
    assert (frames_half != frames_full).mean() < 0.02  # measured: 0.6 %


def test_tiles_are_bounded_for_large_frames(vae):
    from pixgen.engine.ltx2.decode import plan_tiles

    small_tile, _ = plan_tiles(vae, 352, 640)
    big_tile, big_stride = plan_tiles(vae, 1088, 2496)
    assert big_tile < small_tile and big_tile % 8 == 0 and big_stride == big_tile - 8


def test_fit_audio_cuts_and_pads_to_the_exact_length():
    x = np.ones((2, 1000), np.float32)
    assert fit_audio(x, 100, 5.0).shape == (2, 500)
    padded = fit_audio(x, 100, 12.5)
    assert padded.shape == (2, 1250) and padded[:, 1000:].sum() == 0


def test_writer_round_trips_frames_and_refuses_wrong_shapes(tmp_path):
    frames = np.zeros((10, 64, 96, 3), np.uint8)
    frames[:, :, :48] = 200
    with Mp4Writer(tmp_path / "w.mp4", 96, 64, crf=0) as w:
        with pytest.raises(ValueError):
            w.write_frames(np.zeros((1, 64, 90, 3), np.uint8))
        w.write_frames(frames)
    back = read_frames(tmp_path / "w.mp4")
    assert back.shape == (10, 64, 96, 3)
    assert abs(int(back[:, :, :40].mean()) - 200) <= 3 and int(back[:, :, 56:].mean()) <= 3
    assert probe(tmp_path / "w.mp4").audio_codec is None


def test_writer_abort_removes_the_partial_file(tmp_path):
    with pytest.raises(RuntimeError), Mp4Writer(tmp_path / "a.mp4", 64, 64) as w:
        w.write_frames(np.zeros((3, 64, 64, 3), np.uint8))
        raise RuntimeError("boom")
    assert not (tmp_path / "a.mp4").exists()


def test_the_background_encoder_writes_the_serial_writers_bytes(tmp_path):
    """``--overlap``: the same container calls in the same order, on the encoder's thread: the same file."""
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (n, 64, 96, 3), dtype=np.uint8) for n in (9, 8, 8)]
    audio = rng.uniform(-0.5, 0.5, (2, 24000)).astype(np.float32)
    paths = {}
    for background in (False, True):
        path = paths[background] = tmp_path / f"{background}.mp4"
        with Mp4Writer(path, 96, 64, audio_sample_rate=24000, background=background) as writer:
            writer.write_audio(audio)
            for chunk in chunks:
                writer.write_frames(chunk)
            assert writer.frames_written == 25
    assert paths[True].read_bytes() == paths[False].read_bytes()


def test_the_same_frames_and_sound_make_the_same_file_every_time(tmp_path):
    """A seed gives the same video every time: 360 px frames (not a multiple of 16) through libx264's AVX2 code
    made a different file now and then (in ~3 processes of 5, within 48 encodes); held to its AVX code, none."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (25, 360, 360, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (2, 24000)).astype(np.float32)
    files = set()
    for i in range(24):
        with Mp4Writer(tmp_path / f"{i}.mp4", 360, 360, audio_sample_rate=24000) as writer:
            writer.write_audio(audio)
            writer.write_frames(frames)
        files.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(files) == 1


def test_the_background_encoders_failure_reaches_the_caller_and_abort_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    writer = Mp4Writer(path, 96, 64, background=True)

    def fail() -> None:
        raise OSError("disk full")

    writer._run(fail)  # the encoder thread's work, failing as a full disk would
    with pytest.raises(RuntimeError, match="disk full"):
        for _ in range(50):  # raised at a later put, once the thread has run it
            writer.write_frames(np.zeros((1, 64, 96, 3), np.uint8))
    writer.abort()
    assert not path.exists()


def test_an_overlapped_job_writes_the_same_file_as_a_serial_one(tmp_path, monkeypatch):
    """The decode and the encoder on two threads: frames and audio byte for byte those of the serial path (the
    whole MP4 is), with the decode cut into several temporal tiles so that chunks really queue."""
    from pixgen.core.spec import parse_request
    from pixgen.engine import load_engine
    from pixgen.engine.ltx2 import decode

    monkeypatch.setattr(decode, "plan_tiles", lambda vae, h, w: (16, 8))
    chunks = []
    original = Mp4Writer.write_frames
    monkeypatch.setattr(Mp4Writer, "write_frames", lambda self, f: (chunks.append(len(f)), original(self, f))[1])
    engine = load_engine("tiny")
    request = parse_request({"prompt": "a red kite over a beach", "duration": 2, "quality": "360p", "seed": 3,
                             "thinking_type": "disabled"})
    a = engine.generate(request, tmp_path / "serial.mp4")
    chunks.clear()
    # as loaded with --overlap: the option is read when a job opens its writer (one load instead of two)
    engine.options = dataclasses.replace(engine.options, overlap=True)
    b = engine.generate(request, tmp_path / "overlap.mp4")
    assert len(chunks) >= 5 and sum(chunks) == b.num_frames == a.num_frames == 49
    assert {"decode", "encode"} <= set(b.timings.as_dict())
    assert b.path.read_bytes() == a.path.read_bytes()
