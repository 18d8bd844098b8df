"""How one job is split over several ranks (GPUs, or CPU processes over gloo), as arithmetic: no torch.

Two ways of splitting, combined:

- **Guidance parallel**: a guided denoising step runs several transformer passes over the same latents (the dev
  recipes: the negative prompt and the prompt as one batch of 2 for CFG, then one pass for STG and one for modality
  guidance). They do not depend on each other, so ``G`` groups of ranks run them side by side: the passes
  ("pieces") are dealt into ``G`` equal bins, in order, and every rank gets every result back.
- **Sequence parallel**: within a group, ``S`` ranks share one pass: each holds ``1/S`` of the video tokens;
  attention exchanges what it needs (``ltx2/sequence_parallel.py``).

``world = G x S``. ``choose_layout`` takes the largest ``G`` that divides both the world and the number of pieces
(equal bins, nobody idle), the rest goes to ``S``: an unguided stage (the distilled recipes, every stage-2 refine)
is all sequence parallel; the four-piece dev step on 2 or 4 ranks is all guidance parallel. The bench's cost model
(``bench/parallel_cost.py``) reads the same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The pieces of one guided step, in the order the pipelines combine them (CFG's batch is [negative, positive]).
UNCOND, COND, STG, MODALITY = "uncond", "cond", "stg", "modality"
PIECE_ORDER = (UNCOND, COND, STG, MODALITY)
SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION = 32, 8  # LTX-2's video VAE: one token per 32x32 pixels x 8 frames


def guidance_pieces(*, cfg: bool, stg: bool, modality: bool) -> tuple[str, ...]:
    """The batch-1 transformer passes of one step, in order."""
    return tuple(p for p, on in zip(PIECE_ORDER, (cfg, True, stg, modality), strict=True) if on)


@dataclass(frozen=True)
class Layout:
    """``guidance`` groups of ``sequence`` ranks each; rank ``r`` is in guidance group ``r // sequence`` and holds
    sequence shard ``r % sequence``."""

    guidance: int
    sequence: int

    @property
    def world(self) -> int:
        return self.guidance * self.sequence

    def describe(self) -> str:
        return f"{self.guidance} guidance x {self.sequence} sequence"


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def choose_layout(world: int, pieces: int, *, guidance_parallel: bool = True) -> Layout:
    """The split of ``world`` ranks for a step of ``pieces`` passes (see the module's docstring)."""
    if world < 1 or pieces < 1:
        raise ValueError(f"world {world} and pieces {pieces} must be positive")
    g = max(d for d in divisors(world) if pieces % d == 0) if guidance_parallel else 1
    return Layout(g, world // g)


def bins(pieces: tuple[str, ...], groups: int) -> tuple[tuple[str, ...], ...]:
    """``pieces`` dealt in order into ``groups`` equal bins (``groups`` divides their number)."""
    if len(pieces) % groups:
        raise ValueError(f"{len(pieces)} pieces do not split into {groups} equal bins")
    k = len(pieces) // groups
    return tuple(pieces[i * k:(i + 1) * k] for i in range(groups))


def shard(tokens: int, degree: int) -> tuple[int, int]:
    """(tokens per rank, padding tokens) when ``tokens`` are split over ``degree`` ranks: a count that does not
    divide is padded at the end to the next multiple (the padding never takes part in attention)."""
    per_rank = math.ceil(tokens / degree)
    return per_rank, per_rank * degree - tokens


def video_tokens(width: int, height: int, num_frames: int) -> int:
    """LTX-2's video token count ``((F-1)/8+1)·(H/32)·(W/32)`` at a generation size (multiples of 32)."""
    return ((num_frames - 1) // TEMPORAL_COMPRESSION + 1) * (height // SPATIAL_COMPRESSION) * \
        (width // SPATIAL_COMPRESSION)


def exchange(heads: int, degree: int, asked: str = "auto") -> str:
    """How attention gets the other ranks' keys and values: ``ulysses`` (an all-to-all of heads for tokens, when
    the heads divide by the degree) or ``allgather`` (every rank gathers every key and value)."""
    if asked not in ("auto", "ulysses", "allgather"):
        raise ValueError(f"unknown sequence exchange {asked!r}; use auto, ulysses or allgather")
    if asked == "allgather" or heads % degree:
        return "allgather"
    return "ulysses"
