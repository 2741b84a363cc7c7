"""Runtime services both pipelines share: the device, mixed precision and seeding.

CUDA when present (bf16 autocast there only), the CPU otherwise. Training, the reconstruction
engine and the scripts all take their device from :func:`pick_device` (through
:func:`src.distributed.init_distributed` under torchrun).
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def pick_device(local_rank: int | None = None) -> torch.device:
    """This process's device: the CUDA device ``local_rank`` (or the current one) if any, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
