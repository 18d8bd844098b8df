"""Automatic duration (``duration: "auto"``): LTX-2.5's duration head chooses the video's length from the prompt.

An LTX-2.5 folder carries ``duration_head/``: diffusers' ``LTX2DurationHead`` (loaded with the pipeline as its
``duration_head`` component). It reads the text connectors' outputs for the prompt (video and audio streams), pools
them with one learned query and predicts seconds; its ``predict_num_frames`` clamps them to the bounds and snaps them
to the VAE's causal grid (8k+1 frames), as ``LTX2Pipeline`` does itself when called without ``num_frames``.

pixgen runs the head itself, on the prompt as used (after thinking and presets) and before anything else is planned,
because the frame count fixes the sound's length, the progress total and the writer; the pipelines are then called
with that count, exactly as for a duration given in seconds. The bounds are the backend's durations (1–15 s), not
diffusers' default (1–20 s). The head's prediction is deterministic: the same prompt gives the same length.
"""

from __future__ import annotations

import torch

from pixgen.core.sizes import FPS


def has_duration_head(pipe) -> bool:
    """Whether the pipeline was loaded with a duration head (an LTX-2.5 folder)."""
    return getattr(pipe, "duration_head", None) is not None


@torch.no_grad()
def choose_frames(pipe, prompt_embeds: torch.Tensor, prompt_attention_mask: torch.Tensor, *,
                  seconds: tuple[int, int]) -> int:
    """The frame count (8k+1) the folder's duration head gives the prompt whose text-encoder embeddings (the
    positive prompt's alone) are ``prompt_embeds``, within ``seconds`` (lowest, highest)."""
    padding_side = getattr(getattr(pipe, "tokenizer", None), "padding_side", "left")
    video_tokens, audio_tokens, _ = pipe.connectors(prompt_embeds[:1], prompt_attention_mask[:1],
                                                    padding_side=padding_side)
    return int(pipe.duration_head.predict_num_frames(
        video_tokens, audio_tokens, frame_rate=float(FPS),
        temporal_compression_ratio=pipe.vae_temporal_compression_ratio,
        min_seconds=float(seconds[0]), max_seconds=float(seconds[1])))
