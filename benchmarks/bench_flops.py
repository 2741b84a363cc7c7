"""How close is each denoiser to what this machine can do, and what does bf16 buy?

Everything runs in ONE process, on the same threads (``torch.get_num_threads()``), so the numbers
are comparable with each other:

1. Machine limit: fp32 and bf16 square-matmul rates (GFLOP/s, FLOPs = 2 n^3, best over the sizes,
   each the median of a few timed runs after a warm-up).
2. Per network (UNet presets small and medium, WaveNet 12x32 and 18x64; 2 channels): FLOPs per
   network evaluation counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward at
   batch 1 (and checked to scale linearly with the batch). The counter sees convolutions, matmuls
   and attention only; GroupNorm, SiLU, gating and other elementwise work are not counted, so the
   GFLOP/s below are "useful" FLOPs. Then, per batch size, evaluations/s and GFLOP/s in fp32 and
   under ``torch.autocast("cpu", dtype=torch.bfloat16)`` side by side (inference_mode, warm-up,
   median of --repeats timed runs, the two precisions interleaved), each as a fraction of the
   matmul rate of its own precision; the bf16/fp32 speed ratio; and the relative output difference
   ||y_bf16 - y_fp32|| / ||y_fp32|| on the same inputs. Networks have random weights, their
   zero-initialised layers re-drawn (see ``random_network``) so that the outputs are not all 0.
3. A whole reconstruction (``reconstruct_batched``, PLMS, small UNet with RANDOM weights: speed and
   the size of the bf16 deviation do not need a trained network, though a trained one may deviate
   differently) in fp32 and with bf16 on the network only:
   wall time each, their ratio, and ||r_bf16 - r_fp32|| / ||r_fp32||. The engine's own
   ``src.runtime.autocast`` is a no-op on the CPU, so bf16 comes from a small wrapper module that
   runs the network inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` and returns fp32; the
   scheduler arithmetic stays fp32/fp64. The toolkit's --precision switch does the same.

Beside each table: what the CPU reports about bf16 (the /proc/cpuinfo flags; PyTorch's view, i.e.
torch.cpu's AVX512-BF16 and AMX checks and whether oneDNN has bf16 kernels) and what the toolkit's
``--precision auto`` chooses here, with its start-up probe's bf16/fp32 matmul ratio.

On a CPU without native bf16 (no avx512_bf16 / amx_bf16 in /proc/cpuinfo) bf16 is emulated and can
be many times SLOWER than fp32; a full run then takes a while (on 2 cores without native bf16,
roughly 10-20 minutes, most of it in bf16; each setting's repeats are capped by --budget_s, see the
"runs" column).

    python -m benchmarks.bench_flops                  # all four networks, batch 8, 64, 256, length 256
    python -m benchmarks.bench_flops --models unet-small --batch_sizes 64,256 --threads 1 --signals 0 \
        --compile_models ''
                                                      # your own bf16/fp32 ratio, in under a minute
    python -m benchmarks.bench_flops --quick          # tiny smoke run (seconds)
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_reconstruct import MODELS as RECON_MODELS
from benchmarks.bench_reconstruct import SHAPES
from src.diffusion.engine import reconstruct_batched
from src.diffusion.multistart import model_evaluations, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler, scheduler_config
from src.networks import build_model, network_config
from src.runtime import cpu_bf16_flags, cpu_precision_choice

MODELS = {"unet-small": network_config("small"),
          "unet-medium": network_config("medium"),
          "wavenet-12x32": network_config("wavenet", residual_layers=12, residual_channels=32),
          "wavenet-18x64": network_config("wavenet", residual_layers=18, residual_channels=64)}
RECON_MODEL = "unet-small"
FULL = {"models": ",".join(MODELS), "batch_sizes": "8,64,256", "length": 256, "repeats": 5,
        "matmul_sizes": "1024,2048", "signals": 32, "inference_skip_factor": 16, "min_time": 0.2, "budget_s": 30.0,
        "compile_models": "unet-small,wavenet-12x32,unet2d-demo", "compile_batch": 64}
QUICK = {"models": ",".join(MODELS), "batch_sizes": "2,8", "length": 64, "repeats": 2,
         "matmul_sizes": "128,256", "signals": 2, "inference_skip_factor": 50, "min_time": 0.02, "budget_s": 2.0,
         "compile_models": "unet-small,unet2d-demo", "compile_batch": 4}


class Bf16Autocast(nn.Module):
    """The network under CPU bf16 autocast, returning fp32: bf16 for the network only."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x, timesteps).float()


