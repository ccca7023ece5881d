"""Data-parallel training on several processes, GPUs and nodes with PyTorch's own engine.

`torchrun` starts one process per device and describes the group in the environment
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `Distributed.start()` joins that
group: gloo for CPU tensors (and every control message), NCCL for CUDA tensors. Rank 0 does
the checks and writes; the other ranks learn its results, and every failure, through
collectives with a timeout, so that no rank waits for a peer that has given up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import RandomSampler, Sampler

from ..errors import ConfigError, PeerError

T = TypeVar("T")

TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls) -> Distributed:
        """Join the process group described by torchrun's environment (a single process
        when WORLD_SIZE is absent or 1). A group created by the caller is reused."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", 0)))
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size <= 1:
            return cls()
        if not dist.is_available():
            raise ConfigError("this PyTorch build has no torch.distributed")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        backend = "gloo"
        if torch.cuda.is_available() and dist.is_nccl_available():
            torch.cuda.set_device(local_rank)
            backend = "cpu:gloo,cuda:nccl"
        store, rank, world_size = next(dist.rendezvous("env://", timeout=TIMEOUT))
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun keeps one store across restarts of the worker group: without a prefix
            # per attempt, restarted ranks can read the dead ranks' addresses and fail to
            # connect (pytorch/pytorch#135712).
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = dist.PrefixStore(f"unetzoo/attempt-{attempt}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=TIMEOUT)
        return cls(rank, world_size, local_rank, owns_group=True)

    def stop(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def device(self, requested: str) -> str:
        """This rank's device: each process of a CUDA run takes the GPU of its LOCAL_RANK."""
        if not self.enabled or requested == "cpu":
            return requested
        if requested == "auto":
            return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        if requested == "cuda":
            return f"cuda:{self.local_rank}"
        raise ConfigError(f"--device {requested} does not fit a distributed run: use cuda "
                          "(each process takes the GPU of its LOCAL_RANK) or cpu")

    # -- agreement --------------------------------------------------------------------
    def shared(self, work: Callable[[], T]) -> T:
        """Run `work` on rank 0 and hand its result to every rank. When it fails, rank 0
        raises its error and every other rank a PeerError naming it."""
        if not self.enabled:
            return work()
        box: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                box[0] = ("ok", work())
            except Exception as exc:
                error = exc
                box[0] = ("error", str(exc))
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        status, value = box[0]
        if status == "error":
            raise PeerError(f"stopped because rank 0 failed: {value}")
        return value

    def agreed(self, work: Callable[[], T]) -> T:
        """Run `work` on every rank; if it fails anywhere, every rank raises (the failing
        rank its own error, the others a PeerError naming the first failure)."""
        if not self.enabled:
            return work()
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except Exception as exc:
            error = exc
        messages: list[str | None] = [None] * self.world_size
        dist.all_gather_object(messages, None if error is None else str(error))
        if error is not None:
            raise error
        failed = next(((rank, m) for rank, m in enumerate(messages) if m is not None), None)
        if failed is not None:
            raise PeerError(f"stopped because rank {failed[0]} failed: {failed[1]}")
        return result  # type: ignore[return-value]

    def reduce_sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sum over ranks of a few numbers (one all-reduce)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


class ShardSampler(Sampler[int]):
    """This rank's share of one epoch, from global step `start` on.

    The epoch's order is a pure function of (seed, epoch): every rank draws the same one
    and takes its own contiguous `batch`-sized slice of each global batch (`batch` x
    world size samples), so N processes see exactly the samples one process sees with an
    N times larger batch. Resuming mid-epoch skips the consumed steps without reading them.
    """

    def __init__(self, size: int, batch: int, steps: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.size, self.batch, self.steps = size, batch, steps
        self.seed, self.epoch, self.start = seed, epoch, start
        self.rank, self.world_size = rank, world_size

    def order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        count = self.steps * self.batch * self.world_size
        return list(RandomSampler(range(self.size), num_samples=count, generator=generator))

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        for step in range(self.start, self.steps):
            first = (step * self.world_size + self.rank) * self.batch
            yield from order[first: first + self.batch]

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.batch
