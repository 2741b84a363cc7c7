"""The reported benchmarks: data that chose nothing, each set 256 windows from 32 frames.

    hard    QPSK in; out families that share QPSK's spectrum and differ as little as physics allows:
            8-PSK (same pulse shape, another constellation), QPSK at roll-off 0.20 and at a 20 % lower
            symbol rate, with Wiener phase noise, with IQ imbalance, with a tone 15 dB under it.
            Carrier offset up to 0.02 cycles/sample, SNR 5 to 20 dB per frame.
    qam     16-QAM in; its denser and differently shaped neighbours out: 32-QAM (cross), 64-QAM,
            16-APSK, 16-PSK, 8-PSK, QPSK. Carrier offset up to 0.01, 15 dB.
    demo    the demo's physics (QPSK in; 16-QAM, OFDM, Chirp, GMSK, FM out; 20 dB; offset up to 0.01)
            at the benchmark's set sizes.

Every frame gets its own carrier offset, phase and SNR. Every model family is trained with its
defaults, with the front end off and with ``--carrier_recovery=auto``, reconstructed in one-step
mode (``--models`` may add PLMS: ``unet``, ``unet_auto``, ...; one-step at 10 network calls,
``unet_auto_onestep10``; the noise-free path, ``unet_auto_path10`` and ``unet_auto_path``: each printed
with its paired difference to the 99-call one-step run), and scored with its
default score; each reconstruction model is also fused with the feature baseline of the same front end
(:mod:`src.ood.fusion`). The table reports mean and worst-family AUROC (frame-bootstrap interval)
and the cost.

    python -m benchmarks.bench_hard                       # all three (hours on 2 cores); re-running continues
    python -m benchmarks.bench_hard --draws=hard --models=features,features_auto
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.synthetic_runs import (
    Draw,
    benchmark_parser,
    checked_names,
    fused_names,
    model_label,
    model_names,
    paired_difference,
    print_table,
    setting_suffix,
    trained_model,
)

ROOT = Path(__file__).resolve().parents[1]

REPORTED = {
    "hard": dict(seed=201, sps=8, rolloff=0.35, snr="5:20", cfo=0.02, inside="QPSK",
                 outs=["PSK8", "QPSKro20", "QPSKsr", "QPSKpn", "QPSKiq", "QPSKcw"]),
    "qam": dict(seed=202, sps=8, rolloff=0.35, snr="15", cfo=0.01, inside="QAM16",
                outs=["QAM32", "QAM64", "APSK16", "PSK16", "PSK8", "QPSK"]),
    "demo": dict(seed=0, sps=8, rolloff=0.35, snr="20", cfo=0.01, inside="QPSK",
                 outs=["QAM16", "OFDM", "Chirp", "GMSK", "FM"]),
}
MODELS = model_names(with_plms=True, with_ten_calls=True)


def main() -> None:
    parser = benchmark_parser(__doc__, "demo_out/hard", REPORTED)
    args = parser.parse_args()
    names, models = checked_names(parser, args, REPORTED, MODELS)
    started = time.perf_counter()
    rows = []
    for name in names:
        draw = Draw(Path(args.work_dir), name, REPORTED[name])
        if args.stage == "all":
            draw.make_data()
            draw.train(sorted({trained_model(model) for model in models}))
            draw.reconstruct(models)
        rows += [draw.summary(model, model_label(model)).row for model in models + fused_names(models)
                 if draw.has(model)]
    print(f"command: {' '.join(sys.argv)}  ({time.perf_counter() - started:.0f} s)")
    table = print_table(rows)
    table.to_csv(Path(args.work_dir) / "reported.csv", index=False, float_format="%.4f")
    differences = []
    for name in names:
        draw = Draw(Path(args.work_dir), name, REPORTED[name])
        differences += [paired_difference(draw, model, reference(model)) for model in models
                        if setting_suffix(model) not in ("", "_onestep") and draw.has(model)
                        and draw.has(reference(model))]
    if differences:
        print("\nthe other settings against one-step at 99 calls (default score; paired frame bootstrap):")
        print_table(differences)


def reference(model: str) -> str:
    """The 99-call one-step run another setting of the same trained model is compared with."""
    return trained_model(model) + "_onestep"


if __name__ == "__main__":
    main()
