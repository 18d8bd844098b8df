"""torch.distributed for one job over several ranks, model-neutral: the process group, and the channel rank 0
hands jobs to the other ranks through.

Rank 0 hosts a ``TCPStore``; the process group (NCCL on GPUs, gloo on CPUs) rendezvous through it under a prefix,
and the job channel uses it under another. Jobs go through the store, not a collective: a rank may wait hours for
its next job, while a collective has to finish within ``timeout`` (a rank that dies or hangs must end the job's
attempt, not hold it forever). Any failure of a collective is raised as ``RankGroupBroken``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed import PrefixStore, Store, TCPStore

from pixgen.engine.parallel_plan import Layout, divisors
from pixgen.errors import RankGroupBroken

log = logging.getLogger("pixgen.parallel")

RENDEZVOUS_SECONDS = 600.0  # ranks start together, but a busy machine may take a while to start them all
POLL_SECONDS = 0.02  # how often a waiting rank looks for its next job in the store
STOPPING_GRACE = 5.0  # how long rank 0, stopping, still waits for the others' answers
T = TypeVar("T")


@dataclass
class RankGroup:
    """This process's place in its group: rank, world, the store and the collective timeout (seconds)."""

    rank: int
    world: int
    backend: str
    timeout: float
    store: TCPStore = field(repr=False)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def channel(self) -> Channel:
        return Channel(PrefixStore("jobs/", self.store), self.rank, self.world)


def init_rank_group(rank: int, world: int, *, port: int, device: torch.device, timeout: float,
                    host: str = "127.0.0.1") -> RankGroup:
    """Join the group (blocks until every rank has); NCCL for a CUDA ``device``, gloo otherwise."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        # A collective that times out raises in the waiting thread (the job is handed back) instead of the watchdog
        # tearing the process down.
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        torch.cuda.set_device(device)
    store = TCPStore(host, port, world, is_master=rank == 0, timeout=timedelta(seconds=RENDEZVOUS_SECONDS),
                          wait_for_workers=True)
    dist.init_process_group(backend, store=PrefixStore("pg/", store), rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout),
                            device_id=device if backend == "nccl" else None)
    _make_subgroups(rank, world, timedelta(seconds=timeout))
    log.info("rank %d of %d joined (%s, %s; collectives time out after %.0f s)", rank, world, backend, device,
             timeout)
    return RankGroup(rank, world, backend, timeout, store)


# This rank's sub-groups for every way of splitting the world (``parallel_plan.Layout``): (the ranks that share
# one pass, the ranks that hold the same slice of each pass); None for a group of one.
_SUBGROUPS: dict[Layout, tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]] = {}


def _make_subgroups(rank: int, world: int, timeout: timedelta) -> None:
    """Every sub-group, made at once after joining (``new_group`` is collective: every rank makes every group, in
    the same order, while they are all here, not later when loading the model may have kept one back). Each gets
    the group's timeout: ``new_group`` does not inherit it (its default is 30 minutes)."""
    _SUBGROUPS.clear()
    for s in divisors(world):
        g = world // s
        sequence = [dist.new_group(list(range(i * s, (i + 1) * s)), timeout=timeout) if s > 1 else None
                    for i in range(g)]
        guidance = [dist.new_group(list(range(j, world, s)), timeout=timeout) if g > 1 else None for j in range(s)]
        _SUBGROUPS[Layout(g, s)] = (sequence[rank // s], guidance[rank % s])


def subgroups() -> dict[Layout, tuple[dist.ProcessGroup | None, dist.ProcessGroup | None]]:
    return dict(_SUBGROUPS)


def leave_rank_group() -> None:
    _SUBGROUPS.clear()
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a group."""
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


@contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn the failure of a collective (a rank died, hung past the timeout, or the link broke) into
    ``RankGroupBroken``: the group cannot go on, the job goes back to the queue."""
    try:
        yield
    except RuntimeError as exc:
        if not is_group_failure(exc):
            raise  # an error of the job itself (out of memory, a bug): not the group's
        raise RankGroupBroken(f"{what} failed: {exc}") from exc


def is_group_failure(exc: BaseException) -> bool:
    """A collective's own failure: NCCL raises ``DistError``s; gloo plain ``RuntimeError``s that name it."""
    return isinstance(exc, dist.DistError) or any(word in str(exc) for word in _GROUP_FAILURE_WORDS)


_GROUP_FAILURE_WORDS = ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe", "Timed out")


class Channel:
    """Messages (JSON objects) from rank 0 to the others, one numbered job at a time, and each rank's answer."""

    def __init__(self, store: Store, rank: int, world: int) -> None:
        self.store, self.rank, self.world = store, rank, world
        self.seq = 0

    def send(self, message: dict[str, Any]) -> int:
        """Rank 0: the next job for every other rank; returns its number."""
        self.seq += 1
        self.store.set(f"job/{self.seq}", json.dumps(message))
        return self.seq

    def receive(self, stop: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        """Another rank: wait for the next job (None once ``stop()``)."""
        key = f"job/{self.seq + 1}"
        while not self.store.check([key]):
            if stop():
                return None
            time.sleep(POLL_SECONDS)
        self.seq += 1
        return dict(json.loads(self.store.get(key)))

    def answer(self, message: dict[str, Any]) -> None:
        """Another rank: how the current job ended for it."""
        self.store.set(f"done/{self.seq}/{self.rank}", json.dumps(message))

    def ready(self) -> None:
        """Another rank: its model is loaded."""
        self.store.set(f"ready/{self.rank}", "1")

    def wait_ready(self, stop: Callable[[], bool] = lambda: False) -> bool:
        """Rank 0: wait until every other rank has loaded its model (loading is not timed: a 64 GB load from a
        busy disk may take minutes); False if ``stop()`` first."""
        keys = [f"ready/{r}" for r in range(1, self.world)]
        while not self.store.check(keys):
            if stop():
                return False
            time.sleep(POLL_SECONDS * 10)
        return True

    def answered(self, seq: int) -> bool:
        """Rank 0: has every other rank answered job ``seq`` (so none will join another collective for it)?"""
        return bool(self.store.check([f"done/{seq}/{r}" for r in range(1, self.world)]))

    def answers(self, seq: int, timeout: float, stop: Callable[[], bool] = lambda: False) -> list[dict[str, Any]]:
        """Rank 0: every other rank's answer to job ``seq``; ``RankGroupBroken`` when one has none in ``timeout``
        (a few seconds once ``stop()``: this rank is stopping, maybe because another died)."""
        keys = [f"done/{seq}/{r}" for r in range(1, self.world)]
        deadline = time.monotonic() + timeout
        while not self.store.check(keys):
            if stop():
                deadline = min(deadline, time.monotonic() + STOPPING_GRACE)
                stop = lambda: False  # noqa: E731 - shorten once
            if time.monotonic() > deadline:
                missing = [k.rsplit("/", 1)[1] for k in keys if not self.store.check([k])]
                raise RankGroupBroken(f"rank(s) {', '.join(missing)} did not finish job {seq} within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        out = [dict(json.loads(self.store.get(k))) for k in keys]
        for k in (*keys, f"job/{seq}"):
            self.store.delete_key(k)
        return out
