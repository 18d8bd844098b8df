"""How close one video is to another: PSNR of the decoded frames and SNR of the audio's magnitude spectrum.

The quality proxies of the speed options (float8, the step cache, attention kernels) against the plain run of the
same request and seed. The audio figure weighs each spectral bin by its energy: a log-spectrum PSNR (what the
benchmark used before) is dominated by near-silent bins and read ~30 dB for two tracks that sound the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from pixgen.media.probe import read_audio

WINDOW = 1024
HOP = 256


@dataclass(frozen=True)
class Closeness:
    frames_psnr_db: float | None  # None: identical frames
    audio_spectrum_snr_db: float | None  # None: identical spectra, or no audio in either
    identical_frames: bool
    frames_compared: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def closeness(reference: Path, candidate: Path) -> Closeness:
    """``candidate`` against ``reference``, frame by frame (as many as both have) and over their common audio."""
    squared, count, frames = 0.0, 0, 0
    with av.open(str(reference)) as a, av.open(str(candidate)) as b:
        for fa, fb in zip(a.decode(video=0), b.decode(video=0)):
            x = fa.to_ndarray(format="rgb24").astype(np.float64)
            y = fb.to_ndarray(format="rgb24").astype(np.float64)
            squared += float(((x - y) ** 2).sum())
            count += x.size
            frames += 1
    psnr = round(10 * float(np.log10(255.0**2 / (squared / count))), 2) if squared else None
    audio = None
    ra, rb = read_audio(reference), read_audio(candidate)
    if ra is not None and rb is not None:
        audio = spectrum_snr_db(ra, rb)
    return Closeness(psnr, audio, squared == 0, frames)


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
    window = np.hanning(WINDOW)
    starts = range(0, max(1, samples.shape[1] - WINDOW), HOP)
    frames = np.stack([np.pad(samples[:, i : i + WINDOW], ((0, 0), (0, max(0, WINDOW - samples[:, i:].shape[1]))))
                       * window for i in starts], axis=1)
    return np.abs(np.fft.rfft(frames, axis=-1))
