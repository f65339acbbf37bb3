"""Distributed training glue: one process per GPU under torchrun, DistributedDataParallel wrappers.

A single process is the world of size 1: every helper here then does nothing, so the training
loop reads the same either way.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from munit_cli.errors import MunitError

TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def context() -> Context:
    """Join the process group torchrun set up (once), or describe the single process."""
    if not launched():
        return Context(0, 1, 0, torch.device("cpu"))
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and os.environ.get("MUNIT_DIST_DEVICE", "auto") != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not tdist.is_initialized():
        try:
            tdist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT)
        except Exception as exc:  # rendezvous failures come as several types
            raise MunitError(f"could not join the distributed job (rank {rank}/{world}): {exc}") from None
    return Context(rank, world, local_rank, device)


def barrier() -> None:
    if launched():
        import torch.distributed as tdist

        tdist.barrier()


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not launched():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)
