"""Which process this is, so the training loop works alone and under `torchrun` alike.

Without an initialized process group, this is process 0 of 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (the tensor itself when alone)."""
    if active():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if active():
        dist.barrier()
