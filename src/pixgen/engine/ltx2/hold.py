"""Hold one modality's clean latents fixed while diffusers' LTX-2 pipelines denoise the other.

What Lightricks' reference does (``ltx_pipelines.a2vid_two_stage``, its ``ModalitySpec(frozen=True,
noise_scale=0.0, initial_latent=...)``; Dub-It's stage 2 the same for its audio): the held stream starts from its
clean latents, its denoise mask is 0 (so its per-token timesteps are 0 and the sampler leaves it as it is) and its
modality sigma is forced to 0 too (the prompt AdaLN of LTX-2.3 and, with cross timesteps, the other stream's
cross-modal gates see a clean stream). The reference holds the audio in both stages of a2vid, with each stage's own
sigmas for the video (stage 1: the scheduler's; stage 2: the distilled ones); nothing else changes.

diffusers' pipelines have no such switch, but their transformer takes each stream's input and timesteps apart
(``hidden_states`` / ``timestep`` / ``sigma`` for video, ``audio_hidden_states`` / ``audio_timestep`` /
``audio_sigma`` for audio). So rather than fork the pipelines, ``holding`` puts a forward pre-hook on the shared
transformer for one denoising call: at every transformer call (each step, each guidance pass) it replaces the held
stream's tokens with the clean ones and its timestep and sigma with zeros. The pipeline still steps its own copy of
the held latents with what the model predicts for them; that copy never reaches the model again and is thrown away:
the caller takes ``Hold.latents`` instead (``Hold.take``).

Use::

    hold = hold_audio(pipe, audio_latents)        # or hold_video(pipe, video_latents)
    with holding(pipe.transformer, hold) as held:
        video, audio = pipe(..., output_type="latent", return_dict=False)
    video, audio = hold.take(video, audio)        # the held stream's clean latents back
    assert held.calls > 0

``hold`` may be ``None`` (nothing held): the same code path serves ordinary jobs. The hook is a pre-hook on the
module (``prepend=True``), so it runs before anything wrapped into ``forward`` (memory-mode hooks, the parallel
forward, the step cache) and every rank of a group applies it alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

Modality = Literal["audio", "video"]


@dataclass(frozen=True)
class Hold:
    """One stream's clean latents: ``latents`` as the pipelines take and return them (denormalized, unpacked:
    audio ``(1, C, L, M)``, video ``(1, C, F, H, W)``), ``tokens`` as the transformer sees them (normalized,
    packed: ``(1, N, D)``, float32)."""

    modality: Modality
    latents: torch.Tensor
    tokens: torch.Tensor

    def take(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A pipeline's ``(video, audio)`` latents with the held stream's replaced by its clean latents."""
        if self.modality == "audio":
            return video, self.latents.to(audio.device, audio.dtype)
        return self.latents.to(video.device, video.dtype), audio


def hold_audio(pipe: Any, latents: torch.Tensor) -> Hold:
    """Hold the audio latents ``latents`` (denormalized, ``(1, C, L, M)``: the audio VAE's mean) fixed; ``pipe`` is
    any LTX-2 pipeline (its static packing and the audio VAE's statistics)."""
    if latents.ndim != 4:
        raise ValueError(f"audio latents to hold must be (1, C, L, M), got {tuple(latents.shape)}")
    vae = pipe.audio_vae
    tokens = pipe._normalize_audio_latents(pipe._pack_audio_latents(latents.float()), vae.latents_mean,
                                           vae.latents_std)
    return Hold("audio", latents, tokens)


def hold_video(pipe: Any, latents: torch.Tensor) -> Hold:
    """Hold the video latents ``latents`` (denormalized, ``(1, C, F, H, W)``, as a pipeline returns them with
    ``output_type="latent"``) fixed."""
    if latents.ndim != 5:
        raise ValueError(f"video latents to hold must be (1, C, F, H, W), got {tuple(latents.shape)}")
    vae = pipe.vae
    normalized = pipe._normalize_latents(latents.float(), vae.latents_mean, vae.latents_std,
                                         vae.config.scaling_factor)
    tokens = pipe._pack_latents(normalized, pipe.transformer_spatial_patch_size,
                                pipe.transformer_temporal_patch_size)
    return Hold("video", latents, tokens)


@dataclass
class Held:
    """What one ``holding`` block did: the transformer calls it held the stream at."""

    calls: int = 0


@contextmanager
def holding(transformer: torch.nn.Module, hold: Hold | None) -> Iterator[Held]:
    """For the block's duration, every call of ``transformer`` sees ``hold``'s stream clean at timestep 0 and
    sigma 0. Nothing is done when ``hold`` is None."""
    held = Held()
    if hold is None:
        yield held
        return

    def pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:  # diffusers' pipelines call it by keyword only; a positional call would dodge the hold
            raise TypeError("holding: the transformer must be called with keyword arguments")
        held.calls += 1
        return args, _held_kwargs(hold, kwargs)

    handle = transformer.register_forward_pre_hook(pre_hook, with_kwargs=True, prepend=True)
    try:
        yield held
    finally:
        handle.remove()


def _held_kwargs(hold: Hold, kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    timestep: torch.Tensor = kwargs["timestep"]
    batch = timestep.shape[0]
    sigma = kwargs.get("sigma")
    zero = torch.zeros((batch,), dtype=timestep.dtype, device=timestep.device)
    if hold.modality == "audio":
        current = kwargs["audio_hidden_states"]
        kwargs["audio_hidden_states"] = _clean(hold.tokens, current, "audio")
        kwargs["audio_timestep"] = zero
        kwargs["audio_sigma"] = zero if sigma is None else torch.zeros_like(sigma)
    else:
        current = kwargs["hidden_states"]
        kwargs["hidden_states"] = _clean(hold.tokens, current, "video")
        # The audio stream's timestep and sigma default to the video's inside the transformer: give them the
        # step's own before the video's become zeros.
        if kwargs.get("audio_timestep") is None:
            kwargs["audio_timestep"] = timestep if timestep.ndim == 1 else timestep.amax(dim=1)
        if kwargs.get("audio_sigma") is None and sigma is not None:
            kwargs["audio_sigma"] = sigma
        kwargs["timestep"] = torch.zeros_like(timestep)
        if sigma is not None:
            kwargs["sigma"] = torch.zeros_like(sigma)
    return kwargs


def _clean(tokens: torch.Tensor, current: torch.Tensor, what: str) -> torch.Tensor:
    """The clean tokens in the shape, dtype and device of the call's (its batch: CFG's two, STG's one)."""
    if current.shape[1:] != tokens.shape[1:]:
        raise ValueError(f"holding the {what}: the transformer got {tuple(current.shape[1:])} tokens, the held "
                         f"latents are {tuple(tokens.shape[1:])} (a reference appended to the stream cannot be held)")
    return tokens.to(current.device, current.dtype).expand(current.shape[0], -1, -1)
