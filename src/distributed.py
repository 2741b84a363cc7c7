"""torchrun support: one small helper around torch.distributed (single process is the default path).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op on one process.
The process group uses nccl on CUDA and gloo on CPU unless ``--dist_backend`` says otherwise.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from src.errors import UserError
from src.runtime import pick_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> Dist:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    if "RANK" not in os.environ:
        return Dist(device=pick_device())
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"))
        except (RuntimeError, ValueError) as err:
            raise UserError(f"cannot start the torchrun process group ({err}); check --dist_backend") from err
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def close_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def all_reduce_sum(d: Dist, *values: float) -> list[float]:
    """Sum plain numbers over all processes (every process gets the totals)."""
    if not d.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_to_main(d: Dist, obj):
    """Every process's ``obj`` as a list on the main process (None elsewhere)."""
    if not d.enabled:
        return [obj]
    gathered = [None] * d.world_size if d.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def shard(d: Dist, length: int) -> list[int]:
    """This process's indices of ``range(length)``: disjoint across processes, none repeated or padded."""
    return list(range(d.rank, length, d.world_size))


@contextlib.contextmanager
def distributed(backend: str | None = None):
    """``with distributed(args.dist_backend) as d:`` joins torchrun's group (if any) and leaves it after."""
    d = init_distributed(backend)
    try:
        yield d
    finally:
        close_distributed()


def on_main(d: Dist, function, *args):
    """Run ``function`` on the main process only and hand its result to every process.

    A :class:`UserError` raised there is raised on every process, so all stop together instead of
    the others waiting forever at the next collective.
    """
    result, error = None, None
    if d.is_main:
        try:
            result = function(*args)
        except UserError as err:
            error = str(err)
    if d.enabled:
        message = [result, error]
        dist.broadcast_object_list(message, src=0)
        result, error = message
    if error is not None:
        raise UserError(error)
    return result
