"""What each reconstruction setting costs and scores: mean AUROC against network calls per signal.

For each draw (a trained run with its val / in / out files), reconstructs the same windows in every
mode and skip factor asked for (and precision, with --precisions), scores each with the run's
default score, and prints one row per setting: network calls per signal, wall time, mean AUROC with
its frame-bootstrap 95% interval, and its paired difference from the reference (PLMS at the smallest
skip factor, i.e. full PLMS at skip 1) with the interval of that difference (the same frames
resampled for both). At the end it names the cheapest setting whose mean stays within 0.02 of the
reference, or above it, on every draw. Draws: ``demo`` (the run `make demo` trains) and ``A`` (selection draw A
of bench_selection.py: another seed and other physics, near-OOD families). Results go to
--work_dir, never into the runs' own ood folders.

    make demo && python -m benchmarks.bench_selection --draws=A   # the two runs
    python -m benchmarks.bench_quality                             # both draws, plms and onestep
    python -m benchmarks.bench_quality --draws=demo --modes=onestep --skips=1 --precisions=fp32,bf16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.bench_selection import DRAWS
from src.data.datasets import SignalDataset
from src.io import save_json
from src.ood.detection_stage import score_run
from src.ood.detector import ScoreOptions
from src.ood.evaluation import mean_auroc_bootstrap, percentile_interval
from src.ood.ood_folder import OodFolder, write_results
from src.ood.reconstructors import build_reconstructor, reconstruct_set
from src.run import Run
from src.runtime import pick_device

DEMO_DATA = "demo_out/data/processed/interferenceset_frame"
SELECTION_A = "demo_out/selection/A"
PRESETS = {
    "demo": dict(output_dir="demo_out/runs", model_name="unet_small_QPSK", data=DEMO_DATA, inside="QPSK",
                 outs=["QAM16", "OFDM", "Chirp", "GMSK", "FM"]),
    "A": dict(output_dir=f"{SELECTION_A}/runs", model_name="unet",
              data=f"{SELECTION_A}/processed/interferenceset_frame", inside=DRAWS["A"]["inside"],
              outs=DRAWS["A"]["outs"]),
}
TOLERANCE = 0.02


def settings(args) -> list[tuple[str, int, str]]:
    """(mode, skip, precision) of every row; --skips is one list for every mode or "mode:1,4/mode:16"."""
    per_mode = dict(part.split(":") for part in args.skips.split("/")) if ":" in args.skips else {}
    return [(mode, int(skip), precision) for mode in args.modes.split(",")
            for skip in per_mode.get(mode, args.skips).split(",") for precision in args.precisions.split(",")]


def bench_draw(name: str, args, device) -> pd.DataFrame:
    preset = PRESETS[name]
    run = Run(preset["output_dir"], preset["model_name"])
    config = run.load_config()
    data = Path(preset["data"])
    sets = [("val", SignalDataset(data / f"{preset['inside']}_raw_data_val.h5", args.first_n)),
            ("in", SignalDataset(data / f"{preset['inside']}_raw_data_test.h5", args.first_n))]
    sets += [("out", SignalDataset(data / f"{family}_raw_data_test.h5", args.first_n)) for family in preset["outs"]]
    print(f"\ndraw {name}: run {run.path}, {args.first_n} windows per set, device {device}", flush=True)
    rows, scorings = [], []
    for mode, skip, precision in settings(args):
        folder = Path(args.work_dir) / name / f"{mode}_skip{skip}_{precision}"
        reconstructor = build_reconstructor(run, config, 100, skip, seed=0, device=device, mode=mode,
                                            precision=precision)
        started = time.perf_counter()
        if not (folder / "settings_done").is_file():
            for set_type, dataset in sets:
                frame = reconstruct_set(reconstructor, dataset, set_type, args.batch_size)
                write_results(frame, OodFolder(folder).results(set_type, dataset.name))
            save_json(reconstructor.settings, OodFolder(folder).settings_file)
            (folder / "settings_done").write_text(f"{time.perf_counter() - started:.1f}")
        scored = score_run(OodFolder(folder), ScoreOptions(args.score, args.metric and args.metric.split(",")))
        inside, outs, units = scored.inside, scored.outs, scored.units
        scorings.append((inside, outs))
        rows.append({"draw": name, "mode": mode, "skip": skip, "precision": precision,
                     "calls/signal": reconstructor.settings["model_evaluations_per_signal"],
                     "seconds": float((folder / "settings_done").read_text())})
        print(f"  {mode} skip {skip} {precision}: {rows[-1]['seconds']:.0f} s", flush=True)
    points, values = mean_auroc_bootstrap(scorings, units, args.n_bootstrap)
    reference = next(i for i, row in enumerate(rows) if row["mode"] == args.reference_mode)
    for i, row in enumerate(rows):
        low, high = percentile_interval(values[:, i])
        diff_low, diff_high = percentile_interval(values[:, i] - values[:, reference])
        row.update({"mean AUROC": points[i], "interval": f"{low:.3f}-{high:.3f}",
                    "vs reference": points[i] - points[reference],
                    "difference interval": f"{diff_low:+.3f}..{diff_high:+.3f}"})
    return pd.DataFrame(rows)


def verdict(table: pd.DataFrame) -> None:
    """The cheapest setting whose mean is at most TOLERANCE below each draw's reference, on every draw."""
    held = table.assign(holds=table["vs reference"] >= -TOLERANCE)
    by_setting = held.groupby(["mode", "skip", "precision"]).agg(
        holds=("holds", "all"), calls=("calls/signal", "max"), seconds=("seconds", "sum"), draws=("draw", "nunique"))
    complete = by_setting[by_setting["draws"] == table["draw"].nunique()]
    passing = complete[complete["holds"]].sort_values(["calls", "seconds"])  # equal calls: the faster
    if passing.empty:
        print(f"\nno setting holds the mean within {TOLERANCE} of the reference (or above it) on every draw")
        return
    cheapest = passing.iloc[0]
    mode, skip, precision = passing.index[0]
    print(f"\ncheapest setting within {TOLERANCE} of the reference (or above it) on every draw: {mode} skip {skip} "
          f"({precision}), "
          f"{cheapest['calls']} calls per signal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", default="demo,A", help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--score", default=None, help="OOD score (default: the run's default)")
    parser.add_argument("--metric", default=None, help="error metrics (default: the run's default)")
    parser.add_argument("--first_n", type=int, default=32, help="windows per set")
    parser.add_argument("--modes", default="plms,onestep", help="of plms, ddim, onestep")
    parser.add_argument("--skips", default="1,4,16,64", help='skip factors, e.g. 1,16 or "plms:1,16/onestep:1,4"')
    parser.add_argument("--precisions", default="fp32", help="of fp32, bf16")
    parser.add_argument("--reference_mode", default=None,
                        help="the reference row's mode (default: the first of --modes, at the first skip)")
    parser.add_argument("--n_bootstrap", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--work_dir", default="demo_out/bench_quality")
    args = parser.parse_args()
    args.reference_mode = args.reference_mode or args.modes.split(",")[0]
    device = pick_device()
    started = time.perf_counter()
    table = pd.concat([bench_draw(name, args, device) for name in args.draws.split(",")], ignore_index=True)
    print(f"\ncommand: {' '.join(sys.argv)}  ({time.perf_counter() - started:.0f} s; seconds of a setting are "
          f"from its first run)")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    table.to_csv(Path(args.work_dir) / "quality.csv", index=False, float_format="%.4f")
    verdict(table)


if __name__ == "__main__":
    main()
