"""The honest table of existing runs: mean and worst-family AUROC (frame-bootstrap interval) and cost.

Each run is scored with its own default score (pooled on mse,mae,env,lsd for reconstruction models,
zmean on feat for the feature baseline), exactly as ood_detection.py reports it.

    python -m benchmarks.bench_table --output_dir demo_out/runs \
        --model_name unet_small_QPSK,autoencoder_QPSK,features_QPSK
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.synthetic_runs import print_table, run_summary

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_out/runs")
    parser.add_argument("--model_name", required=True, help="comma-separated runs")
    parser.add_argument("--benchmark", default="demo", help="the name shown in the first column")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}")
    print_table([run_summary(Path(args.output_dir), name, name, args.benchmark).row
                 for name in args.model_name.split(",")])


if __name__ == "__main__":
    main()
