"""Where finished videos and thumbnails live: one interface (``MediaStore``) that workers write through and API
nodes serve from, whatever is behind it.

- ``LocalMediaStore``: a folder (``{data_dir}/media``, shared between nodes by a network mount); the default.
- ``S3MediaStore``: a bucket and prefix on any S3-compatible service (``--media-store s3://bucket/prefix``).

Names are flat file names made by the worker (``<job>-<token prefix>.mp4``); a request never names one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

CHUNK = 256 * 1024  # bytes per read when streaming a stored file
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


class MediaStore(Protocol):
    def put(self, name: str, source: Path, content_type: str) -> None:
        """Store the local file ``source`` as ``name`` (the file is moved or uploaded; ``source`` is gone after)."""
        ...

    def size(self, name: str) -> int | None:
        """The stored file's length in bytes, or None when there is none."""
        ...

    def open(self, name: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start``..``end`` (inclusive; ``end`` None: to the last) of the stored file, in chunks."""
        ...

    def url(self, name: str, *, ttl: int, content_type: str) -> str | None:
        """A signed URL clients may fetch the file from directly (range requests included) for ``ttl`` seconds,
        or None when the API serves it itself (a local folder)."""
        ...

    def local_copy(self, name: str, work_dir: Path) -> Path:
        """A local path holding the file (for a worker that reads it, e.g. the source of an extension): the file
        itself when it is local, else a download into ``work_dir`` the caller removes."""
        ...

    def delete(self, name: str) -> None:
        """Remove the file; nothing happens when it is not there."""
        ...


def check_name(name: str) -> str:
    """A stored file's name: flat, no path separators or dot-dot; ``ValueError`` otherwise."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(f"not a media file name: {name!r}")
    return name


def media_store_for(settings: Any) -> MediaStore:
    """The store ``Settings`` name (``media_store``, ``media_dir``, ``s3_endpoint_url``)."""
    if settings.media_store.startswith("s3://"):
        from pixgen.storage.s3 import MAX_PRESIGN_SECONDS

        if settings.media_url_ttl > MAX_PRESIGN_SECONDS:  # the bucket's links expire with ours, and S3 caps them
            from pixgen.errors import ConfigError

            raise ConfigError(f"media_url_ttl is {settings.media_url_ttl} s; an S3 presigned link lasts at most "
                              f"{MAX_PRESIGN_SECONDS} s (7 days)", field="media_url_ttl")
    return open_media_store(settings.media_store, local_root=settings.media_dir,
                            endpoint_url=settings.s3_endpoint_url)


def open_media_store(location: str, *, local_root: Path, endpoint_url: str = "") -> MediaStore:
    """The store ``location`` names: "" → the folder ``local_root``; ``s3://bucket/prefix`` → that bucket."""
    if location.startswith("s3://"):
        from pixgen.storage.s3 import S3MediaStore

        return S3MediaStore.from_url(location, endpoint_url=endpoint_url or None)
    if location:
        from pixgen.errors import ConfigError

        raise ConfigError(f"media store {location!r} is not understood; give nothing (the data folder) or "
                          f"s3://bucket/prefix", field="media_store")
    from pixgen.storage.local import LocalMediaStore

    return LocalMediaStore(local_root)
