"""A given soundtrack (``VideoRequest.audio``): measured, fitted to the video, and encoded with the audio VAE.

``plan_soundtrack`` decodes the file twice, each time resampled once straight from its own samples (FFmpeg, in
``media/audio.py``): at the vocoder's rate for the MP4 (the sound the video carries, as given) and at the audio
VAE's rate for the encoder. The video is as long as ``duration`` when one was given (the sound cut, or padded with
silence), else as long as the sound, rounded up to whole frames (``core.sizes.frames_for_audio``).

``encode_soundtrack`` is the reference's ``encode_audio`` (``ltx_core.model.audio_vae``): a log-mel spectrogram
(torchaudio's ``MelSpectrogram`` with Slaney mel scale and norm, magnitude, reflect-padded centred frames, here in
plain torch) through the audio VAE's encoder, the posterior's mean, cut to the pipelines' audio length. What comes
out is held fixed while the video is denoised (``hold.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from pixgen.core.sizes import FPS, frames_for_audio
from pixgen.core.spec import VideoRequest
from pixgen.engine.base import SoundtrackFit
from pixgen.media.audio import decode_audio, decode_audio_uri
from pixgen.media.mp4 import fit_audio

N_FFT = 1024  # the LTX-2 audio VAE's STFT (ltx_core AudioEncoder.n_fft; diffusers' config does not carry it)


@dataclass(frozen=True)
class Soundtrack:
    """The given sound, fitted to the video: ``out`` at ``out_rate`` for the MP4, ``vae`` at ``vae_rate`` for the
    encoder, both float32 ``(2, n)`` exactly ``(num_frames − 1) / 24`` s long."""

    num_frames: int
    out: np.ndarray
    out_rate: int
    vae: np.ndarray
    vae_rate: int
    fit: SoundtrackFit


def plan_soundtrack(request: VideoRequest, out_rate: int, vae_rate: int) -> Soundtrack:
    """Decode ``request.audio`` and fit it to the video's length (its ``duration``, or its own)."""
    assert request.audio is not None
    data = decode_audio_uri(request.audio)
    out, _ = decode_audio(data, out_rate)
    vae, _ = decode_audio(data, vae_rate)
    given = out.shape[1] / out_rate
    frames = frames_for_audio(given) if request.follows_audio else request.num_frames
    seconds = (frames - 1) / FPS
    fit = SoundtrackFit(given_seconds=round(given, 4), video_seconds=round(seconds, 4),
                        cut_seconds=round(max(0.0, given - seconds), 4),
                        padded_seconds=round(max(0.0, seconds - given), 4))
    return Soundtrack(frames, fit_audio(out, out_rate, seconds), out_rate, fit_audio(vae, vae_rate, seconds),
                      vae_rate, fit)


def encode_soundtrack(pipe: Any, sound: np.ndarray, latent_frames: int) -> torch.Tensor:
    """``sound`` (float32 ``(2, n)`` at the audio VAE's rate) as audio latents ``(1, C, latent_frames, M)``,
    denormalized (the VAE's mean, as the pipelines take ``audio_latents``)."""
    vae = pipe.audio_vae
    hop = int(vae.config.mel_hop_length)
    # Silence past the end, so the encoder's causal frames cover every latent the pipeline asks for.
    want = latent_frames * pipe.audio_vae_temporal_compression_ratio * hop + N_FFT
    if sound.shape[1] < want:
        sound = np.pad(sound, ((0, 0), (0, want - sound.shape[1])))
    param = next(vae.parameters())
    with torch.no_grad():
        mel = log_mel(torch.from_numpy(np.ascontiguousarray(sound)).to(param.device), int(vae.config.sample_rate),
                      hop, int(vae.config.mel_bins))
        latents = vae.encode(mel.to(param.dtype)).latent_dist.mode()
    if latents.shape[2] < latent_frames:
        raise ValueError(f"the audio VAE gave {latents.shape[2]} latents for {latent_frames} wanted")
    return latents[:, :, :latent_frames].float()


def audio_latent_frames(pipe: Any, num_frames: int) -> int:
    """The audio latents the pipelines make for ``num_frames`` video frames (``LTX2Pipeline.__call__``'s rule)."""
    per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / float(pipe.audio_vae_temporal_compression_ratio)
    return round(num_frames / FPS * per_second)


def log_mel(waveform: torch.Tensor, rate: int, hop: int, mel_bins: int) -> torch.Tensor:
    """``(channels, n)`` → ``(1, channels, frames, mel_bins)``: ``log(max(mel, 1e-5))`` of the magnitude STFT
    (``N_FFT``, Hann, centred, reflect-padded) on a Slaney mel filterbank from 0 Hz to Nyquist."""
    window = torch.hann_window(N_FFT, device=waveform.device, dtype=torch.float32)
    spec = torch.stft(waveform.float(), N_FFT, hop_length=hop, win_length=N_FFT, window=window, center=True,
                      pad_mode="reflect", normalized=False, onesided=True, return_complex=True).abs()
    bank = torch.from_numpy(slaney_filterbank(N_FFT // 2 + 1, rate, mel_bins)).to(spec.device)
    mel = torch.einsum("cft,fm->ctm", spec, bank)
    return torch.log(torch.clamp(mel, min=1e-5)).unsqueeze(0)


@lru_cache(maxsize=8)
def slaney_filterbank(n_freqs: int, rate: int, mel_bins: int) -> np.ndarray:
    """``(n_freqs, mel_bins)`` triangular filters, Slaney mel scale, each normalised to unit area (torchaudio's
    ``melscale_fbanks(..., norm="slaney", mel_scale="slaney")``)."""
    freqs = np.linspace(0, rate // 2, n_freqs)
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2.0), mel_bins + 2)
    points = np.array([_mel_to_hz(m) for m in mels])
    diff = points[1:] - points[:-1]
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    bank *= (2.0 / (points[2:mel_bins + 2] - points[:mel_bins]))[None, :]
    return bank.astype(np.float32)


_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mel: float) -> float:
    return mel * _F_SP if mel < _MIN_LOG_MEL else _MIN_LOG_HZ * math.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
