"""Media in a folder: the default store (``{data_dir}/media``), shared by the nodes of a fleet through a mount."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pixgen.storage import CHUNK, check_name


class LocalMediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, source: Path, content_type: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.path(name)
        try:
            os.replace(source, target)  # same file system (the work folder sits in the data folder): atomic
        except OSError:
            shutil.move(str(source), str(target))

    def size(self, name: str) -> int | None:
        try:
            path = self.path(name)
            return path.stat().st_size if path.is_file() else None
        except (OSError, ValueError):
            return None

    def open(self, name: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.path(name).open("rb") as fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def url(self, name: str, *, ttl: int, content_type: str) -> str | None:
        return None  # the API serves local files itself, behind its own signed links

    def local_copy(self, name: str, work_dir: Path) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(name)
        return path

    def delete(self, name: str) -> None:
        with contextlib.suppress(ValueError):
            self.path(name).unlink(missing_ok=True)
