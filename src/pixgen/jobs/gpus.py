"""Which GPU each of ``pixgen serve``'s workers gets, found without importing torch (the API process never does).

The GPUs are ``--gpus`` if given, else the entries of ``CUDA_VISIBLE_DEVICES`` if it is set, else the indices
``nvidia-smi -L`` lists (none on a machine without an NVIDIA driver: workers then run on the CPU). Each worker
gets one, as its own ``CUDA_VISIBLE_DEVICES``, so its ``cuda`` device is that GPU and nothing else; with
``--gpus-per-worker N`` each gets N (``"0,1"``) and runs every job over them (``group.py``). More workers than GPUs
is refused unless sharing is asked for (two 64 GiB LTX-2 copies do not fit one GPU).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping

from pixgen.errors import InvalidRequest

_NVIDIA_SMI_GPU = re.compile(r"^GPU (\d+):", re.MULTILINE)


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [d.strip() for d in listed.split(",") if d.strip()]
        # CUDA stops at the first invalid entry; "-1" (or "") is the usual way to hide every GPU.
        return ids[: next((i for i, d in enumerate(ids) if d.startswith("-")), len(ids))]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=15,
                             env={**environ, "PATH": environ.get("PATH", os.defpath)})
    except (OSError, subprocess.TimeoutExpired):
        return []
    return _NVIDIA_SMI_GPU.findall(out.stdout) if out.returncode == 0 else []


def parse_gpus(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def assign_gpus(workers: int, gpus: list[str], *, share: bool, per_worker: int = 1) -> list[str | None]:
    """The GPU(s) of each worker slot, comma-separated (None: no GPU, the worker runs on the CPU)."""
    if not gpus:
        return [None] * workers
    if per_worker > 1:
        if workers * per_worker > len(gpus):
            raise InvalidRequest(f"{workers} workers of {per_worker} GPUs need {workers * per_worker} GPUs, but "
                                 f"{len(gpus)} are named ({','.join(gpus)})", field="gpus_per_worker")
        return [",".join(gpus[slot * per_worker:(slot + 1) * per_worker]) for slot in range(workers)]
    if workers > len(gpus) and not share:
        raise InvalidRequest(f"{workers} workers but {len(gpus)} GPU(s) ({','.join(gpus)}): each worker loads the "
                             f"whole model onto its GPU; use --workers {len(gpus)}, name more with --gpus, or "
                             f"pass --share-gpus", field="workers")
    return [gpus[slot % len(gpus)] for slot in range(workers)]


def worker_environment(gpu: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that pin one worker to ``gpu`` (indices are nvidia-smi's, which count in PCI bus order)."""
    if gpu is None:
        return {}
    env = {"CUDA_VISIBLE_DEVICES": gpu}
    if "CUDA_DEVICE_ORDER" not in environ and all(g.isdigit() for g in gpu.split(",")):
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env