def random_network(name: str, config: dict | None = None) -> nn.Module:
    """``name`` with random weights, in eval mode. The zero-initialised layers (the networks' output
    convolutions and residual branch ends, so that training starts from the identity) are re-drawn
    with PyTorch's default init: otherwise a fresh network outputs exactly 0 and bf16 would show no
    difference at all."""
    torch.manual_seed(0)
    model = build_model(config or MODELS[name])
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() > 1 and not weight.any():
            module.reset_parameters()
    return model.eval()


def cpu_info() -> tuple[str, dict[str, bool]]:
    """CPU model name and whether its flags include the bf16 instructions."""
    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return name or platform.processor() or "unknown", {flag: flag in flags for flag in wanted}


def capability(flags: dict[str, bool]) -> str:
    """One line of what the CPU reports about bf16: /proc/cpuinfo, PyTorch/oneDNN, and what
    ``--precision auto`` chooses here (with its probe's ratio)."""
    torch_view = ", ".join(f"{name} {'yes' if value else 'no'}" for name, value in cpu_bf16_flags().items())
    choice, why = cpu_precision_choice()
    probe = why.rpartition("; ")[2] if "probe" in why else "no probe: no native bf16"
    return (f"CPU bf16: cpuinfo avx512_bf16 {'yes' if flags['avx512_bf16'] else 'no'}, amx_bf16 "
            f"{'yes' if flags['amx_bf16'] else 'no'}; torch {torch_view}; --precision auto -> {choice} ({probe})")


def timed_runs(fns: dict[str, callable], repeats: int, min_time: float, budget_s: float) -> dict[str, dict]:
    """Median seconds per call of each fn: one warm-up call (its result is returned as "output"), then
    timed runs of enough calls to last ``min_time``, the fns interleaved run by run; repeats are cut
    so that a setting stays near ``budget_s`` (at least one timed run)."""
    plan, outputs = {}, {}
    for name, fn in fns.items():
        started = time.perf_counter()
        outputs[name] = fn()
        warm = time.perf_counter() - started
        calls = max(1, math.ceil(min_time / max(warm, 1e-9)))
        plan[name] = (calls, max(1, min(repeats, int(budget_s / max(warm * calls, 1e-9)))))
    times = {name: [] for name in fns}
    for run in range(max(runs for _, runs in plan.values())):
        for name, fn in fns.items():
            calls, runs = plan[name]
            if run >= runs:
                continue
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - started) / calls)
    return {name: {"seconds": statistics.median(times[name]), "runs": len(times[name]),
                   "calls": plan[name][0], "output": outputs[name]} for name in fns}


def matmul_rates(sizes: list[int], repeats: int, min_time: float, budget_s: float) -> dict[str, dict]:
    """Best GFLOP/s over the sizes of an n x n @ n x n matmul, fp32 and bf16; a dtype whose call took
    longer than budget_s / 4 at one size skips the larger ones."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = {"gflops": 0.0, "n": 0}
        for n in sizes:
            generator = torch.Generator().manual_seed(n)
            a, b = (torch.randn(n, n, generator=generator).to(dtype) for _ in range(2))
            result = timed_runs({"mm": lambda a=a, b=b: torch.mm(a, b)}, repeats, min_time, budget_s)["mm"]
            gflops = 2 * n ** 3 / result["seconds"] / 1e9
            if gflops > best["gflops"]:
                best = {"gflops": gflops, "n": n, "runs": result["runs"]}
            if result["seconds"] > budget_s / 4:
                break
        rates[str(dtype).removeprefix("torch.")] = best
    return rates


def count_flops(model: nn.Module, batch: int, length: int) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward at ``batch`` signals, total and by aten op."""
    x = torch.randn(batch, 2, length)
    t = torch.randint(0, 1000, (batch,))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x, t)
    by_op = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), by_op


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return float((a.double() - b.double()).norm() / b.double().norm())


