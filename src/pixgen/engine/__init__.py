"""Engine backends, by id: what each can do (static ``Capabilities``, readable without torch) and how to load it.

``load_engine(model, backend=...)`` imports the chosen backend's module (torch, for LTX-2) and loads it once;
``backend(id)`` only reads the registry, so the API process can describe the model it serves without loading it.

The registry holds the production backends:

- ``ltx2``: LTX-2 on diffusers pipelines; ``model`` is ``tiny`` (the toy LTX-2.0, built once), ``tiny-2.5`` (the toy
  LTX-2.5: with a duration head) or a model folder.

A backend from elsewhere is named ``package.module:NAME``, ``NAME`` being its ``Backend`` (the module is imported,
and must stay light: the API process reads its capabilities). The tests' stand-in is one:
``pixgen.testing:FAKE_BACKEND`` (``pixgen.testing.FakeEngine``: real MP4s of solid colour, fast).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pixgen.core.retake import RetakeRule
from pixgen.engine.base import Capabilities, Engine, EngineOptions
from pixgen.errors import ConfigError, ModelError
from pixgen.host_memory import reuse_freed_memory

DEFAULT_BACKEND = "ltx2"


def resolve_model_dir(model: str | None, cache_dir: Path | None = None) -> Path:
    """``tiny`` (or None) / ``tiny-2.5`` → that toy LTX-2, built once into a cache folder; anything else → that
    folder."""
    from pixgen.engine.ltx2.toy import tiny_model_dir, toy_generation

    generation = toy_generation(model)
    if generation is not None:
        return tiny_model_dir(cache_dir, generation)
    path = Path(model or "").expanduser()
    if not path.is_dir():
        raise ModelError(f"model folder {str(path)!r} does not exist (use --model tiny or a diffusers-format "
                         f"LTX-2 folder)", field="model")
    return path


def ltx2_control_types(model: str | None, cache_dir: Path | None = None) -> tuple[str, ...]:
    """The control types of the LTX-2 folder ``model`` names, from its file names (no torch, nothing built):
    the toy's are fixed by its code."""
    from pixgen.engine.ltx2.control_files import control_types
    from pixgen.engine.ltx2.toy import TOY_CONTROL_TYPES, toy_generation

    if toy_generation(model) is not None:
        return TOY_CONTROL_TYPES
    path = Path(model or "").expanduser()
    return control_types(path) if path.is_dir() else ()


def ltx2_auto_duration(model: str | None, cache_dir: Path | None = None) -> bool:
    """Whether the LTX-2 folder ``model`` names has LTX-2.5's duration head (``duration_head/`` with its config), read
    without torch and without building a toy: the toys' are fixed by their code."""
    from pixgen.engine.ltx2.toy import DURATION_HEAD_DIR, toy_generation

    generation = toy_generation(model)
    if generation is not None:
        return generation == "2.5"
    return (Path(model or "").expanduser() / DURATION_HEAD_DIR / "config.json").is_file()


def no_control_types(model: str | None, cache_dir: Path | None = None) -> tuple[str, ...]:
    return ()


def no_auto_duration(model: str | None, cache_dir: Path | None = None) -> bool:
    return False


@dataclass(frozen=True)
class Backend:
    id: str
    description: str
    capabilities: Capabilities
    engine: str  # "module:Class" of the Engine, imported only when it is loaded
    resolve: Callable[[str | None, Path | None], Path]  # (model setting, cache dir) → what ``Engine.load`` takes
    control_types: Callable[[str | None, Path | None], tuple[str, ...]] = no_control_types
    auto_duration: Callable[[str | None, Path | None], bool] = no_auto_duration

    def capabilities_for(self, model: str | None, cache_dir: Path | None = None) -> Capabilities:
        """The static capabilities plus what the model itself carries (its control types, a duration head), read
        without torch."""
        return replace(self.capabilities, control_types=self.control_types(model, cache_dir),
                       auto_duration=self.auto_duration(model, cache_dir))

    def engine_class(self) -> type[Engine]:
        module, _, name = self.engine.partition(":")
        return getattr(importlib.import_module(module), name)


LTX2_FRAMES_PER_LATENT = 8  # LTX-2's video VAE: 8 frames a latent, the first latent the first frame alone
LTX2_CAPABILITIES = Capabilities(
    extend=True, end_frame=True, multi_clip=True, audio=True, keyframes=True, audio_to_video=True,
    sound_for_video=True,
    # a retake's window: up to 17 source frames (8k+1) before the range, 3 single frames after it, 15 s at most
    retake=RetakeRule(frames_per_latent=LTX2_FRAMES_PER_LATENT, before_frames=17, after_frames=3, max_seconds=15),
    frames_per_latent=LTX2_FRAMES_PER_LATENT,
    stages=(("load", 0.02), ("prepare", 0.03), ("text", 0.03), ("denoise", 0.67), ("upsample", 0.05),
            ("decode", 0.15), ("encode", 0.05)))

BACKENDS: dict[str, Backend] = {b.id: b for b in (
    Backend("ltx2", "LTX-2 on diffusers pipelines", LTX2_CAPABILITIES, "pixgen.engine.ltx2.engine:LTX2Engine",
            resolve_model_dir, ltx2_control_types, ltx2_auto_duration),
)}


def backend(backend_id: str = DEFAULT_BACKEND) -> Backend:
    """The registered backend ``backend_id``, or the ``Backend`` a ``package.module:NAME`` id names; otherwise
    ``ConfigError`` naming the ``engine`` setting."""
    if backend_id in BACKENDS:
        return BACKENDS[backend_id]
    module, sep, name = backend_id.partition(":")
    found = None
    if sep:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            found = None
    if not isinstance(found, Backend):
        raise ConfigError(f"unknown engine {backend_id!r}; this pixgen has {', '.join(sorted(BACKENDS))}, or name "
                          f"another backend as package.module:NAME", field="engine")
    return found


def load_engine(model: str | None = "tiny", *, backend_id: str = DEFAULT_BACKEND, cache_dir: Path | None = None,
                options: EngineOptions | None = None, **option_values) -> Engine:
    """Load backend ``backend_id`` for ``model`` once; the returned engine serves many requests. ``options`` (or
    its fields as keywords: ``dtype="bfloat16"``) say where and how (``EngineOptions``)."""
    chosen = backend(backend_id)
    options = replace(options or EngineOptions(), **option_values)
    folder = chosen.resolve(model, cache_dir)  # first: a missing folder is named before the engine's imports
    reuse_freed_memory()  # this process runs a model now: its layers' tensors reuse freed pages
    return chosen.engine_class().load(folder, options)
