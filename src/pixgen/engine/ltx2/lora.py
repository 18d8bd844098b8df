"""LoRA adapters on the shared transformer: the preset LoRAs a folder ships under ``loras/``, and the distilled LoRA
that stage 2 of a dev checkpoint runs with.

A preset names a file (``presets.Preset.lora``); the engine uses it only when ``<folder>/loras/<file>`` exists.
Each file is loaded once, on first use, with the pipeline's ``load_lora_weights`` (adapter name = file stem) into
the components the pipelines share, so every pipeline sees it. ``job`` switches the job's adapters on with
``set_adapters`` and every adapter off again when the job ends (also on error or cancel); ``refine`` adds the
stage-2 adapter for the refine only (the reference's stage 2 runs the job's LoRAs *and* the distilled one);
``also`` adds a control video's IC-LoRA for stage 1 only (``control.py``).

Loading happens outside any ``torch.inference_mode`` block: parameters created in one are inference tensors,
and the next ``enable_lora`` outside it fails ("Setting requires_grad=True on inference tensor").
LoRA loading needs ``peft``; without it the files are reported once and skipped (the prompt fragments still apply).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

log = logging.getLogger("pixgen.engine")

LORA_DIR = "loras"
REFINE_ADAPTER = "pixgen_stage2_distilled"
_COMPONENTS = ("transformer", "connectors")  # LTX2LoraLoaderMixin's loadable modules


class PresetLoras:
    def __init__(self, pipe, folder: Path, refine_file: Path | None = None, *, preload: bool = False,
                 compute_dtype=None) -> None:
        self.pipe = pipe
        self.compute_dtype = compute_dtype  # for adapters over float8-stored layers (the fp8 memory mode)
        self.dir = Path(folder) / LORA_DIR
        files = sorted(p.name for p in self.dir.glob("*.safetensors")) if self.dir.is_dir() else []
        self.files: frozenset[str] = frozenset(files)
        self.loaded: set[str] = set()
        self.usable = _peft_available()
        if files and not self.usable:
            log.warning("%s has LoRA files %s but peft is not installed: they are not used", self.dir, files)
        self.refine_file = refine_file if refine_file is not None and self.usable else None
        if refine_file is not None and not self.usable:
            log.warning("%s is not used for stage 2: peft is not installed", refine_file)
        self._job: list[str] = []
        if self.refine_file is not None:
            self._load(self.refine_file, REFINE_ADAPTER)
        if preload:
            for name in self.pick(self.files):
                self._load(self.dir / name, adapter_name(name))
                self.loaded.add(name)
        self._switch([])

    @property
    def has_refine(self) -> bool:
        return self.refine_file is not None

    def pick(self, names: Iterable[str]) -> list[str]:
        """The asked-for LoRA files this folder has (in order, once each), if LoRAs can be loaded at all."""
        if not self.usable:
            return []
        return list(dict.fromkeys(n for n in names if n in self.files))

    @contextmanager
    def job(self, names: Iterable[str]) -> Iterator[list[str]]:
        """Within the block, exactly the adapters of ``names`` (those this folder has) are on; yields them."""
        files = self.pick(names)
        for name in files:
            if name not in self.loaded:
                self._load(self.dir / name, adapter_name(name))
                self.loaded.add(name)
        self._job = [adapter_name(n) for n in files]
        try:
            self._switch(self._job)
            yield list(self._job)
        finally:
            self._job = []
            self._switch([])

    @contextmanager
    def also(self, name: str) -> Iterator[str]:
        """Within the block the job's adapters and ``name`` (a file of ``loras/``: a control video's IC-LoRA) are
        on; yields its adapter name. Loaded on first use."""
        if name not in self.loaded:
            self._load(self.dir / name, adapter_name(name))
            self.loaded.add(name)
        adapter = adapter_name(name)
        self._switch([*self._job, adapter])
        try:
            yield adapter
        finally:
            self._switch(self._job)

    @contextmanager
    def refine(self) -> Iterator[bool]:
        """Within the block the job's adapters and the stage-2 distilled one are on; yields whether it exists."""
        if self.refine_file is None:
            yield False
            return
        self._switch([*self._job, REFINE_ADAPTER])
        try:
            yield True
        finally:
            self._switch(self._job)

    def _load(self, path: Path, adapter: str) -> None:
        self.pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter,
                                    local_files_only=True)
        _cast_float8_adapters(self.pipe, adapter, self.compute_dtype)

    def _switch(self, adapters: list[str]) -> None:
        for model in _models_with_adapters(self.pipe):
            present = [a for a in adapters if a in model.peft_config]
            if present:  # set_adapters takes only names this model holds; the others go inactive
                model.enable_lora()
                model.set_adapters(present, [1.0] * len(present))
            else:
                model.disable_lora()


def _cast_float8_adapters(pipe, adapter: str, compute_dtype) -> None:
    """peft gives a new adapter its base layer's dtype: over float8-stored layers (the fp8 memory mode) that is
    float8, which matmuls refuse. Such adapter layers are stored in float8 and computed in ``compute_dtype``, as
    the layers under them are."""
    from diffusers.hooks.layerwise_casting import apply_layerwise_casting_hook

    if compute_dtype is None:
        return
    for model in _models_with_adapters(pipe):
        for module in model.modules():
            for table in (getattr(module, "lora_A", None), getattr(module, "lora_B", None)):
                layer = table[adapter] if table is not None and adapter in table else None
                if layer is not None and layer.weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                    apply_layerwise_casting_hook(layer, layer.weight.dtype, compute_dtype, non_blocking=False)


def adapter_name(file_name: str) -> str:
    return Path(file_name).stem.replace(".", "_")


def _models_with_adapters(pipe) -> list:
    models = (getattr(pipe, name, None) for name in _COMPONENTS)
    return [m for m in models if m is not None and getattr(m, "_hf_peft_config_loaded", False)]


def _peft_available() -> bool:
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)
