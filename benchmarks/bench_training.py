"""How training settings converge: the best val loss each reaches on the demo data, and what it costs.

Trains the `small` UNet DDPM on the demo's QPSK files once per setting (train_ddpm.py, as a user
would) and prints the best validation loss (fixed validation noise; for EMA runs, of the EMA
weights) and the wall time. The training defaults of train_ddpm.py were chosen with this table.

    make data && python -m benchmarks.bench_training
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "demo_out/data/processed/interferenceset_frame"
SETTINGS = {  # name: flags
    "old default: 1e-4 constant, 50 ep": ["--learning_rate=1e-4", "--lr_schedule=constant", "--warmup_steps=0",
                                          "--ema_decay=0", "--n_epochs=50"],
    "1e-3 constant, 120 ep": ["--learning_rate=1e-3", "--lr_schedule=constant", "--warmup_steps=0", "--ema_decay=0",
                              "--n_epochs=120"],
    "1e-3 constant + EMA, 120 ep": ["--learning_rate=1e-3", "--lr_schedule=constant", "--warmup_steps=0",
                                    "--ema_decay=0.999", "--n_epochs=120"],
    "1e-3 cosine + warm-up + EMA, 120 ep": ["--learning_rate=1e-3", "--lr_schedule=cosine", "--warmup_steps=100",
                                            "--ema_decay=0.999", "--n_epochs=120"],
    "2e-3 cosine + warm-up + EMA, 120 ep": ["--learning_rate=2e-3", "--lr_schedule=cosine", "--warmup_steps=100",
                                            "--ema_decay=0.999", "--n_epochs=120"],
    "2e-3 cosine + warm-up + EMA, 60 ep": ["--learning_rate=2e-3", "--lr_schedule=cosine", "--warmup_steps=100",
                                           "--ema_decay=0.999", "--n_epochs=60"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=f"{DATA}/QPSK_raw_data_train.h5")
    parser.add_argument("--val", default=f"{DATA}/QPSK_raw_data_val.h5")
    parser.add_argument("--work_dir", default="demo_out/bench_training")
    parser.add_argument("--settings", default=None, help="comma-separated indices of SETTINGS to run (default: all)")
    args = parser.parse_args()
    chosen = list(SETTINGS.items())
    if args.settings:
        chosen = [chosen[int(index)] for index in args.settings.split(",")]
    print(f"command: {' '.join(sys.argv)}")
    print(f"{'setting':40s} {'best val loss':>14s} {'last val loss':>14s} {'seconds':>8s}")
    for index, (name, flags) in enumerate(chosen):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "train_ddpm.py", f"--output_dir={args.work_dir}",
                                 f"--model_name=setting{index}", "--model_type=small",
                                 f"--training_h5file={args.train}",
                                 f"--validation_h5file={args.val}", "--batch_size=64", "--figures=0", *flags],
                                cwd=ROOT, capture_output=True, text=True, check=True)
        losses = [float(v) for v in re.findall(r"val loss ([0-9.]+)", result.stdout)]
        print(f"{name:40s} {min(losses):14.5f} {losses[-1]:14.5f} {time.perf_counter() - started:8.0f}", flush=True)


if __name__ == "__main__":
    main()
