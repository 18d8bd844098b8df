"""Progress events reported by an engine through a callback.

The stages and their shares of the progress bar are the backend's (``Capabilities.stages``: LTX-2's load, prepare,
text, denoise, upsample, decode, encode); an event carries them, so its ``percent`` needs no model knowledge here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

StageShares = tuple[tuple[str, float], ...]  # stages in the order a job goes through them, each with its share


@dataclass(frozen=True)
class Progress:
    stage: str
    step: int
    total: int
    stages: StageShares = ()  # the backend's stages (``Capabilities.stages``)

    @property
    def percent(self) -> int:
        """Overall 0..100 across the backend's stages (stages skipped for a job just count as done); a stage the
        backend does not list counts alone, 0..100."""
        fraction = min(max(self.step / self.total if self.total else 1.0, 0.0), 1.0)
        if self.stage not in dict(self.stages):
            return min(100, int(fraction * 100))
        done = 0.0
        for name, share in self.stages:
            if name == self.stage:
                done += share * fraction
                break
            done += share
        return min(100, int(done * 100))


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    return None
