"""Engine: turns a ``VideoRequest`` into an MP4 with LTX-2. Importing this package does not import torch;
``load_engine`` does."""

from __future__ import annotations

from pathlib import Path

from pixgen.engine.base import Engine, GenerationResult, never_cancelled

__all__ = ["Engine", "GenerationResult", "load_engine", "never_cancelled", "resolve_model_dir"]


def resolve_model_dir(model: str | None, cache_dir: Path | None = None) -> Path:
    """``tiny`` (or None) → the toy LTX-2, built once into a cache folder; anything else → that folder."""
    from pixgen.engine.ltx2.toy import tiny_model_dir

    if model in (None, "", "tiny"):
        return tiny_model_dir(cache_dir)
    path = Path(model).expanduser()
    if not path.is_dir():
        from pixgen.errors import ModelError

        raise ModelError(f"model folder {str(path)!r} does not exist (use --model tiny or a diffusers-format "
                         f"LTX-2 folder)", field="model")
    return path


def load_engine(model: str | None = "tiny", *, cache_dir: Path | None = None, device: str | None = None,
                dtype: str | None = None, recipe: str | None = None) -> Engine:
    """Load the LTX-2 backend from ``model`` once; the returned engine serves many requests. ``device`` and
    ``dtype`` default to the GPU in bfloat16 when there is one (else the CPU in float32); ``recipe`` overrides the
    folder's detected sampling recipe."""
    from pixgen.engine.ltx2.engine import LTX2Engine

    return LTX2Engine.load(resolve_model_dir(model, cache_dir), device=device, dtype=dtype, recipe=recipe)
