"""Preset LoRAs: the files a model folder ships under ``loras/``, active for one job at a time.

A preset names a file (``presets.Preset.lora``); the engine uses it only when ``<folder>/loras/<file>`` exists.
Each file is loaded once, on first use, with the pipeline's ``load_lora_weights`` (adapter name = file stem) into
the components the pipelines share, so every pipeline sees it. ``active`` switches the job's adapters on with
``set_adapters`` and switches every adapter off again when the job ends (also on error or cancel).
LoRA loading needs ``peft``; without it the files are reported once and skipped (the prompt fragments still apply).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger("pixgen.engine")

LORA_DIR = "loras"
_COMPONENTS = ("transformer", "connectors")  # LTX2LoraLoaderMixin's loadable modules


class PresetLoras:
    def __init__(self, folder: Path) -> None:
        self.dir = Path(folder) / LORA_DIR
        files = sorted(p.name for p in self.dir.glob("*.safetensors")) if self.dir.is_dir() else []
        self.files: frozenset[str] = frozenset(files)
        self.loaded: set[str] = set()
        self.usable = bool(files) and _peft_available()
        if files and not self.usable:
            log.warning("%s has LoRA files %s but peft is not installed: they are not used", self.dir, files)

    def pick(self, names: Iterable[str]) -> list[str]:
        """The asked-for LoRA files this folder has (in order, once each), if LoRAs can be loaded at all."""
        if not self.usable:
            return []
        return list(dict.fromkeys(n for n in names if n in self.files))

    @contextmanager
    def active(self, pipe, names: Iterable[str]) -> Iterator[list[str]]:
        """Within the block, exactly the adapters of ``names`` (those this folder has) are on; yields them."""
        files = self.pick(names)
        if not files:
            yield []
            return
        for name in files:
            if name not in self.loaded:
                pipe.load_lora_weights(str(self.dir), weight_name=name, adapter_name=adapter_name(name),
                                       local_files_only=True)
                self.loaded.add(name)
        adapters = [adapter_name(n) for n in files]
        try:
            for model in _models_with_adapters(pipe):
                present = [a for a in adapters if a in model.peft_config]
                model.enable_lora()
                if present:  # set_adapters takes only names this model holds; the others go inactive
                    model.set_adapters(present, [1.0] * len(present))
                else:
                    model.disable_lora()
            yield adapters
        finally:
            for model in _models_with_adapters(pipe):
                model.disable_lora()


def adapter_name(file_name: str) -> str:
    return Path(file_name).stem.replace(".", "_")


def _models_with_adapters(pipe) -> list:
    models = (getattr(pipe, name, None) for name in _COMPONENTS)
    return [m for m in models if m is not None and getattr(m, "_hf_peft_config_loaded", False)]


def _peft_available() -> bool:
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)
