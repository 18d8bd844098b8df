"""Engine backends, by id: what each can do (static ``Capabilities``, readable without torch) and how to load it.

``load_engine(model, backend=...)`` imports the chosen backend's module (torch, for LTX-2) and loads it once;
``backend(id)`` only reads the registry, so the API process can describe the model it serves without loading it.

- ``ltx2``: LTX-2 on diffusers pipelines; ``model`` is ``tiny`` (the toy model, built once) or a model folder.
- ``fake``: ``pixgen.testing.FakeEngine``, for tests of everything around the model: a real MP4 of solid
  colour, fast; ``model`` carries its options (``steps=20,step_seconds=0.2,scale=0.25``, or ``tiny`` for the
  defaults).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from pixgen.engine.base import Capabilities, Engine, EngineOptions
from pixgen.errors import ConfigError, ModelError

DEFAULT_BACKEND = "ltx2"


def resolve_model_dir(model: str | None, cache_dir: Path | None = None) -> Path:
    """``tiny`` (or None) → the toy LTX-2, built once into a cache folder; anything else → that folder."""
    from pixgen.engine.ltx2.toy import tiny_model_dir

    if model in (None, "", "tiny"):
        return tiny_model_dir(cache_dir)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(f"model folder {str(path)!r} does not exist (use --model tiny or a diffusers-format "
                         f"LTX-2 folder)", field="model")
    return path


def ltx2_control_types(model: str | None, cache_dir: Path | None = None) -> tuple[str, ...]:
    """The control types of the LTX-2 folder ``model`` names, from its file names (no torch, nothing built):
    the toy's are fixed by its code."""
    from pixgen.engine.ltx2.control_files import control_types
    from pixgen.engine.ltx2.toy import TOY_CONTROL_TYPES

    if model in (None, "", "tiny"):
        return TOY_CONTROL_TYPES
    path = Path(model).expanduser()
    return control_types(path) if path.is_dir() else ()


def no_control_types(model: str | None, cache_dir: Path | None = None) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Backend:
    id: str
    description: str
    capabilities: Capabilities
    engine: str  # "module:Class" of the Engine, imported only when it is loaded
    resolve: Callable[[str | None, Path | None], Path]  # (model setting, cache dir) → what ``Engine.load`` takes
    control_types: Callable[[str | None, Path | None], tuple[str, ...]] = no_control_types

    def capabilities_for(self, model: str | None, cache_dir: Path | None = None) -> Capabilities:
        """The static capabilities plus what the model itself carries (its control types), read without torch."""
        return replace(self.capabilities, control_types=self.control_types(model, cache_dir))

    def engine_class(self) -> type[Engine]:
        module, _, name = self.engine.partition(":")
        return getattr(importlib.import_module(module), name)


LTX2_CAPABILITIES = Capabilities(extend=True, end_frame=True, multi_clip=True, audio=True, keyframes=True,
                                 retake=True)
FAKE_CAPABILITIES = Capabilities(extend=True, end_frame=True, multi_clip=True, audio=True)

BACKENDS: dict[str, Backend] = {b.id: b for b in (
    Backend("ltx2", "LTX-2 on diffusers pipelines", LTX2_CAPABILITIES, "pixgen.engine.ltx2.engine:LTX2Engine",
            resolve_model_dir, ltx2_control_types),
    Backend("fake", "solid-colour MP4s for tests (pixgen.testing.FakeEngine)", FAKE_CAPABILITIES,
            "pixgen.testing:FakeEngine", lambda model, _cache: Path(model or "tiny")),
)}


def backend(backend_id: str = DEFAULT_BACKEND) -> Backend:
    """The registered backend ``backend_id``, or ``ConfigError`` naming the ``engine`` setting."""
    try:
        return BACKENDS[backend_id]
    except KeyError:
        raise ConfigError(f"unknown engine {backend_id!r}; this pixgen has {', '.join(sorted(BACKENDS))}",
                          field="engine") from None


def load_engine(model: str | None = "tiny", *, backend_id: str = DEFAULT_BACKEND, cache_dir: Path | None = None,
                options: EngineOptions | None = None, **option_values) -> Engine:
    """Load backend ``backend_id`` for ``model`` once; the returned engine serves many requests. ``options`` (or
    its fields as keywords: ``dtype="bfloat16"``) say where and how (``EngineOptions``)."""
    chosen = backend(backend_id)
    options = replace(options or EngineOptions(), **option_values)
    return chosen.engine_class().load(chosen.resolve(model, cache_dir), options)
