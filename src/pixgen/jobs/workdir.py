"""A worker's scratch folder (``{data_dir}/work``): what one attempt at a job writes there before the media store
takes it (the video, its thumbnail and early draft, a download of the video it extends), named after the attempt:
``{job id}-{lease token's first 8 hex}`` (``attempt_stem``) plus a suffix, or a folder of that name.

A worker killed mid-job (SIGKILL, OOM, power) leaves them behind; ``sweep`` removes every entry whose attempt is no
longer live — its job is no longer processing under that lease token (``JobStore.live_attempts``) — and keeps the
rest, which may belong to other workers sharing the folder. Workers sweep when they start and at each claim. Entries
not named after an attempt are left alone.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from pixgen.jobs.store import JobStore

log = logging.getLogger("pixgen.worker")

TOKEN_CHARS = 8  # of the lease token, in the names
_ATTEMPT = re.compile(rf"(job_[0-9a-f]{{24}})-([0-9a-f]{{{TOKEN_CHARS}}})(?:[-.].*)?")


def attempt_stem(job_id: str, token: str) -> str:
    """The name every file of this attempt starts with."""
    return f"{job_id}-{token[:TOKEN_CHARS]}"


def sweep(work_dir: Path, store: JobStore) -> list[str]:
    """Remove the entries of ``work_dir`` whose attempt has ended; returns their names."""
    try:
        entries = [(entry, _ATTEMPT.fullmatch(entry.name)) for entry in work_dir.iterdir()]
    except FileNotFoundError:
        return []
    named = [(entry, match[1], match[2]) for entry, match in entries if match is not None]
    if not named:
        return []
    live = store.live_attempts({job_id for _, job_id, _ in named}, TOKEN_CHARS)
    removed = []
    for entry, job_id, token in named:
        if (job_id, token) in live:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another worker swept it first
        removed.append(entry.name)
    if removed:
        log.info("work folder: removed %d file(s) of ended attempts: %s", len(removed), ", ".join(sorted(removed)))
    return removed
