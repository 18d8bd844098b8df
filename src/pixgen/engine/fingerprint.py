"""A model folder's fingerprint: one hash that changes when anything that shapes its output changes.

No torch here (the API process checks a replay against it). What goes in, for every file under the folder (links
followed, names relative, sorted):
- weights (``.safetensors``): name, size and the safetensors header (every tensor's name, dtype, shape and byte
  offsets) — a re-trained or re-quantised file changes it, and nothing multi-GB is read;
- other weight formats (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.gguf``): name and size;
- everything else (configs, ``pixgen.json``, tokenizers): name and the whole content, up to ``HASHED_WHOLE`` bytes
  (name and size beyond).
Modification times are left out on purpose: a copied or re-downloaded folder keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

OPAQUE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".gguf")
HASHED_WHOLE = 64 * 1024 * 1024
MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own cap on its JSON header
PREFIX = "sha256:"


def folder_fingerprint(folder: Path) -> str:
    """``sha256:<hex>`` over the folder's files as the module docstring says."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for relative, path in _files(folder):
        digest.update(relative.encode() + b"\0")
        digest.update(_file_part(path) + b"\n")
    return PREFIX + digest.hexdigest()


def text_fingerprint(text: str) -> str:
    """The fingerprint of a model that is not a folder (a test backend's options)."""
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()


def _files(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith("."):
                path = Path(root) / name
                found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def _file_part(path: Path) -> bytes:
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        return b"safetensors %d " % size + _safetensors_header(path)
    if path.suffix in OPAQUE_WEIGHTS or size > HASHED_WHOLE:
        return b"size %d" % size
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(block)
    return b"content " + hasher.hexdigest().encode()


def _safetensors_header(path: Path) -> bytes:
    """The header's bytes (8-byte little-endian length, then JSON); the size alone for a file that is not one."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return b"short"
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER:
            return b"bad-header"
        return hashlib.sha256(fh.read(length)).hexdigest().encode()
