"""Which control types a model folder offers: its IC-LoRA files, found by name, with no torch (the API reads this).

The convention (Lightricks' own file names match it): ``<folder>/loras/*ic-lora-<type>*.safetensors``, ``<type>``
being the word after ``ic-lora-``:

- ``ltx-2-19b-ic-lora-depth-control.safetensors`` → ``depth``; ``...-pose-control`` → ``pose``;
  ``...-canny-control`` → ``canny``; ``ltx-2-19b-ic-lora-detailer.safetensors`` → ``detailer``;
- ``...-ic-lora-union-control...`` (LTX-2.3's one file for several) → ``canny``, ``depth`` and ``pose``, each only
  where the folder has no file of that type's own.

An IC-LoRA trained on downscaled references says so in its safetensors metadata (``reference_downscale_factor``);
it is read from the file's JSON header. Several files of one type: the first by name wins.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

LORA_DIR = "loras"
IC_LORA_GLOB = "*ic-lora-*.safetensors"
UNION_TYPES = ("canny", "depth", "pose")
_TYPE = re.compile(r"ic-lora-([a-z][a-z0-9_]*)")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class ControlLora:
    control_type: str
    file: Path
    reference_downscale_factor: int = 1  # the reference video is encoded at 1/factor of the output size


def control_loras(folder: Path) -> dict[str, ControlLora]:
    """``{control type: its IC-LoRA}`` for the folder's ``loras/`` (empty without one)."""
    directory = Path(folder) / LORA_DIR
    if not directory.is_dir():
        return {}
    own: dict[str, Path] = {}
    union: list[Path] = []
    for path in sorted(directory.glob(IC_LORA_GLOB)):
        match = _TYPE.search(path.name.lower())
        if match is None:
            continue
        kind = match.group(1)
        if kind == "union":
            union.append(path)
        else:
            own.setdefault(kind, path)
    if union:
        for kind in UNION_TYPES:
            own.setdefault(kind, union[0])
    return {kind: ControlLora(kind, path, downscale_factor(path)) for kind, path in sorted(own.items())}


def control_types(folder: Path) -> tuple[str, ...]:
    return tuple(control_loras(folder))


def downscale_factor(path: Path) -> int:
    """The file's ``reference_downscale_factor`` metadata (1 when absent or unreadable)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _MAX_HEADER:
                return 1
            metadata = json.loads(handle.read(length)).get("__metadata__") or {}
        return max(1, int(float(metadata.get("reference_downscale_factor", 1))))
    except (OSError, ValueError, struct.error, AttributeError):
        return 1
