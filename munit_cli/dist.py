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
def context(device: str = "auto") -> Context:
    """Join the process group torchrun set up (once), or describe the single process. Workers use
    the GPU of their local rank unless `device` is 'cpu' (then gloo on CPU processes)."""
    if not launched():
        return Context(0, 1, 0, torch.device("cpu"))
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
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


def shutdown() -> None:
    """Leave the process group cleanly: exiting with gloo's threads alive aborts the process
    ("terminate called without an active exception") after the work is done."""
    if not launched():
        return
    import torch.distributed as tdist

    if tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()
    context.cache_clear()


def barrier() -> None:
    if launched():
        import torch.distributed as tdist

        tdist.barrier()


def mean_of(values: dict[str, float]) -> dict[str, float]:
    """Average logged numbers over ranks (only at log intervals: it synchronises)."""
    if not launched() or not values:
        return values
    import torch.distributed as tdist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    tdist.all_reduce(t)
    return {k: v / tdist.get_world_size() for k, v in zip(keys, t.tolist())}


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step)."""
    return largest(1.0 if flag else 0.0) > 0


def largest(value: float) -> float:
    """The largest of the ranks' values, on every rank."""
    if not launched():
        return value
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return float(t.item())


def ranks_agree(module: torch.nn.Module) -> bool:
    """Whether every rank holds the same weights (a cheap checksum, compared across ranks)."""
    if not launched():
        return True
    import torch.distributed as tdist

    with torch.no_grad():
        checksum = torch.stack([p.double().sum() for p in module.parameters()]).to(_collective_device())
    gathered = [torch.zeros_like(checksum) for _ in range(tdist.get_world_size())]
    tdist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def _collective_device() -> torch.device:
    import torch.distributed as tdist

    return torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")


def launch(nproc: int, worker_args: list[str], cpu: bool) -> None:
    """Start `nproc` local workers with torchrun's launcher running `munit train worker_args`.
    torchrun's agent takes the whole job down when a worker dies; we turn that into one message."""
    import subprocess
    import sys

    if nproc < 1:
        raise MunitError(f"--gpus must be at least 1, got {nproc}")
    if not cpu:
        found = torch.cuda.device_count()
        if found < nproc:
            raise MunitError(
                f"--gpus {nproc} asked for, but {found} CUDA GPU{'s' if found != 1 else ''} found",
                hint="use fewer --gpus, or add --device cpu to run CPU worker processes (gloo backend)",
            )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "munit_cli", "train", *worker_args,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    code = subprocess.call(command, env=env)
    if code in (130, 143, -2, -15):
        from munit_cli.errors import Interrupted

        signum = 2 if code in (130, -2) else 15
        raise Interrupted("distributed training stopped by a signal; resume with --resume auto", signum)
    if code != 0:
        raise MunitError(f"distributed training failed (a worker exited with code {code}; its message is above)")


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not launched():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)
