"""A harder benchmark, where simple features should fail: near-OOD families that share QPSK's spectrum.

The in-distribution family is QPSK; the out families differ from it as little as physics allows:
8-PSK (same pulse shape and spectrum, another constellation), QPSK at roll-off 0.20 and at a 20 %
lower symbol rate, with Wiener phase noise, with IQ imbalance, and with a tone 15 dB under the
signal. Every frame gets its own carrier offset (up to 0.02 cycles/sample), phase and SNR (5 to
20 dB). Every model family is trained with its defaults and scored with its default score, and
the table reports mean and worst-family AUROC (frame-bootstrap interval) and the cost.

    python benchmarks/bench_hard.py          # about 45 min on 2 cores; re-running continues
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.synthetic_runs import Draw, print_table, trained_model  # noqa: E402

HARD = dict(seed=201, sps=8, rolloff=0.35, snr="5:20", cfo=0.02, inside="QPSK",
            outs=["PSK8", "QPSKro20", "QPSKsr", "QPSKpn", "QPSKiq", "QPSKcw"])
MODELS = {"unet": "DDPM UNet small, plms skip 16", "unet_onestep": "DDPM UNet small, onestep skip 1",
          "wavenet": "DDPM WaveNet 12x32, plms skip 16", "wavenet_onestep": "DDPM WaveNet 12x32, onestep skip 1",
          "ldm": "LDM (VQ-VAE + UNet), plms skip 16", "ldm_onestep": "LDM (VQ-VAE + UNet), onestep skip 1",
          "autoencoder": "autoencoder", "features": "features (no model)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="demo_out/hard")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset (default: all)")
    args = parser.parse_args()
    models = args.models.split(",")
    if unknown := [model for model in models if model not in MODELS]:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    started = time.perf_counter()
    draw = Draw(Path(args.work_dir), "hard", HARD)
    draw.make_data()
    draw.train(sorted({trained_model(model) for model in models}))
    draw.reconstruct(models)
    print(f"command: {' '.join(sys.argv)}  ({time.perf_counter() - started:.0f} s)")
    table = print_table([draw.summary(model, MODELS[model]).row for model in models])
    table.to_csv(Path(args.work_dir) / "hard.csv", index=False, float_format="%.4f")


if __name__ == "__main__":
    main()
