"""Sharding the zoo over the processes of `accelerate launch` / `torchrun`: rank, barriers, rank-local training.

LoRAs of different concepts are independent, so there is no data parallelism to do: rank r
trains concepts r, r + world, ... on its own, single-process. Two things must hold for that:

* The per-concept trainer (gan.trainer on accelerate) must not see the launcher's RANK /
  WORLD_SIZE / LOCAL_RANK, or it would set up DDP and average gradients of different concepts.
  `rank_local()` hides them while a rank trains.
* No torch.distributed process group may be live while training: gan.metrics all-reduces its
  sums whenever one is initialized, which would mix concepts' test metrics. So the two
  synchronisation points (after the main process wrote the plan and built the pairs; before it
  writes the final manifest) use the launcher's key-value store (torch.distributed.TCPStore at
  MASTER_ADDR:MASTER_PORT, hosted by the torchrun agent under `accelerate launch`) rather than a
  process-group barrier.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from weightgen.errors import WeightgenError

T = TypeVar("T")
# What accelerate's PartialState reads to decide on a multi-process setup (accelerate/state.py).
_DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
             "MV2_COMM_WORLD_SIZE")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise WeightgenError(f"environment variable {name} should be an integer, got {value!r}") from None


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """Rank and world size from the launcher's environment (torchrun / accelerate launch); 0 of 1 otherwise."""
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        if world < 1 or not 0 <= rank < world:
            raise WeightgenError(f"bad launcher environment: RANK={rank}, WORLD_SIZE={world}")
        return cls(rank, world, _env_int("LOCAL_RANK", rank))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items rank, rank + world, ... (by index, so shares differ by at most one)."""
        return list(items)[self.rank::self.world]


class StoreBarrier:
    """Barriers over the launcher's TCPStore; a no-op for a single process (see the module docstring)."""

    def __init__(self, ranks: Ranks, timeout_s: float, namespace: str = "weightgen-zoo"):
        self.ranks, self.timeout = ranks, datetime.timedelta(seconds=timeout_s)
        self.namespace, self.count, self.store = namespace, 0, None
        if ranks.world == 1:
            return
        addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not addr or not port:
            raise WeightgenError(f"WORLD_SIZE={ranks.world} but MASTER_ADDR/MASTER_PORT are not set: "
                                 "start the zoo with `accelerate launch` or `torchrun`")
        # Under torchrun (and so accelerate launch) the agent hosts the store; otherwise rank 0 does.
        agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
        self.store = dist.TCPStore(addr, int(port), ranks.world, is_master=ranks.is_main and not agent,
                                   timeout=self.timeout, wait_for_workers=False)

    def __call__(self, tag: str) -> None:
        """Block until every rank has reached the barrier named `tag` (or fail after the timeout)."""
        if self.store is None:
            return
        self.count += 1
        prefix = f"{self.namespace}/{self.count}-{tag}"
        self.store.set(f"{prefix}/{self.ranks.rank}", "1")
        self.store.wait([f"{prefix}/{r}" for r in range(self.ranks.world)], self.timeout)


@contextmanager
def rank_local() -> Iterator[None]:
    """Hide the launcher's multi-process variables so accelerate sets up single-process training here."""
    if dist.is_available() and dist.is_initialized():
        raise WeightgenError("the zoo trains each rank's concepts single-process and cannot run inside an "
                             "initialized torch.distributed process group")
    saved = {k: os.environ.pop(k) for k in _DIST_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch intra-op threads for this block (None: unchanged), restored after."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
