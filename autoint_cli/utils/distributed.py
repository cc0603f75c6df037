"""Working as one of several processes started by torchrun (torch.distributed).

The CLI starts the process group and hands the library a :class:`Distributed`;
everything below it asks that object, never the environment. A plain run is
rank 0 of 1, and every method then does nothing (or the obvious thing) without
touching torch.distributed.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Distributed:
    """This process's place among ``world_size`` processes.

    Attributes:
        rank: 0 … world_size − 1; rank 0 writes logs, checkpoints and reports.
        world_size: the number of processes.
        device: where this process computes (collectives of the NCCL backend need CUDA tensors there).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> List[int]:
        """This rank's share of n items, interleaved (rank, rank + K, …) so that ranks finish together."""
        return list(range(self.rank, n, self.world_size))

    def split(self, n: int) -> slice:
        """This rank's contiguous block of a batch of n (n divisible by world_size)."""
        if n % self.world_size:
            raise ValueError(f"a batch of {n} does not split evenly over {self.world_size} processes")
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def sum(self, tensor: Tensor) -> Tensor:
        """Σ over ranks of ``tensor`` (a new tensor on every rank)."""
        if not self.active:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def max(self, values: Sequence[float]) -> List[float]:
        """The elementwise maximum over ranks of a few numbers, on every rank: for decisions all ranks take together."""
        if not self.active:
            return [float(v) for v in values]
        top = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        return top.tolist()

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Each rank's ``obj``, in rank order, on rank 0 (None elsewhere); any picklable object."""
        if not self.active:
            return [obj]
        received = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, received, dst=0)
        return received

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = Distributed()


def merge_shards(shards: Sequence[Sequence[Any]], world_size: int) -> List[Any]:
    """Undoes :meth:`Distributed.shard`: the items of every rank, back in their original order."""
    n = sum(len(s) for s in shards)
    merged: List[Any] = [None] * n
    for rank, items in enumerate(shards):
        for j, item in enumerate(items):
            merged[rank + j * world_size] = item
    return merged
