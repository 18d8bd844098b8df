"""Peak RSS of the streaming decode + encode alone, at 2520×1080, for a given number of seconds.

    .venv/bin/python bench/decode_rss.py --seconds 2

Random latents of the 21:9 1080p shape go through the same ``stream_frames → Mp4Writer`` path as a
job. Memory is bounded by tiles, not by duration, so a short clip shows the same peak as 15 s in minutes instead of
the hour the toy model's full-size refine takes on 2 CPU cores (``engine_bench.py`` runs that whole job).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import vm_hwm_bytes

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=2)
    args = parser.parse_args()
    import torch
    from diffusers import AutoencoderKLLTX2Video

    from pixgen.core.sizes import grid_size, num_frames
    from pixgen.engine import resolve_model_dir
    from pixgen.engine.ltx2.decode import stream_frames
    from pixgen.media.mp4 import Mp4Writer

    vae = AutoencoderKLLTX2Video.from_pretrained(resolve_model_dir("tiny"), subfolder="vae").eval()
    width, height = 2520, 1080
    gw, gh = grid_size(width // 2, height // 2)
    frames = num_frames(args.seconds)
    latents = torch.randn(1, 8, (frames - 1) // 8 + 1, gh * 2 // 32, gw * 2 // 32,
                          generator=torch.Generator().manual_seed(0))
    base = vm_hwm_bytes()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        with Mp4Writer(Path(tmp) / "d.mp4", width, height) as writer:
            for frames in stream_frames(vae, latents, None, width, height):
                writer.write_frames(frames)
                del frames
        written = writer.frames_written
    print(json.dumps({"size": f"{width}x{height}", "frames": written, "seconds": round(time.perf_counter() - t0, 1),
                      "peak_rss_gib": round(vm_hwm_bytes() / 2**30, 3),
                      "peak_rss_before_decode_gib": round(base / 2**30, 3)}))


if __name__ == "__main__":
    main()
