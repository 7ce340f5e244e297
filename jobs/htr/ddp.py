"""The process group under torchrun: started by the run that needs it, ended by the same run.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the trainer starts the
default process group (NCCL on GPUs, gloo on CPUs) and destroys it when it ends. A checkpoint
records the world size it was written by; a resume with another number of processes (another
`--gpus`) carries on from the same place in the epoch (`rescale_position`). A process that
exits with the group still alive can abort at interpreter shutdown ('terminate called without an
active exception', SIGABRT): gloo's worker threads still hold work whose tensors reach back into
Python while the interpreter is torn down.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in the run."""

    rank: int = 0  # 0 writes the events, checkpoints and the model
    world: int = 1  # processes in the run
    local_rank: int = 0  # this process's GPU on its machine
    started_here: bool = False  # this run started the process group, and must destroy it


def cuda_devices() -> int:
    """CUDA GPUs this machine has (what one process per GPU can use)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start(device_name: str = "auto") -> Group:
    """The group from torchrun's environment; starts the process group when there is more than one."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    if world > 1 and not dist.is_initialized():
        gpu = device_name != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if gpu else "gloo")
        started = True
    return Group(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), started)


def leave(group: Group | None, clean: bool) -> None:
    """Destroy the process group if this run started it. After a clean end every rank meets at a
    barrier first, so that none tears its connections down while another still talks to it; after
    a failure it is destroyed at once (the other ranks' collectives then fail instead of hanging)."""
    if group is None or not group.started_here or not dist.is_initialized():
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()


def agree(device: torch.device, world: int, *flags: bool) -> list[bool]:
    """Each flag true on any rank is true on all (so that all ranks stop or save together)."""
    if world == 1:
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def each(value: float, rank: int, device: torch.device, world: int) -> list[float]:
    """Every rank's `value`, in rank order (all ranks must call it at the same point)."""
    if world == 1:
        return [value]
    t = torch.zeros(world, dtype=torch.float64, device=device)
    t[rank] = value
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def rescale_position(position: int, saved_world: int, world: int) -> int:
    """A resume position (micro-batches of this epoch done, per rank) saved by `saved_world`
    processes, for `world` processes. Every rank takes every world-th batch of the same list,
    so `position` x `saved_world` batches of the epoch are done; the new ranks start at the
    last whole round of those: none is skipped, fewer than `world` are trained on twice."""
    if saved_world == world or saved_world < 1:
        return position
    return position * saved_world // world


def smallest(value: int, device: torch.device, world: int) -> int:
    """The smallest of every rank's `value`."""
    if world == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
