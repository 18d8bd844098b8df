"""The one small protocol an engine plugs in through: load once, then ``generate`` many times.

This module imports no torch, so the job layer can name these types without loading the model stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from pixgen.core.progress import ProgressCallback, no_progress
from pixgen.core.spec import VideoRequest


def never_cancelled() -> bool:
    return False


@dataclass(frozen=True)
class GenerationResult:
    path: Path
    width: int
    height: int
    num_frames: int
    seconds: float
    seed: int
    has_audio: bool
    prompt: str  # the prompt actually used (after thinking / style / camera)
    original_prompt: str
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> str:
        audio = "with audio" if self.has_audio else "no audio"
        return (f"{self.width}x{self.height}, {self.num_frames} frames, {self.seconds:.2f} s, {audio}, "
                f"seed {self.seed} -> {self.path}")


class Engine(Protocol):
    """Generates one video file for one request (or extends one). Loaded once, serves many requests, one at a
    time."""

    name: str

    def generate(
        self,
        request: VideoRequest,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
    ) -> GenerationResult:
        """Write ``out_path`` (MP4). Raises ``Cancelled`` within one denoising step of ``should_cancel()``."""
        ...

    def extend(
        self,
        source: Path,
        request: VideoRequest,
        out_path: Path,
        on_progress: ProgressCallback = no_progress,
        should_cancel: Callable[[], bool] = never_cancelled,
    ) -> GenerationResult:
        """Continue the finished video ``source`` by ``request.duration`` seconds from its last frames, sound
        continuing; write the WHOLE video (source + new frames, source + new audio) to ``out_path``, at the
        source's size. Raises ``InvalidRequest(field="video")`` for a source it cannot continue."""
        ...
