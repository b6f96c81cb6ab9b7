"""Multi-process training through torch.distributed: set-up from torchrun's environment, the
per-rank share of a global batch, and sums over ranks."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> bool:
    """Start the process group if launched by ``torchrun`` (WORLD_SIZE > 1) and none exists yet:
    nccl on GPUs, gloo on CPU. Returns whether training is distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's share of one global batch: equal contiguous slices (the last may be shorter)."""
    return indices.tensor_split(world)[rank]


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over ranks (identity on one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
