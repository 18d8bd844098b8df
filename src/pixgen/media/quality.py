"""How close one video is to another: PSNR of the frames and SNR of the audio's magnitude spectrum.

The quality proxies of the speed options (float8, the step cache, attention kernels) against the plain run of the
same request and seed. Compare what went INTO the encoder (the uint8 frames, the float waveform): the decoded MP4s
differ by the codecs' own noise too, which is no property of the model (x264 at CRF 20 on the toy's noise-like
frames alone is ~17 dB PSNR from its input, and AAC's noise, ~30 dB, is why the benchmark's old audio figure read
30 dB for identical runs). The audio figure weighs each spectral bin by its energy; a log-spectrum PSNR is
dominated by near-silent bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

WINDOW = 1024
HOP = 256


@dataclass(frozen=True)
class Closeness:
    frames_psnr_db: float | None  # None: identical frames
    audio_spectrum_snr_db: float | None  # None: identical audio, or no audio in either
    identical_frames: bool
    identical_audio: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def closeness(reference_frames: np.ndarray, candidate_frames: np.ndarray,
              reference_audio: np.ndarray | None = None, candidate_audio: np.ndarray | None = None) -> Closeness:
    """Uint8 frames (n, h, w, 3) and float audio (channels, samples) of a candidate against a reference."""
    if reference_frames.shape != candidate_frames.shape:
        raise ValueError(f"frames {candidate_frames.shape} against {reference_frames.shape}")
    psnr = frames_psnr_db(reference_frames, candidate_frames)
    audio = None
    same_audio = reference_audio is None and candidate_audio is None
    if reference_audio is not None and candidate_audio is not None:
        audio = spectrum_snr_db(reference_audio, candidate_audio)
        same_audio = bool(np.array_equal(reference_audio, candidate_audio))
    return Closeness(psnr, audio, psnr is None, same_audio)


def frames_psnr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """PSNR (dB) over every pixel of uint8 frames; None when equal."""
    mse = float(((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2).mean())
    return None if mse == 0 else round(10 * float(np.log10(255.0**2 / mse)), 2)


def spectrum_snr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """SNR (dB) of ``candidate``'s magnitude spectrogram against ``reference``'s ((channels, n) samples, the
    common length): the reference's spectral energy over the energy of the difference. None when equal."""
    n = min(reference.shape[1], candidate.shape[1])
    sa, sb = magnitude_spectrogram(reference[:, :n]), magnitude_spectrogram(candidate[:, :n])
    noise = float(((sa - sb) ** 2).sum())
    if noise == 0:
        return None
    return round(10 * float(np.log10(float((sa**2).sum()) / noise)), 2)


def magnitude_spectrogram(samples: np.ndarray) -> np.ndarray:
    """|STFT| of (channels, n) samples: Hann windows of ``WINDOW`` every ``HOP`` (the last one zero-padded)."""
    window = np.hanning(WINDOW)
    starts = range(0, max(1, samples.shape[1] - WINDOW + HOP), HOP)
    frames = [np.pad(samples[:, i : i + WINDOW], ((0, 0), (0, WINDOW - samples[:, i : i + WINDOW].shape[1])))
              for i in starts]
    return np.abs(np.fft.rfft(np.stack(frames, axis=1) * window, axis=-1))
