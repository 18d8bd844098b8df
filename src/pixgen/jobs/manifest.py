"""A finished job's manifest: everything that made its video, kept with the job (``jobs.manifest``, JSON) and served
at ``GET /api/v1/jobs/{id}/manifest``; ``POST /api/v1/jobs/{id}/replay`` makes the same video from it.

Built by the worker when a job completes (``Worker._finish``), from the engine's ``GenerationResult`` (prompts as
used, ``Provenance``: recipe, sigmas and seed per shot, dtype, device),
the software versions and the fingerprint of the model folder (``engine.fingerprint``). No torch is imported.
The request it ran (seed drawn, images included) is the job's own ``request`` column, added when the manifest is
served (``with_request``) rather than stored twice. Under zero data retention no manifest is kept (it holds the
prompts).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixgen.engine.base import GenerationResult
from pixgen.engine.fingerprint import folder_fingerprint, text_fingerprint
from pixgen.jobs.origin import JobKind

MANIFEST_VERSION = 1
SOFTWARE = ("pixgen", "torch", "diffusers", "transformers", "av", "numpy")  # what decides the frames


def software_versions() -> dict[str, str]:
    """Installed versions of what the frames depend on (read from package metadata: torch is not imported)."""
    found = {}
    for name in SOFTWARE:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class ModelIdentity:
    """The model a process serves: the ``model`` setting, its backend and the fingerprint of what it names
    (None while the folder does not exist, e.g. the toy before its first build)."""

    backend: str
    setting: str
    fingerprint: str | None


def model_identity(engine: str, model: str, cache_dir: Path | None) -> ModelIdentity:
    """The identity of the model ``engine`` / ``model`` / ``cache_dir`` (the settings) name, without loading it."""
    if engine != "ltx2":  # a test backend: its options are the model
        return ModelIdentity(engine, model, text_fingerprint(f"{engine}:{model}"))
    from pixgen.engine.ltx2.toy import tiny_model_path, toy_generation

    generation = toy_generation(model)
    folder = tiny_model_path(cache_dir, generation) if generation is not None else Path(model).expanduser()
    found = folder_fingerprint(folder) if (folder / "model_index.json").is_file() else None
    return ModelIdentity(engine, model, found)


def build_manifest(result: GenerationResult, model: ModelIdentity, *, kind: JobKind = JobKind.GENERATE,
                   source_job_id: str | None = None) -> dict[str, Any]:
    """The manifest of a job that got ``result`` on ``model`` (without its request: see ``with_request``)."""
    provenance = result.provenance
    manifest: dict[str, Any] = {
        "manifestVersion": MANIFEST_VERSION,
        "software": software_versions(),
        "model": {"backend": model.backend, "setting": model.setting, "fingerprint": model.fingerprint},
        "kind": kind.value,
        "sourceJobId": source_job_id,
        "seed": result.seed,
        "prompt": result.prompt,
        "originalPrompt": result.original_prompt,
        "negativePrompt": result.negative_prompt,
        "thinking": result.thinking,
        "loras": list(result.loras),
        "stage2Lora": result.stage2_lora,
        "twoStage": result.two_stage,
        "recipe": result.recipe,
        "output": {"width": result.width, "height": result.height, "numFrames": result.num_frames,
                   "hasAudio": result.has_audio,
                   "generationSize": list(result.generation_size) if result.generation_size else None},
        "shots": [run.as_dict() for run in provenance.runs] if provenance else None,
        "recipeSettings": _plain(provenance.recipe_settings) if provenance else None,
        "runtime": {"backend": provenance.backend, "dtype": provenance.dtype, "device": provenance.device,
                    "memory": provenance.memory, "options": _plain(provenance.options)} if provenance else None,
    }
    return manifest


def with_request(manifest: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The manifest as served: with the request the job ran (its stored, seeded request)."""
    return {**manifest, "request": request}


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, mappings as dicts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
