"""Multi-clip prompts split into shots: backend-neutral text rules (the frame timing is the backend's).

- Explicit shots: "Shot 1: … Shot 2: …" (also "Scene N" / "Clip N", the number followed by ``:`` ``.`` ``)`` or a
  dash); text before the first label is shared context, put in front of every shot. Or "Cut to:" between shots.
- Otherwise by sentences (``.`` ``!`` ``?`` then a space, or a line break; "Mr." and the like do not split).
- One sentence only: the same scene in successive framings (wide, medium, close-up), so the video still cuts.
- At most ``MAX_SHOTS`` shots and at most one per whole second (``max_shots``); surplus shots or sentences are
  merged, in order, into groups of near-equal count.
"""

from __future__ import annotations

import re

MAX_SHOTS = 4
MIN_SHOT_SECONDS = 1
FRAMINGS = ("Wide establishing shot", "Medium shot", "Close-up shot")

_SHOT_LABEL = re.compile(r"\b(?:shot|scene|clip)\s*#?\s*\d+\s*(?::|\.|\)|-|–|—)\s*", re.IGNORECASE)
_CUT_TO = re.compile(r"\bcut\s+to\s*(?::|-|–|—)\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n+\s*")
_ABBREVIATIONS = ("mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.", "jr.", "sr.")


def max_shots(duration: int) -> int:
    return max(1, min(MAX_SHOTS, duration // MIN_SHOT_SECONDS))


def split_shots(prompt: str, limit: int = MAX_SHOTS) -> list[str]:
    """The shot texts of ``prompt``, at most ``limit`` of them (rules in the module docstring)."""
    text = prompt.strip()
    if limit <= 1:
        return [_squash(text)]
    pieces = _SHOT_LABEL.split(text)
    if len(pieces) > 1:
        context = _squash(pieces[0])
        shots = [_squash(f"{context} {p}") for p in pieces[1:] if p.strip()]
        if shots:
            return _group(shots, limit)
    shots = [_squash(p) for p in _CUT_TO.split(text) if p.strip()]
    if len(shots) > 1:
        return _group(shots, limit)
    sentences = split_sentences(text)
    if len(sentences) <= 1:
        subject = sentences[0] if sentences else ""
        return [f"{framing}: {subject}" if subject else f"{framing}." for framing in FRAMINGS[:limit]]
    return _group(sentences, limit)


def split_sentences(text: str) -> list[str]:
    out: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        piece = _squash(piece)
        if not piece:
            continue
        if out and out[-1].lower().endswith(_ABBREVIATIONS):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _group(items: list[str], limit: int) -> list[str]:
    """``items`` in order, merged into at most ``limit`` contiguous groups of near-equal count."""
    if len(items) <= limit:
        return items
    base, extra = divmod(len(items), limit)
    groups, start = [], 0
    for i in range(limit):
        size = base + (1 if i < extra else 0)
        groups.append(" ".join(items[start : start + size]))
        start += size
    return groups


def _squash(text: str) -> str:
    return " ".join(text.split())
