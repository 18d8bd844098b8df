"""Joining sounds: the one crossfade used at multi-clip cuts and at an extension's join."""

from __future__ import annotations

import numpy as np

CROSSFADE_SECONDS = 0.05  # long enough to hide a click, short enough not to smear a cut


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Equal-power crossfade of two (channels, n) pieces of the same length: ``outgoing`` fades out as
    ``incoming`` fades in (sin/cos ramps, so the summed power stays level)."""
    n = outgoing.shape[1]
    t = (np.arange(n, dtype=np.float32) + 0.5) / n
    return outgoing * np.cos(t * np.pi / 2) + incoming * np.sin(t * np.pi / 2)
