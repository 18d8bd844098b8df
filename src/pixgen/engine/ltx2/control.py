"""Control videos: stage 1 follows a reference video through the folder's IC-LoRA for its ``control_type``.

A job with ``control_video`` runs the usual blocks; only stage 1 changes: ``LTX2InContextPipeline`` with one
``LTX2ReferenceCondition`` (the control video, clean: strength 1) and the type's IC-LoRA on for that call alone,
start/end frames passed as its ``conditions``. The reference's tokens are appended to the video tokens, so the
transformer sees both sequences. Stage 2 (two-stage qualities) refines as for any job, without the reference or
the IC-LoRA, as Lightricks' IC-LoRA pipeline does.

The control video is sampled on the output's 24 fps clock for every output frame, fitted to the output as the
contract fits images (centre crop), its border mirrored out to the generation grid like an image condition, at
stage 1's size divided by the LoRA's ``reference_downscale_factor``. Which files give which types:
``control_files.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2InContextPipeline, LTX2ReferenceCondition
from PIL import Image

from pixgen.core.spec import VideoRequest
from pixgen.engine.ltx2.control_files import ControlLora, control_loras
from pixgen.engine.ltx2.geometry import Geometry
from pixgen.engine.ltx2.loading import Pipelines, in_context_pipeline
from pixgen.engine.ltx2.lora import PresetLoras, adapter_name
from pixgen.errors import InvalidRequest
from pixgen.media.control_video import read_frames


@dataclass(frozen=True)
class ControlReference:
    lora: ControlLora
    frames: list[Image.Image]  # one per output frame, at the reference size

    @property
    def adapter(self) -> str:
        return adapter_name(self.lora.file.name)


class ControlVideos:
    """The folder's IC-LoRAs by control type, and the in-context pipeline over the engine's modules."""

    def __init__(self, pipes: Pipelines, folder: Path, loras: PresetLoras) -> None:
        self.pipes = pipes
        self.loras = loras
        self.available = control_loras(folder) if loras.usable else {}
        self._pipe: LTX2InContextPipeline | None = None

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self.available)

    def reference(self, request: VideoRequest, geometry: Geometry) -> ControlReference | None:
        """The job's reference frames (None without ``control_video``); ``InvalidRequest`` naming ``control_type``
        when this folder has no IC-LoRA for it (the API refuses that at submit; this is the worker's own check)."""
        if request.control_type is None or request.control_video is None:
            return None
        lora = self.available.get(request.control_type)
        if lora is None:
            raise InvalidRequest(f"control_type {request.control_type!r} is not offered: the model folder has no "
                                 f"IC-LoRA for it (offered: {', '.join(self.types) or 'none'})", field="control_type")
        width, height = (side // lora.reference_downscale_factor for side in geometry.stage_one_size)
        scale = width / geometry.gen_width
        inner = Geometry(round(geometry.width * scale), round(geometry.height * scale), width, height, False)
        frames = read_frames(request.control_video, request.num_frames, (inner.width, inner.height))
        return ControlReference(lora, [Image.fromarray(f) for f in inner.pad(frames)])

    def denoise(self, reference: ControlReference, **pipeline_args):
        """Stage 1 with the reference and its IC-LoRA on (the job's other adapters stay as they are)."""
        if self._pipe is None:
            self._pipe = in_context_pipeline(self.pipes)
        with self.loras.also(reference.lora.file.name):
            return self._pipe(reference_conditions=[LTX2ReferenceCondition(frames=reference.frames, strength=1.0)],
                              reference_downscale_factor=reference.lora.reference_downscale_factor,
                              **pipeline_args)
