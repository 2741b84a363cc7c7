"""Runtime services both pipelines share: the device, mixed precision and seeding.

CUDA when present, the CPU otherwise. Training, the reconstruction engine and the scripts all take
their device from :func:`pick_device` (through :func:`src.distributed.init_distributed` under
torchrun), and a ``--precision`` of ``auto`` becomes fp32 or bf16 through :func:`resolve_precision`
(on a CPU: :func:`cpu_precision_choice`, whose measurement is kept per machine in
``$RFOOD_CACHE_DIR/precision.json``, by default ``~/.cache/rfood/precision.json``).
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import math
import os
import platform
import random
import time
from pathlib import Path

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
PROBE_SHAPE = (512, 256, 256)  # (M, K, N): about one convolution of a small network as a matmul; ~2 ms in fp32
PROBE_REPEATS = 15  # calls of each precision after the first (a warm-up): some tens of ms in all on one core
CACHE_DIR_VARIABLE = "RFOOD_CACHE_DIR"  # where the probe's result is kept; default ~/.cache/rfood
CACHE_FILE = "precision.json"


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


def time_matmul(a: torch.Tensor, b: torch.Tensor) -> float:
    """Seconds of one ``a @ b`` (the probe's clock; tests replace it with a noisy one)."""
    started = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - started


@contextlib.contextmanager
def one_thread():
    """Run the block on one intra-op thread, then restore the process's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def bf16_speedup(shape: tuple[int, int, int] = PROBE_SHAPE, repeats: int = PROBE_REPEATS) -> float:
    """fp32 seconds / bf16 seconds of one (M, K) @ (K, N) matmul on ONE thread, each the fastest of
    ``repeats`` + 1 calls (the first warms up), the two precisions alternating call by call.

    Made to give the same answer under load: other processes can only add time to a call, never take
    it away, so the fastest of many calls is the undisturbed time, and alternating exposes both
    precisions to the same load. One thread, because with several a single preempted thread stalls the
    whole call at its barrier (what made the ratio of a two-thread probe swing from 1.7x to 2.5x between
    processes on a loaded 2-core machine); whether the CPU runs bf16 natively fast is a property of its
    cores, which one thread measures.
    """
    m, k, n = shape
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    pairs = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    fastest = {name: float("inf") for name in pairs}
    with one_thread():
        for _ in range(repeats + 1):
            for name, (x, y) in pairs.items():
                fastest[name] = min(fastest[name], time_matmul(x, y))
    return fastest["fp32"] / fastest["bf16"]


def cache_file() -> Path | None:
    """The file that keeps the probe's result: ``$RFOOD_CACHE_DIR/precision.json``, by default
    ``~/.cache/rfood/precision.json``; None where there is no home directory to hold it."""
    folder = os.environ.get(CACHE_DIR_VARIABLE)
    try:
        return Path(folder or Path.home() / ".cache" / "rfood") / CACHE_FILE
    except RuntimeError:  # no home directory
        return None


def cpu_model() -> str:
    """This CPU's model name (/proc/cpuinfo on Linux; what the platform reports elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model name", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def probe_key(flags: dict[str, bool]) -> str:
    """What a cached probe result holds for: the CPU (model and bf16 flags), the PyTorch that ran it (its
    kernels) and the probe itself. A change in any of them makes another key, measured afresh. The thread
    count is not part of it: the probe always runs on one thread."""
    reported = ",".join(name for name, value in flags.items() if value) or "none"
    m, k, n = PROBE_SHAPE
    return (f"{cpu_model()} | bf16 flags {reported} | torch {torch.__version__} | "
            f"matmul {m}x{k}x{n}, best of {PROBE_REPEATS + 1}, 1 thread")


def read_cache(path: Path | None) -> dict[str, dict]:
    """The probe results ``path`` keeps, by key; {} for a missing, unreadable or corrupt file (then the
    CPU is simply measured again and the file rewritten)."""
    try:
        probes = json.loads(path.read_text()).get("probes", {}) if path is not None else {}
    except (OSError, ValueError, AttributeError):
        return {}
    return probes if isinstance(probes, dict) else {}


def cached_speedup(entry) -> float | None:
    """A cache entry's speedup, or None if the entry is not a sound one."""
    speedup = entry.get("speedup") if isinstance(entry, dict) else None
    is_number = isinstance(speedup, (int, float)) and not isinstance(speedup, bool)
    return float(speedup) if is_number and math.isfinite(speedup) and speedup > 0 else None


def write_cache(path: Path | None, key: str, speedup: float) -> bool:
    """Add (or replace) ``key``'s result in the cache file, atomically; False if it cannot be written."""
    if path is None:
        return False
    probes = {**read_cache(path), key: {"speedup": round(speedup, 4),
                                        "measured": datetime.datetime.now().isoformat(timespec="seconds")}}
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"probes": probes}, indent=1))
        os.replace(temporary, path)
    except OSError as err:
        log.debug("cannot write %s: %s", path, err)
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        return False
    return True


def machine_speedup(flags: dict[str, bool]) -> tuple[float, str]:
    """(the probe's bf16/fp32 ratio on this machine, where it came from): the cache file's, if it holds one
    for this machine's key, else measured now and written there for every later process."""
    path, key = cache_file(), probe_key(flags)
    entry = read_cache(path).get(key)
    speedup = cached_speedup(entry)
    if speedup is not None:
        return speedup, f"measured {entry.get('measured', 'earlier')}, cached in {path}"
    speedup = bf16_speedup()
    saved = write_cache(path, key, speedup)
    return speedup, f"measured now, cached in {path}" if saved else "measured now, not cached"


@functools.lru_cache(maxsize=1)
def cpu_precision_choice() -> tuple[str, str]:
    """(``bf16`` or ``fp32``, why) for this CPU, the same in every process on one machine.

    1. Capability first: without native bf16 (AVX512-BF16 or AMX, as PyTorch reports them) fp32, with no
       measurement: emulated bf16 runs at a fraction of fp32's speed.
    2. Where it is native, a probe confirms it (:func:`bf16_speedup`: bf16 must run at least
       ``BF16_MIN_SPEEDUP`` times faster), built to give the same ratio under load.
    3. Its result is kept per machine (:func:`machine_speedup`, keyed by :func:`probe_key`), so later
       processes read it instead of measuring: a CPU whose ratio sits near the threshold, or a first
       process measured under heavy load, still gives every later process one and the same choice. The
       threshold is applied to the kept ratio on every read, so changing it takes effect at once.

    Why both 2 and 3: a probe alone, however robust, is a random draw near the threshold, and two
    processes could still disagree; a cache alone would keep a first measurement spoiled by load for
    good. Measured per process once, before this, the choice flipped between processes on a loaded
    machine (a reconstruction with one seed differing by 1e-7 from the next; a test that trains in
    auto hitting NaN only when bf16 was chosen).
    """
    flags = cpu_bf16_flags()
    shown = ", ".join(f"{name} {'yes' if value else 'no'}" for name, value in flags.items())
    if not native_bf16(flags):
        return "fp32", f"no native bf16 ({shown})"
    speedup, source = machine_speedup(flags)
    choice = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    return choice, f"{shown}; probe matmul bf16 {speedup:.2f}x fp32 ({source}), bf16 needs {BF16_MIN_SPEEDUP}x"


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
