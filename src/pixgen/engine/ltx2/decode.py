"""Streaming video decode: latents → frames, a temporal tile at a time, spatial tiles written in place.

The VAE's own tiling (``AutoencoderKLLTX2Video._temporal_tiled_decode`` / ``tiled_decode``) holds every decoded
frame as float32 before returning (361 frames of 2520×1080 is ~12 GB), and concatenates spatial tiles through
two intermediate copies. This is the same tiling and the same blending (the VAE's ``blend_t/v/h``), but:
each temporal tile's finished frames are yielded as soon as the next tile is blended in; only the overlap strips
of neighbouring tiles are kept; spatial tiles are written straight into one preallocated tile-sized buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

# Decoded samples (frames × pixels) one temporal tile may hold; bounds memory for any duration and size.
TILE_PIXEL_FRAMES = 48 * 1280 * 736
# Frames wider or taller than this decode in overlapping spatial tiles of SPATIAL_TILE px: at 1080p the decoder's
# own activations for a whole frame, not the frames kept, are what would push a job past 3 GB.
SPATIAL_TILING_ABOVE = 1280
SPATIAL_TILE = 512
SPATIAL_OVERLAP = 64
# The assembled tile and the overlap kept for the next one are stored in half precision: at 2520×1080 they are the
# largest buffers of a job (~850 MB in float32). The decoder itself still runs in its own dtype; float16's 11-bit
# mantissa is far finer than the 8-bit frames these become (tested: at most 1 level apart after conversion).
BUFFER_DTYPE = torch.float16


def plan_tiles(vae, height: int, width: int) -> tuple[int, int]:
    """Sample frames per temporal tile and per stride, multiples of the VAE's temporal ratio, for a frame size."""
    ratio = vae.temporal_compression_ratio
    frames = TILE_PIXEL_FRAMES // max(1, height * width)
    tile = int(min(64, max(2 * ratio, frames // ratio * ratio)))
    return tile, tile - ratio


@torch.no_grad()
def iter_decode(vae, latents: torch.Tensor, temb: torch.Tensor | None = None, *,
                dtype: torch.dtype = BUFFER_DTYPE) -> Iterator[torch.Tensor]:
    """Yield decoded video (B, C, f, H, W) in [-1, 1] as ``dtype``, in order, covering ``(F-1)·ratio + 1`` frames
    in all. With ``dtype`` the decoder's own, the result equals the VAE's own tiled decode exactly."""
    _, _, num_latent, latent_h, latent_w = latents.shape
    ratio = vae.temporal_compression_ratio
    height, width = latent_h * vae.spatial_compression_ratio, latent_w * vae.spatial_compression_ratio
    tile_frames, stride_frames = plan_tiles(vae, height, width)
    tile_latent, stride_latent = tile_frames // ratio, stride_frames // ratio
    blend = tile_frames - stride_frames
    total = (num_latent - 1) * ratio + 1

    emitted = 0
    tail = None  # the previous tile's last `blend` frames, all the next tile's blending reads
    for start in range(0, num_latent, stride_latent):
        decoded = decode_spatially(vae, latents[:, :, start : start + tile_latent + 1], temb, dtype)
        if start > 0:
            decoded = decoded[:, :, :-1]
            out = vae.blend_t(tail, decoded, blend)[:, :, :stride_frames]
        else:
            out = decoded[:, :, : stride_frames + 1]
        tail = decoded[:, :, -blend:].clone()
        out = out[:, :, : total - emitted]
        # Hold this tile only through ``out``, and drop that once the consumer is done with it: otherwise the
        # next tile is decoded while this one is still alive, two tile buffers at once (~570 MB each at 1080p).
        del decoded
        if out.shape[2]:
            emitted += out.shape[2]
            yield out
        del out
        if emitted >= total:
            break


def decode_spatially(vae, z: torch.Tensor, temb: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """``vae.tiled_decode`` for frames over ``SPATIAL_TILING_ABOVE`` px, written into one ``dtype`` buffer; else
    one call."""
    spatial = vae.spatial_compression_ratio
    height, width = z.shape[-2] * spatial, z.shape[-1] * spatial
    if height <= max(SPATIAL_TILE, SPATIAL_TILING_ABOVE) and width <= max(SPATIAL_TILE, SPATIAL_TILING_ABOVE):
        return decode_tile(vae, z, temb).to(dtype)
    tile, stride = SPATIAL_TILE, SPATIAL_TILE - SPATIAL_OVERLAP
    lat_tile, lat_stride = tile // spatial, stride // spatial
    out = None
    above: dict[int, torch.Tensor] = {}  # bottom strips of the row above, by column
    for i in range(0, z.shape[-2], lat_stride):
        left = None  # right strip of the tile to the left
        row: dict[int, torch.Tensor] = {}
        for j in range(0, z.shape[-1], lat_stride):
            piece = decode_tile(vae, z[..., i : i + lat_tile, j : j + lat_tile], temb)
            if out is None:
                out = piece.new_empty(*piece.shape[:3], height, width, dtype=dtype)
            if i > 0:
                piece = vae.blend_v(above[j], piece, SPATIAL_OVERLAP)
            if j > 0:
                piece = vae.blend_h(left, piece, SPATIAL_OVERLAP)
            row[j] = piece[..., -SPATIAL_OVERLAP:, :].clone()
            left = piece[..., -SPATIAL_OVERLAP:].clone()
            y, x = i * spatial, j * spatial
            h, w = min(stride, height - y), min(stride, width - x)
            out[..., y : y + h, x : x + w] = piece[..., :h, :w]
        above = row
    assert out is not None  # z has at least one tile
    return out


def decode_tile(vae, z: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
    """One tile through the VAE's public ``decode``: the call an offloading hook watches (``vae.decoder`` directly
    would run while the VAE is still in host memory). Its own tiling is off: the tiles are ours. Nothing is written
    to the VAE when it is off already (always, here): two threads may decode at once (``--overlap-jobs``)."""
    tiling, framewise = vae.use_tiling, vae.use_framewise_decoding
    if not (tiling or framewise):
        return vae.decode(z, temb, return_dict=False)[0]
    vae.use_tiling = vae.use_framewise_decoding = False
    try:
        return vae.decode(z, temb, return_dict=False)[0]
    finally:
        vae.use_tiling, vae.use_framewise_decoding = tiling, framewise


def stream_frames(vae, latents: torch.Tensor, temb: torch.Tensor | None, crop: Crop, *,
                  skip: int = 0, limit: int | None = None) -> Iterator[np.ndarray]:
    """The decoded video as uint8 frames (f, crop.height, crop.width, 3) on the host, a temporal tile at a time,
    without its first ``skip`` frames and ending after ``limit`` frames.

    Each float tile is released before the next one is decoded, and a consumer should drop each uint8 chunk
    before asking for the next: that, with the tiling, is what bounds a job's peak memory."""
    left = limit
    for chunk in iter_decode(vae, latents, temb):
        count = chunk.shape[2]
        start = min(skip, count)
        skip -= start
        stop = count if left is None else min(count, start + left)
        frames = to_uint8_frames(chunk[:, :, start:stop], crop) if stop > start else None
        del chunk
        if frames is not None:
            if left is not None:
                left -= stop - start
            yield frames
            del frames
        if left == 0:
            return


@dataclass(frozen=True)
class Crop:
    """The output's place in the decoded frames: ``width`` × ``height`` from (``left``, ``top``)."""

    left: int
    top: int
    width: int
    height: int


CONVERT_FRAMES = 4  # frames converted at once: float temporaries at 2520×1080 are 33 MB a frame


def to_uint8_frames(video: torch.Tensor, crop: Crop) -> np.ndarray:
    """(1, C, f, H, W) in [-1, 1] on any device → uint8 (f, crop.height, crop.width, 3) in host memory.

    Clamped first, then cropped and quantised like diffusers' ``postprocess_video`` + ``export_to_video``; the
    quantisation runs where the video is (the GPU), and only uint8 crosses to the host, a few frames at a time
    through a pinned buffer when the video is on an accelerator."""
    count = video.shape[2]
    out = np.empty((count, crop.height, crop.width, 3), np.uint8)
    host = _host_buffer(video.device, (CONVERT_FRAMES, crop.height, crop.width, 3))
    for start in range(0, count, CONVERT_FRAMES):
        frames = video[0, :, start : start + CONVERT_FRAMES, crop.top : crop.top + crop.height,
                       crop.left : crop.left + crop.width]
        # clamp (not clamp_) first: on a float32 video .float() is the caller's tensor itself
        frames = frames.float().clamp(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8).permute(1, 2, 3, 0)
        n = frames.shape[0]
        out[start : start + n] = _to_host(frames, None if host is None else host[:n])
    return out


def _host_buffer(device: torch.device, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A pinned staging buffer for copies from an accelerator (None on the CPU: nothing to copy)."""
    if device.type == "cpu":
        return None
    return torch.empty(shape, dtype=torch.uint8, pin_memory=device.type == "cuda")


def _to_host(frames: torch.Tensor, staging: torch.Tensor | None) -> np.ndarray:
    if staging is None:
        return frames.numpy()
    cuda = frames.device.type == "cuda"
    staging.copy_(frames, non_blocking=cuda)
    if cuda:
        torch.cuda.current_stream(frames.device).synchronize()  # the copy is asynchronous: wait before reading
    return staging.numpy()
