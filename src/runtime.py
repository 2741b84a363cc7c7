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


PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device, precision: str = "auto"):
    """The network's arithmetic: ``auto`` is bf16 autocast on CUDA and fp32 on a CPU; ``fp32`` and ``bf16``
    force one. On the CPU, bf16 pays only where the CPU computes it natively (AVX512-BF16, AMX):
    measured 0.04-0.7x of fp32 speed on an AVX2 CPU (docs/benchmarks.md), hence fp32 there by default."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class WithPrecision(torch.nn.Module):
    """Runs ``model`` under :func:`autocast` with a fixed ``precision`` and returns float32 outputs;
    whatever surrounds it (the scheduler arithmetic) stays in float32."""

    def __init__(self, model: torch.nn.Module, precision: str) -> None:
        super().__init__()
        self.model, self.precision = model, precision

    def forward(self, *args, **kwargs):
        device = next(self.model.parameters(), torch.empty(0)).device
        with autocast(device, self.precision):
            output = self.model(*args, **kwargs)
        return output.float() if isinstance(output, torch.Tensor) else output


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