def bench_networks(args, model_names: list[str], batch_sizes: list[int], rates: dict) -> None:
    mm32, mm16 = rates["float32"]["gflops"], rates["bfloat16"]["gflops"]
    flops, models = {}, {}
    print(f"\nFLOPs per network evaluation (FlopCounterMode; conv/matmul/attention only), length {args.length}")
    print(f"{'model':<14} {'params':>9} {'MFLOP/eval':>11} {'check batch':>11} {'ratio':>8} {'by op (MFLOP, batch 1)'}")
    for name in model_names:
        model = random_network(name)
        total, by_op = count_flops(model, 1, args.length)
        check = max(2, batch_sizes[0])
        total_check, _ = count_flops(model, check, args.length)
        flops[name], models[name] = total, model
        ops = ", ".join(f"{op} {n / 1e6:.2f}" for op, n in sorted(by_op.items(), key=lambda item: -item[1]))
        params = sum(p.numel() for p in model.parameters())
        scale = total_check / total
        print(f"{name:<14} {params:>9,} {total / 1e6:>11.2f} {check:>11} {scale:>8.3f}"
              f"{'' if abs(scale - check) < 1e-6 * check else ' (NOT LINEAR)'} {ops}", flush=True)

    print(f"\nNetwork throughput, fp32 vs bf16 autocast (median of up to {args.repeats} timed runs; "
          f"%mm = fraction of the matmul rate of the same precision)")
    print(args.capability)
    print(f"{'model':<14} {'batch':>5} {'runs':>5} | {'fp32 eval/s':>11} {'GFLOP/s':>8} {'%mm':>6} | "
          f"{'bf16 eval/s':>11} {'GFLOP/s':>8} {'%mm':>6} | {'bf16/fp32':>9} {'rel diff':>9}")
    above = False
    for name in model_names:
        model, wrapped = models[name], Bf16Autocast(models[name])
        for batch in batch_sizes:
            generator = torch.Generator().manual_seed(batch)
            x = torch.randn(batch, 2, args.length, generator=generator)
            t = torch.randint(0, 1000, (batch,), generator=generator)
            with torch.inference_mode():
                fns = {"fp32": lambda net=model, x=x, t=t: net(x, t), "bf16": lambda net=wrapped, x=x, t=t: net(x, t)}
                result = timed_runs(fns, args.repeats, args.min_time, args.budget_s)
            row = {}
            for precision, limit in (("fp32", mm32), ("bf16", mm16)):
                evals = batch / result[precision]["seconds"]
                gflops = evals * flops[name] / 1e9
                row[precision] = f"{evals:>11.1f} {gflops:>8.2f} {100 * gflops / limit:>5.1f}%"
                above |= gflops > limit
            runs = min(result["fp32"]["runs"], result["bf16"]["runs"])
            speedup = result["fp32"]["seconds"] / result["bf16"]["seconds"]
            print(f"{name:<14} {batch:>5} {runs:>5} | {row['fp32']} | {row['bf16']} | {speedup:>9.3f} "
                  f"{relative(result['bf16']['output'], result['fp32']['output']):>9.2e}", flush=True)
    if above:
        print("note: %mm above 100%: the network's kernels (mostly oneDNN convolutions) beat torch.mm at that "
              "precision here, so that matmul rate is no ceiling for it")


def bench_reconstruction(args) -> None:
    model = random_network(RECON_MODEL)
    scheduler = build_pndm_scheduler(scheduler_config("scaled_linear_beta", 0.0015, 0.0195, "epsilon", 1.0, 1.0),
                                     100)
    starts = start_points(scheduler, args.inference_skip_factor)
    x0 = torch.randn(args.signals, 2, args.length, generator=torch.Generator().manual_seed(1))
    noise = sample_noise(torch.arange(args.signals), len(starts), (2, args.length), seed=0)
    evaluations = args.signals * model_evaluations(scheduler, starts)
    print(f"\nWhole reconstruction: reconstruct_batched (plms), {RECON_MODEL} with RANDOM weights, "
          f"{args.signals} signals x length {args.length}, --inference_skip_factor {args.inference_skip_factor} "
          f"({len(starts)} start points, {evaluations} network evaluations); bf16 on the network only")
    print(args.capability)
    print(f"{'precision':<9} {'seconds':>9} {'eval/s':>9} {'vs fp32':>8} {'rel dev':>9}")
    results = {}
    for precision, net in (("fp32", model), ("bf16", Bf16Autocast(model))):
        with torch.inference_mode():
            net(x0[:1], torch.tensor([10]))  # warm-up
        started = time.perf_counter()
        results[precision] = reconstruct_batched(net, scheduler, x0, starts, noise)
        seconds = time.perf_counter() - started
        results[precision + "_s"] = seconds
        ratio = results["fp32_s"] / seconds
        deviation = relative(results[precision], results["fp32"])
        print(f"{precision:<9} {seconds:>9.2f} {evaluations / seconds:>9.1f} {ratio:>7.3f}x {deviation:>9.2e}",
              flush=True)
    assert results["bf16"].dtype == torch.float32


