"""Data-parallel training with torch.distributed (DistributedDataParallel; NCCL on CUDA, gloo on CPU).

Launch ``lab4f train --ddp`` with torchrun, which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT::

    torchrun --nproc_per_node 2 -m lab4f.cli train --ddp --kind teacher --dataset mnist5k --out teacher.pt
    torchrun --nproc_per_node 4 -m lab4f.cli train --ddp --device cuda ...   # one GPU per rank (LOCAL_RANK)

Each rank trains on its DistributedSampler shard; DDP averages the gradients. BatchNorm running statistics
are not gradients: DDP broadcasts rank 0's buffers before each forward, and :func:`sync_buffers`
broadcasts them once more after each epoch so every rank ends with identical parameters AND buffers.
Only rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job; the single-process default is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model`` in a multi-process job, else ``model`` itself."""
        if not self.distributed:
            return model
        dev = next(model.parameters()).device
        ids = [dev.index] if dev.type == "cuda" and dev.index is not None else None
        return DistributedDataParallel(model, device_ids=ids)  # syncs buffers each forward

    def all_finite(self, loss: torch.Tensor) -> bool:
        """True if the loss is finite on EVERY rank (all must stop together, or the others hang)."""
        ok = torch.isfinite(loss.detach()).all().to(torch.float32).reshape(1)
        if self.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)


def current_context() -> DistContext:
    """The context of the initialised default process group, or the single-process context."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())
    return DistContext()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(backend: str | None = None, device: str = "cpu") -> DistContext:
    """Join the process group described by torchrun's environment (no-op outside torchrun).

    The backend follows the device (NCCL for CUDA, gloo otherwise) unless given; on CUDA each rank takes the
    GPU of its LOCAL_RANK. CPU threads per rank: the machine's free cores shared among its ranks.
    """
    from lab4f.device import ddp_backend, default_threads

    if launched_by_torchrun() and not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend or ddp_backend(device))
        local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
        torch.set_num_threads(default_threads(ranks_per_machine=local))
    return current_context()


def rank_device(device: str) -> str:
    """This rank's device: ``cuda:<LOCAL_RANK>`` for a CUDA job, the device itself otherwise."""
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Broadcast rank 0's buffers (BatchNorm running stats) to all ranks."""
    if not ctx.distributed:
        return
    for buf in getattr(model, "module", model).buffers():
        dist.broadcast(buf.data, src=0)
