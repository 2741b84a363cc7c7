"""What each reconstruction setting costs and scores: AUROC against network calls per signal.

Reconstructs the same val / in / out windows with a trained run for every mode (plms, ddim,
onestep) and skip factor (1, 4, 16, 64), scores each with ood_detection's default score, and prints
one row per setting. Uses an existing run (by default the one `make demo` trains); results go to
--work_dir, never into the run's own ood folder.

    make demo && python benchmarks/bench_quality.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.datasets import SignalDataset  # noqa: E402
from src.diffusion.engine import MODES  # noqa: E402
from src.ood.reconstructors import build_reconstructor, reconstruct_set  # noqa: E402
from src.ood.ood_folder import OodFolder, write_results  # noqa: E402
from src.ood.detection_stage import ood_aurocs  # noqa: E402
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, ScoreOptions  # noqa: E402
from src.run import Run  # noqa: E402
from src.runtime import pick_device  # noqa: E402

DATA = "demo_out/data/processed/interferenceset_frame"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_out/runs")
    parser.add_argument("--model_name", default="unet_small_QPSK")
    parser.add_argument("--val", default=f"{DATA}/QPSK_raw_data_val.h5")
    parser.add_argument("--in_file", default=f"{DATA}/QPSK_raw_data_test.h5")
    parser.add_argument("--out_files",
                        default=",".join(f"{DATA}/{name}_raw_data_test.h5"
                                         for name in ("QAM16", "OFDM", "Chirp", "GMSK", "FM")))
    parser.add_argument("--score", default=DEFAULT_SCORE, help="OOD score (default: %(default)s)")
    parser.add_argument("--metric", default=",".join(DEFAULT_METRICS), help="error metrics (default: %(default)s)")
    parser.add_argument("--first_n", type=int, default=32, help="windows per set")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--skips", default="1,4,16,64")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--work_dir", default="demo_out/bench_quality")
    args = parser.parse_args()

    run = Run(args.output_dir, args.model_name)
    config = run.load_config()
    device = pick_device()
    sets = [("val", SignalDataset(args.val, args.first_n)), ("in", SignalDataset(args.in_file, args.first_n))]
    sets += [("out", SignalDataset(path, args.first_n)) for path in args.out_files.split(",")]
    print(f"run {run.path}, {args.first_n} windows per set, device {device}, score {args.score} on {args.metric}")
    rows = []
    for mode in args.modes.split(","):
        for skip in (int(k) for k in args.skips.split(",")):
            folder = Path(args.work_dir) / f"{mode}_skip{skip}"
            reconstructor = build_reconstructor(run, config, 100, skip, seed=0, device=device, mode=mode)
            started = time.perf_counter()
            for set_type, dataset in sets:
                frame = reconstruct_set(reconstructor, dataset, set_type, args.batch_size)
                write_results(frame, OodFolder(folder).results(set_type, dataset.name))
            seconds = time.perf_counter() - started
            aurocs, _ = ood_aurocs(folder, ScoreOptions(args.score, args.metric.split(",")))
            row = {"mode": mode, "skip": skip, "calls/signal": reconstructor.settings["model_evaluations_per_signal"],
                   "seconds": round(seconds, 1), **aurocs.round(3).to_dict()}
            if not rows:
                print("  ".join(f"{key:>12}" for key in row))
            rows.append(row)
            print("  ".join(f"{value:>12}" for value in row.values()), flush=True)
    reference = next(r for r in rows if r["mode"] == "plms" and r["skip"] == min(int(k) for k in args.skips.split(",")))
    print(f"\nreference: plms skip {reference['skip']}, {reference['calls/signal']} calls/signal, "
          f"mean AUROC {reference['mean']:.3f}")
    for row in rows:
        if row["calls/signal"] * 20 <= reference["calls/signal"]:
            verdict = "within 0.02" if abs(row["mean"] - reference["mean"]) <= 0.02 else "NOT within 0.02"
            print(f"  {row['mode']} skip {row['skip']}: {reference['calls/signal'] / row['calls/signal']:.0f}x fewer "
                  f"calls, mean AUROC {row['mean']:.3f} ({verdict})")


if __name__ == "__main__":
    main()