def bench_compile_and_layout(args) -> None:
    """fp32 eager against torch.compile (every model) and channels-last (the 2D network: PyTorch has
    no channels-last layout for 1D signals, 3D tensors [N, C, L]), same inputs, interleaved runs."""
    names = args.compile_models.split(",")
    print(f"\ntorch.compile and channels-last, fp32, batch {args.compile_batch} (eager = as reconstruct.py runs "
          f"by default; compile time = the first compiled call)")
    print(f"{'model':<14} {'variant':<22} {'eval/s':>9} {'vs eager':>9} {'compile s':>10} {'rel diff':>9}")
    for name in names:
        config = MODELS.get(name) or RECON_MODELS[name]
        shape = SHAPES.get(name, (2, args.length))
        model = random_network(name, config)
        generator = torch.Generator().manual_seed(7)
        x = torch.randn(args.compile_batch, *shape, generator=generator)
        t = torch.randint(0, 1000, (args.compile_batch,), generator=generator)
        variants = {"eager": (model, x)}
        started = time.perf_counter()
        compiled = torch.compile(model)
        with torch.inference_mode():
            compiled(x, t)
        compile_seconds = time.perf_counter() - started
        variants["torch.compile"] = (compiled, x)
        if x.dim() == 4:
            last = random_network(name, config).to(memory_format=torch.channels_last)
            variants["channels-last"] = (last, x.contiguous(memory_format=torch.channels_last))
        with torch.inference_mode():
            fns = {key: (lambda net=net, inputs=inputs, t=t: net(inputs, t)) for key, (net, inputs) in variants.items()}
            result = timed_runs(fns, args.repeats, args.min_time, args.budget_s)
        eager = result["eager"]["seconds"]
        for key, measured in result.items():
            seconds = f"{compile_seconds:>10.1f}" if key == "torch.compile" else f"{'':>10}"
            print(f"{name:<14} {key:<22} {args.compile_batch / measured['seconds']:>9.1f} "
                  f"{eager / measured['seconds']:>8.2f}x {seconds} "
                  f"{relative(measured['output'], result['eager']['output']):>9.2e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--batch_sizes", help=f"comma-separated (default {FULL['batch_sizes']})")
    parser.add_argument("--length", type=int, help=f"signal length (default {FULL['length']})")
    parser.add_argument("--repeats", type=int,
                        help=f"timed runs per setting, median reported (default {FULL['repeats']})")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's, i.e. OMP_NUM_THREADS)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run (explicit flags still win)")
    parser.add_argument("--matmul_sizes",
                        help=f"square matmul sizes for the machine limit (default {FULL['matmul_sizes']})")
    parser.add_argument("--signals", type=int,
                        help=f"signals in the whole reconstruction, 0 skips it (default {FULL['signals']})")
    parser.add_argument("--inference_skip_factor", type=int,
                        help=f"of the reconstruction (default {FULL['inference_skip_factor']})")
    parser.add_argument("--min_time", type=float, help=f"seconds per timed run, at least (default {FULL['min_time']})")
    parser.add_argument("--budget_s", type=float,
                        help=f"rough seconds per setting; repeats are cut to fit (default {FULL['budget_s']})")
    parser.add_argument("--compile_models", help="models for the torch.compile / channels-last rows, '' skips "
                        f"them (default {FULL['compile_models']})")
    parser.add_argument("--compile_batch", type=int, help=f"their batch size (default {FULL['compile_batch']})")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    model_names = args.models.split(",")
    unknown = [name for name in model_names if name not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)

    cpu, flags = cpu_info()
    print("command: " + shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), ATen CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, oneDNN {torch.backends.mkldnn.is_available()}")
    print(f"CPU: {cpu}; flags: " + ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in flags.items()))
    if not (flags["avx512_bf16"] or flags["amx_bf16"]):
        print("note: no native bf16 (avx512_bf16 / amx_bf16): bf16 matmuls and convolutions are emulated")
    args.capability = capability(flags)

    rates = matmul_rates([int(n) for n in args.matmul_sizes.split(",")], args.repeats, args.min_time, args.budget_s)
    print("\nMachine limit: square matmul, FLOPs = 2 n^3, best size")
    print(args.capability)
    print(f"{'dtype':<9} {'n':>5} {'GFLOP/s':>9} {'runs':>5}")
    for dtype, rate in rates.items():
        print(f"{dtype:<9} {rate['n']:>5} {rate['gflops']:>9.2f} {rate['runs']:>5}")
    print(f"bf16/fp32 matmul: {rates['bfloat16']['gflops'] / rates['float32']['gflops']:.3f}", flush=True)

    bench_networks(args, model_names, batch_sizes, rates)
    if args.signals:
        bench_reconstruction(args)
    if args.compile_models:
        bench_compile_and_layout(args)


if __name__ == "__main__":
    main()
