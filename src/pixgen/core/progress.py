"""Progress events reported by the engine through a callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Stages in the order a job goes through them, with the share of the progress bar each takes.
STAGES: dict[str, float] = {
    "load": 0.02,
    "prepare": 0.03,
    "text": 0.03,
    "denoise": 0.67,
    "upsample": 0.05,
    "decode": 0.15,
    "encode": 0.05,
}


@dataclass(frozen=True)
class Progress:
    stage: str
    step: int
    total: int

    @property
    def percent(self) -> int:
        """Overall 0..100 across all stages (stages skipped for a job just count as done)."""
        done = 0.0
        for name, share in STAGES.items():
            if name == self.stage:
                frac = self.step / self.total if self.total else 1.0
                done += share * min(max(frac, 0.0), 1.0)
                break
            done += share
        return min(100, int(done * 100))


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    return None
