"""How a pixgen process's freed host memory is handled (glibc's malloc; elsewhere these do nothing).

glibc serves an allocation above its mmap threshold with a mapping of its own, unmapped when freed, and moves that
threshold with the sizes it sees freed. Two kinds of process want opposite things of it:

- the API decodes images at submit, in bursts: its large blocks should go back to the system at free, or a burst
  of 36-megapixel images leaves the process at its peak (PIL holds a decoded image in 16 MB blocks; 2.3 GB for six
  requests) — ``return_large_blocks_at_free`` and ``release_freed_memory``;
- a model process (a worker, a rank, ``pixgen generate``) allocates and frees the same large tensors at every
  layer of every job: each one a fresh mapping means the kernel zeroes every page again (a CPU job spent a quarter
  of its time there: 0.88 of 3.29 s in system time for three toy jobs) — ``reuse_freed_memory``.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 1024 * 1024  # bytes: for the API, allocations from here up are mappings of their own
KEEP_FREED = 1024 * 1024 * 1024  # bytes: for a model process, blocks up to this come from the heap and stay there


def return_large_blocks_at_free() -> None:
    """Fix the mmap threshold at ``LARGE_BLOCK`` for this process (the API's: decodes at submit)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)


def release_freed_memory() -> None:
    """Return the free pages of every arena to the system (``malloc_trim(0)``): what a decode freed below
    ``LARGE_BLOCK``."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def reuse_freed_memory() -> None:
    """Serve blocks up to ``KEEP_FREED`` from the heap and keep up to as much free at its top, for this process (one
    that runs a model): a job's tensors reuse the pages the last layer freed. The process stays at its peak host
    memory, as a model process does anyway from its second job on."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, KEEP_FREED)
        _LIBC.mallopt(M_TRIM_THRESHOLD, KEEP_FREED)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()
