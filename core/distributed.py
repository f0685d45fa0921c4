"""One run on several processes (torchrun / accelerate launch, one process per GPU, on one or many nodes).

Every rank trains; rank 0 decides what to run and writes. Without a launcher (no WORLD_SIZE above 1) every
function here is a no-op, so the single-process path needs nothing of torch.distributed.
"""
from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def active() -> bool:
    """Several processes joined in one process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def start(timeout_seconds: int) -> bool:
    """Join the launcher's process group (NCCL on GPUs, else gloo) before the first run, so that rank 0's
    decisions can be broadcast; the Trainer then uses this group. True when this call created it."""
    if world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                            timeout=dt.timedelta(seconds=timeout_seconds))
    return True


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value):
    """Rank 0's `value` on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if not active():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first():
    """Rank 0 runs the block first (writing what the others then read); the other ranks wait, then run it."""
    if active() and dist.get_rank() != 0:
        dist.barrier()
    try:
        yield
    finally:
        if active() and dist.get_rank() == 0:
            dist.barrier()


def shard(count: int) -> range:
    """This rank's items out of `count`: every world_size-th, starting at its rank (balanced by construction)."""
    if not active():
        return range(count)
    return range(dist.get_rank(), count, dist.get_world_size())
