"""Data-parallel training with torch.distributed (DistributedDataParallel, gloo on CPU).

Launch with torchrun, which sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT::

    torchrun --nproc_per_node 2 -m lab4f.distributed --kind teacher --dataset mnist5k --out teacher.pt
    torchrun --nproc_per_node 2 -m lab4f.cli train --ddp --kind teacher ...   # same, through the CLI

Each rank trains on its DistributedSampler shard; DDP averages the gradients. BatchNorm running statistics
are not gradients: DDP broadcasts rank 0's buffers before each forward, and :func:`sync_buffers`
broadcasts them once more after each epoch so every rank ends with identical parameters AND buffers.
Only rank 0 writes checkpoints and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
        return DistributedDataParallel(model) if self.distributed else model  # syncs buffers each forward

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


def init_from_env(backend: str = "gloo") -> DistContext:
    """Join the process group described by torchrun's environment (no-op outside torchrun)."""
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group(backend=backend)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    return current_context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Broadcast rank 0's buffers (BatchNorm running stats) to all ranks."""
    if not ctx.distributed:
        return
    for buf in getattr(model, "module", model).buffers():
        dist.broadcast(buf.data, src=0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab4f.distributed`` under torchrun: ``lab4f train`` arguments plus ``--rank-state-dir``."""
    from lab4f.commands.train import add_train_arguments, run_train
    from lab4f.errors import Lab4fError

    parser = argparse.ArgumentParser(prog="torchrun ... -m lab4f.distributed", description=main.__doc__)
    add_train_arguments(parser)
    parser.add_argument("--rank-state-dir", type=Path, default=None,
                        help="each rank saves its final state dict here as rank<N>.pt (for checks)")
    args = parser.parse_args(argv)
    args.ddp = True
    ctx = init_from_env()
    try:
        result = run_train(args)
        if args.rank_state_dir is not None:
            args.rank_state_dir.mkdir(parents=True, exist_ok=True)
            state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
            torch.save(state, args.rank_state_dir / f"rank{ctx.rank}.pt")
        if ctx.is_main:
            s = result.summary()
            print(f"world_size={ctx.world_size} epochs={s['epochs_completed']} "
                  f"val_accuracy={s['last_val_accuracy']:.4f} test_accuracy={s['test_accuracy']:.4f}")
    except Lab4fError as exc:
        print(f"rank {ctx.rank}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
