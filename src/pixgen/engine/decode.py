"""Streaming video decode: latents → frames, a temporal tile at a time, spatial tiles written in place.

The VAE's own tiling (``AutoencoderKLLTX2Video._temporal_tiled_decode`` / ``tiled_decode``) holds every decoded
frame as float32 before returning (361 frames of 2520×1080 is ~12 GB), and concatenates spatial tiles through
two intermediate copies. This is the same tiling and the same blending (the VAE's ``blend_t/v/h``), but:
each temporal tile's finished frames are yielded as soon as the next tile is blended in; only the overlap strips
of neighbouring tiles are kept; spatial tiles are written straight into one preallocated tile-sized buffer.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

# Decoded samples (frames × pixels) one temporal tile may hold; bounds memory for any duration and size.
TILE_PIXEL_FRAMES = 48 * 1280 * 736
# Frames wider or taller than this decode in overlapping spatial tiles of SPATIAL_TILE px: at 1080p the decoder's
# own activations for a whole frame, not the frames kept, are what would push a job past 3 GB.
SPATIAL_TILING_ABOVE = 1280
SPATIAL_TILE = 512
SPATIAL_OVERLAP = 64


def plan_tiles(vae, height: int, width: int) -> tuple[int, int]:
    """Sample frames per temporal tile and per stride, multiples of the VAE's temporal ratio, for a frame size."""
    ratio = vae.temporal_compression_ratio
    frames = TILE_PIXEL_FRAMES // max(1, height * width)
    tile = int(min(64, max(2 * ratio, frames // ratio * ratio)))
    return tile, tile - ratio


@torch.no_grad()
def iter_decode(vae, latents: torch.Tensor, temb: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield decoded video (B, C, f, H, W) in [-1, 1], in order, covering ``(F-1)·ratio + 1`` frames in all."""
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
        decoded = decode_spatially(vae, latents[:, :, start : start + tile_latent + 1], temb)
        if start > 0:
            decoded = decoded[:, :, :-1]
            out = vae.blend_t(tail, decoded, blend)[:, :, :stride_frames]
        else:
            out = decoded[:, :, : stride_frames + 1]
        tail = decoded[:, :, -blend:].clone()
        out = out[:, :, : total - emitted]
        if out.shape[2]:
            emitted += out.shape[2]
            yield out
        if emitted >= total:
            break


def decode_spatially(vae, z: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
    """``vae.tiled_decode`` for frames over ``SPATIAL_TILING_ABOVE`` px, written into one buffer; else one call."""
    spatial = vae.spatial_compression_ratio
    height, width = z.shape[-2] * spatial, z.shape[-1] * spatial
    if height <= max(SPATIAL_TILE, SPATIAL_TILING_ABOVE) and width <= max(SPATIAL_TILE, SPATIAL_TILING_ABOVE):
        return vae.decoder(z, temb)
    tile, stride = SPATIAL_TILE, SPATIAL_TILE - SPATIAL_OVERLAP
    lat_tile, lat_stride = tile // spatial, stride // spatial
    out = None
    above: dict[int, torch.Tensor] = {}  # bottom strips of the row above, by column
    for i in range(0, z.shape[-2], lat_stride):
        left = None  # right strip of the tile to the left
        row: dict[int, torch.Tensor] = {}
        for j in range(0, z.shape[-1], lat_stride):
            piece = vae.decoder(z[..., i : i + lat_tile, j : j + lat_tile], temb)
            if out is None:
                out = piece.new_empty(*piece.shape[:3], height, width)
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
    return out


CONVERT_FRAMES = 4  # frames converted at once: float temporaries at 2520×1080 are 33 MB a frame


def to_uint8_frames(video: torch.Tensor, width: int, height: int) -> np.ndarray:
    """(1, C, f, H, W) in [-1, 1] → uint8 (f, height, width, 3), resized exactly to the output size.

    A few frames at a time and in place, so no full-chunk float temporaries exist besides ``video`` itself."""
    count = video.shape[2]
    out = np.empty((count, height, width, 3), np.uint8)
    for start in range(0, count, CONVERT_FRAMES):
        frames = video[0, :, start : start + CONVERT_FRAMES].permute(1, 0, 2, 3).float()  # f, C, H, W
        if frames.shape[-2:] != (height, width):
            frames = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False,
                                   antialias=True)
        else:
            frames = frames.clone()
        frames.clamp_(-1, 1).add_(1).mul_(127.5).round_()
        out[start : start + CONVERT_FRAMES] = frames.permute(0, 2, 3, 1).to(torch.uint8).numpy()
    return out
