"""Warm-up: the shapes a worker runs once at load, so that no user's job is the first of its shape (compiled
graphs, cuDNN/cuBLAS plans, the allocator's blocks and the encoder are all made then). No torch here: the
settings parse ``--warmup`` and ``pixgen status`` shows a worker's ``WarmupState`` without the model stack.

``--warmup`` is ``auto`` (on a GPU every quality the backend offers, 16:9 at 5 s; on a CPU none: its first job
costs little more than the next), ``none``, or a comma-separated list of ``QUALITY[/SECONDS[/RATIO]]``, e.g.
``720p,1080p/10,720p/5/9:16``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from pixgen.core.sizes import ASPECT_RATIOS, QUALITIES
from pixgen.core.spec import VideoRequest, parse_request

AUTO, NONE = "auto", "none"
DEFAULT_SECONDS = 5
DEFAULT_RATIO = "16:9"
PROMPT = "A lighthouse on a rocky coast at dusk, waves breaking below, gulls circling."  # what it shows is moot


@dataclass(frozen=True)
class WarmupShape:
    quality: str
    seconds: int = DEFAULT_SECONDS
    ratio: str = DEFAULT_RATIO

    def __str__(self) -> str:
        return f"{self.quality} {self.seconds} s {self.ratio}"

    def request(self) -> VideoRequest:
        return parse_request({"prompt": PROMPT, "quality": self.quality, "duration": self.seconds,
                              "aspect_ratio": self.ratio, "seed": 0, "thinking_type": "disabled"})


def parse_warmup(value: str) -> tuple[WarmupShape, ...] | None:
    """``--warmup``'s value → the shapes, or None for ``auto`` (decided at load, by the device). A
    ``ValueError`` says what is wrong with which item."""
    text = value.strip().lower()
    if text in ("", AUTO):
        return None
    if text == NONE:
        return ()
    shapes = []
    for item in (part.strip() for part in text.split(",")):
        quality, _, rest = item.partition("/")
        seconds, _, ratio = rest.partition("/")
        if quality not in QUALITIES:
            raise ValueError(f"{item!r}: the quality is one of {', '.join(QUALITIES)} (QUALITY[/SECONDS[/RATIO]])")
        if seconds and not (seconds.isdigit() and 1 <= int(seconds) <= 15):
            raise ValueError(f"{item!r}: seconds are 1..15")
        if ratio and ratio not in ASPECT_RATIOS:
            raise ValueError(f"{item!r}: the ratio is one of {', '.join(ASPECT_RATIOS)}")
        shapes.append(WarmupShape(quality, int(seconds or DEFAULT_SECONDS), ratio or DEFAULT_RATIO))
    return tuple(dict.fromkeys(shapes))


def resolve_warmup(value: str, *, qualities: tuple[str, ...], on_gpu: bool) -> tuple[WarmupShape, ...]:
    """The shapes to warm: as given, or for ``auto`` every quality on a GPU and none on a CPU."""
    shapes = parse_warmup(value)
    if shapes is None:
        return tuple(WarmupShape(q) for q in qualities) if on_gpu else ()
    return shapes


State = Literal["none", "warming", "warm", "failed", "stopped"]


@dataclass(frozen=True)
class WarmupState:
    """Where a worker's warm-up stands: what ``pixgen status`` shows (kept as JSON on the worker's row)."""

    state: State
    shapes: tuple[str, ...] = ()
    done: int = 0  # shapes finished
    seconds: float = 0.0
    error: str | None = None
    compile: dict[str, int] = field(default_factory=dict)  # graphs, recompiles, graph breaks so far

    def next(self, **changes: object) -> WarmupState:
        return replace(self, **changes)  # type: ignore[arg-type]  # replace checks the names and values at run time

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> WarmupState | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(**{**data, "shapes": tuple(data.get("shapes", ()))})

    def describe(self) -> str:
        """One line: ``warm (360p 5 s 16:9, 720p 5 s 16:9) in 41.2 s``, ``warming 1/4: 720p 5 s 16:9``…"""
        shapes = ", ".join(self.shapes)
        if self.state == "none":
            return "no warm-up"
        if self.state == "warming":
            current = self.shapes[self.done] if self.done < len(self.shapes) else ""
            return f"warming {self.done}/{len(self.shapes)}: {current}"
        compiled = (f"; compiled {self.compile.get('graphs', 0)} graphs, {self.compile.get('recompiles', 0)} "
                    f"recompiles, {self.compile.get('graph_breaks', 0)} graph breaks") if self.compile else ""
        if self.state == "warm":
            return f"warm ({shapes}) in {self.seconds:.1f} s{compiled}"
        return f"warm-up {self.state} after {self.done}/{len(self.shapes)} ({self.error or 'stopped'})"


def started(shapes: tuple[WarmupShape, ...]) -> tuple[WarmupState, float]:
    return WarmupState("warming" if shapes else "none", tuple(str(s) for s in shapes)), time.monotonic()
