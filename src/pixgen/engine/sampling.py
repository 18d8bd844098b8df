"""Model-specific sampling settings, read from the model folder's optional ``pixgen.json``.

They live with the backend, not in the service settings or the job record: a real LTX-2 folder gets the
reference defaults below, the toy model ships its own (fewer steps, guidance blocks that exist in 2 layers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

from pixgen.errors import ModelError

SETTINGS_FILE = "pixgen.json"
# Stage-2 refinement sigmas of the LTX-2 two-stage recipe (diffusers.pipelines.ltx2.utils).
STAGE_2_SIGMAS = (0.909375, 0.725, 0.421875)


@dataclass(frozen=True)
class SamplingSettings:
    num_inference_steps: int = 40
    guidance_scale: float = 4.0
    audio_guidance_scale: float = 7.0
    stg_scale: float = 1.0
    audio_stg_scale: float = 1.0
    modality_scale: float = 3.0
    audio_modality_scale: float = 3.0
    guidance_rescale: float = 0.7
    stg_blocks: tuple[int, ...] = (28,)
    max_sequence_length: int = 1024
    refine_sigmas: tuple[float, ...] = STAGE_2_SIGMAS
    # Qualities generated the two-stage way (half size → ×2 latent upsample → refine) when an upsampler exists.
    two_stage_qualities: tuple[str, ...] = ("1080p",)
    image_condition_crf: int | None = None  # None: the model's default re-compression of image conditions

    @classmethod
    def from_folder(cls, folder: Path) -> "SamplingSettings":
        path = folder / SETTINGS_FILE
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text()).get("sampling", {})
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"{path}: unknown sampling settings {sorted(unknown)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return replace(cls(), **data)
