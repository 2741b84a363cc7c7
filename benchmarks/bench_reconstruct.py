"""Throughput of the batched engine against the plain per-start-point loop, side by side.

Both reconstruct the same signals with the same network and the same noise; the table gives network
evaluations per second (signals x start points x PLMS steps, per second of wall time), their ratio,
and the peak resident memory of the process that ran each (CPU) or peak CUDA memory (GPU).
Each measurement runs in its own subprocess so that peaks do not mix.

    python -m benchmarks.bench_reconstruct                      # batch sizes 8, 32, 128; UNet and WaveNet
    python -m benchmarks.bench_reconstruct --batch_sizes 8 --length 1024
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from src.diffusion.engine import reconstruct_batched
from src.diffusion.multistart import model_evaluations, reconstruct, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler, scheduler_config
from src.networks import build_model, network_config
from src.runtime import pick_device

ROOT = Path(__file__).resolve().parents[1]  # the subprocesses run from the repository root

MODELS = {"unet-small": network_config("small"),
          "wavenet-12x32": network_config("wavenet", residual_layers=12, residual_channels=32),
          # the networks of make demo-2d (16 x 16 digits) and make demo-3d (the LDM's UNet on 8^3 latents)
          "unet2d-demo": network_config("small", in_channels=1, spatial_dims=2, channels=[16, 32, 64],
                                        attention_levels=[False, False, False]),
          "unet3d-latent": network_config("small", in_channels=8, spatial_dims=3, channels=[16, 32],
                                          attention_levels=[False, False])}
SHAPES = {"unet2d-demo": (1, 16, 16), "unet3d-latent": (8, 8, 8, 8)}  # one input [C, *spatial]; default (2, length)


def measure(model_name: str, method: str, batch_size: int, length: int, skip: int, max_chains: int) -> dict:
    """One timed reconstruction (after a warm-up call) in this process."""
    device = pick_device()
    torch.manual_seed(0)
    model = build_model(MODELS[model_name]).to(device).eval()
    scheduler = build_pndm_scheduler(scheduler_config("scaled_linear_beta", 0.0015, 0.0195, "epsilon", 1.0, 1.0), 100)
    starts = start_points(scheduler, skip)
    shape = SHAPES.get(model_name, (2, length))
    x0 = torch.randn(batch_size, *shape, device=device)
    noise = sample_noise(torch.arange(batch_size), len(starts), shape, seed=0)
    run = (lambda: reconstruct(model, scheduler, x0, starts, noise)) if method == "loop" else \
        (lambda: reconstruct_batched(model, scheduler, x0, starts, noise, max_chains=max_chains or None))
    with torch.inference_mode():
        model(x0[:1], torch.tensor([10], device=device))  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak_mib = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    evaluations = batch_size * model_evaluations(scheduler, starts)
    return {"seconds": seconds, "evals_per_s": evaluations / seconds, "peak_mib": peak_mib, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", default="8,32,128")
    parser.add_argument("--models", default=",".join(MODELS), help="(default: all: %(default)s)")
    parser.add_argument("--length", type=int, default=256, help="signal length (the demo's window)")
    parser.add_argument("--inference_skip_factor", type=int, default=16)
    parser.add_argument("--max_chains", type=int, default=0, help="0: the engine's default for the device")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "METHOD", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model_name, method, batch = args.one
        print(json.dumps(measure(model_name, method, int(batch), args.length, args.inference_skip_factor,
                                 args.max_chains)))
        return
    print(f"signal length {args.length}, --inference_skip_factor {args.inference_skip_factor}, "
          f"max_chains {args.max_chains or 'default'}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<14} {'batch':>5} {'loop eval/s':>12} {'engine eval/s':>14} {'ratio':>6} "
          f"{'loop peak MiB':>14} {'engine peak MiB':>16}")
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            results = {}
            for method in ("loop", "engine"):
                command = [sys.executable, "-m", "benchmarks.bench_reconstruct", "--one", model_name, method,
                           str(batch),
                           "--length",
                           str(args.length), "--inference_skip_factor", str(args.inference_skip_factor),
                           "--max_chains", str(args.max_chains)]
                results[method] = json.loads(subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                                            check=True).stdout.splitlines()[-1])
            loop, engine = results["loop"], results["engine"]
            print(f"{model_name:<14} {batch:>5} {loop['evals_per_s']:>12.0f} {engine['evals_per_s']:>14.0f} "
                  f"{engine['evals_per_s'] / loop['evals_per_s']:>6.2f} {loop['peak_mib']:>14.0f} "
                  f"{engine['peak_mib']:>16.0f}", flush=True)


if __name__ == "__main__":
    main()
