"""How to decide over K windows: the score of their mean log errors (fitted on which val statistic) or the mean of
their scores.

``--integrate K`` decides over K consecutive windows of a frame. Three ways to combine them are put to
the selection rule (:mod:`benchmarks.bench_selection`'s draws A-D and Q, which share nothing with the
reported data; :data:`src.ood.detection_stage.INTEGRATION_WAYS`): the mean of the K per-window scores;
the detector's score of the K windows' mean log errors (their mean ``bands`` features) with the score
fitted on val's single windows; and the same score fitted on val's K-window means, the statistic it
then scores (:meth:`src.ood.detector.Detector.for_groups`). Every diffusion run of every draw (UNet,
WaveNet and LDM, one-step, front end off and auto) is scored once with its default score; for K = 2, 4
and 8 each way gives the mean AUROC over the out families; the rule takes the way with the best mean
over draws, runs and K, ties broken by the worst family. Reads results only.

    python -m benchmarks.bench_integration --work_dir=demo_out/selection
    python -m benchmarks.bench_integration --work_dir=demo_out/selection --report=demo_out/hard/hard:unet_auto_onestep

``--report DRAW:RUN,...`` prints, after the choice, the same comparison at K = 1, 2, 4, 8 on reported
runs (the per-SNR table of a run is :mod:`benchmarks.bench_snr`'s).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.bench_selection import DRAWS
from benchmarks.synthetic_runs import DIFFUSION_FAMILIES
from src.cli import comma_list, run_main
from src.ood.detection_stage import INTEGRATION_WAYS, decision_view, score_run
from src.ood.detector import ScoreOptions
from src.ood.evaluation import auroc_table
from src.ood.ood_folder import OodFolder


def run_rows(ood: Path, draw: str, run: str, ks: list[int]) -> list[dict]:
    """Mean and worst-family AUROC of each way and K on one run's results."""
    scored = score_run(OodFolder(ood), ScoreOptions(None, None))
    rows = []
    for k in ks:
        for way in INTEGRATION_WAYS:
            scores, _, _ = decision_view(scored, k, way)
            table = auroc_table(scores["in"], {name: scores[name] for name in scored.outs})
            rows.append({"draw": draw, "run": run, "K": k, "way": way, "mean": table["mean"],
                         "worst": table.drop("mean").min()})
    return rows


def selection_runs(work_dir: Path) -> list[tuple[str, str, Path]]:
    """(draw, run, ood folder) of every one-step diffusion run that is reconstructed on a selection draw."""
    found = []
    for draw in DRAWS:
        for model in DIFFUSION_FAMILIES:
            for run in (f"{model}_onestep", f"{model}_auto_onestep"):
                ood = work_dir / draw / "runs" / run / "ood"
                if (ood / "reconstruction.json").is_file():
                    found.append((draw, run, ood))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="demo_out/selection", help="bench_selection.py's work folder")
    parser.add_argument("--report", type=comma_list, default=[],
                        help="reported runs as WORK_DIR/DRAW:RUN, compared after the choice")
    args = parser.parse_args()
    runs = selection_runs(Path(args.work_dir))
    if not runs:
        raise SystemExit(f"error: no reconstructed one-step diffusion run under {args.work_dir}; run "
                         "python -m benchmarks.bench_selection first")
    rows = pd.DataFrame([row for draw, run, ood in runs for row in run_rows(ood, draw, run, [2, 4, 8])])
    wide = rows.pivot_table(index=["draw", "run", "K"], columns="way", values="mean")
    print(f"Selection draws: mean AUROC over the out families, {len(runs)} runs\n")
    print(wide.to_string(float_format=lambda value: f"{value:.3f}"))
    rule = rows.groupby("way")[["mean", "worst"]].mean().sort_values(["mean", "worst"], ascending=False)
    print("\nWays: " + "; ".join(f"{key}: {text}" for key, text in INTEGRATION_WAYS.items()))
    print("The rule (mean over draws, runs and K = 2, 4, 8; ties: the worst family):")
    print(rule.to_string(float_format=lambda value: f"{value:.4f}"))
    print(f"chosen: {rule.index[0]}")
    for spec in args.report:
        where, run = spec.rsplit(":", 1)
        ood = Path(where) / "runs" / run / "ood"
        table = pd.DataFrame(run_rows(ood, Path(where).name, run, [1, 2, 4, 8]))
        print(f"\nReported: {Path(where).name} {run}, mean AUROC (worst family) against K")
        cells = table.assign(cell=[f"{m:.3f} ({w:.3f})" for m, w in zip(table["mean"], table["worst"])])
        print(cells.pivot_table(index="K", columns="way", values="cell", aggfunc="first").to_string())


if __name__ == "__main__":
    run_main(main)
