"""Runtime services both pipelines share: the device, mixed precision and seeding.

CUDA when present, the CPU otherwise. Training, the reconstruction engine and the scripts all take
their device from :func:`pick_device` (through :func:`src.distributed.init_distributed` under
torchrun), and a ``--precision`` of ``auto`` becomes fp32 or bf16 through :func:`resolve_precision`.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import random
import time

import numpy as np
import torch

log = logging.getLogger("rfood")


def pick_device(local_rank: int | None = None) -> torch.device:
    """This process's device: the CUDA device ``local_rank`` (or the current one) if any, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)


PRECISIONS = ("auto", "fp32", "bf16")
BF16_MIN_SPEEDUP = 1.2  # auto picks bf16 on a CPU only if its probe matmul runs at least this much faster
PROBE_SHAPE = (1024, 256, 256)  # (M, K, N): about one convolution of a small network as a matmul; ~1.5 ms in fp32
PROBE_REPEATS = 10


def cpu_bf16_flags() -> dict[str, bool]:
    """What PyTorch reports about this CPU: AVX512-BF16 and AMX (native bf16), and whether oneDNN has bf16
    kernels at all (emulated on plain AVX-512). A check this PyTorch lacks reads False."""
    def ask(namespace, name: str) -> bool:
        check = getattr(namespace, name, None)
        try:
            return bool(check()) if check is not None else False
        except (RuntimeError, AttributeError):
            return False
    return {"avx512_bf16": ask(torch.cpu, "_is_avx512_bf16_supported"),
            "amx": ask(torch.cpu, "_is_amx_tile_supported"),
            "onednn_bf16": ask(torch.ops.mkldnn, "_is_mkldnn_bf16_supported")}


def native_bf16(flags: dict[str, bool]) -> bool:
    return flags["avx512_bf16"] or flags["amx"]


def bf16_speedup(shape: tuple[int, int, int] = PROBE_SHAPE, repeats: int = PROBE_REPEATS) -> float:
    """fp32 seconds / bf16 seconds of one (M, K) @ (K, N) matmul on this process's threads: the best of
    ``repeats`` + 1 timed calls each (the first warms up), the two interleaved; a few tens of ms in all."""
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    best = {}
    for _ in range(repeats + 1):
        for name, (x, y) in pairs.items():
            started = time.perf_counter()
            torch.mm(x, y)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    return best["fp32"] / best["bf16"]


@functools.lru_cache(maxsize=1)
def cpu_precision_choice() -> tuple[str, str]:
    """(``bf16`` or ``fp32``, why) for this CPU: bf16 only where it is native and the probe confirms it;
    measured once per process."""
    flags = cpu_bf16_flags()
    shown = ", ".join(f"{name} {'yes' if value else 'no'}" for name, value in flags.items())
    if not native_bf16(flags):
        return "fp32", f"no native bf16 ({shown})"
    speedup = bf16_speedup()
    choice = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    return choice, f"{shown}; probe matmul bf16 {speedup:.2f}x fp32, bf16 needs {BF16_MIN_SPEEDUP}x"


def choose_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why): as given, or for ``auto`` bf16 on CUDA and :func:`cpu_precision_choice` on a CPU."""
    if precision != "auto":
        return precision, "as given"
    if device.type == "cuda":
        return "bf16", "auto on CUDA"
    choice, why = cpu_precision_choice()
    return choice, f"auto on this CPU: {why}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """:func:`choose_precision`'s choice; the log says what ``auto`` chose and why."""
    choice, why = choose_precision(precision, device)
    if precision == "auto":
        log.info("precision %s (%s)", choice, why)
    return choice


def former_auto(device: torch.device) -> str:
    """What ``auto`` meant before it probed the CPU (bf16 on CUDA, fp32 on a CPU): the precision of
    reconstructions and training runs that recorded none."""
    return "bf16" if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    """The network's arithmetic: ``fp32`` and ``bf16`` force one; ``auto`` (not resolved) is bf16 on CUDA
    and leaves a CPU as it is. Callers that resolved a precision pass it or wrap the model in
    :class:`WithPrecision`."""
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
