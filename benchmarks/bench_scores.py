"""Which OOD score flags every unseen family: AUROC per out family for every score and model.

Scores the reconstructions that reconstruct.py already wrote for each run (``make bench-scores``
trains and reconstructs the UNet DDPM, the WaveNet DDPM and the autoencoder on the demo data
first). Every score is fitted on the in-distribution val windows (calibration) and evaluated on
the in-distribution test windows; the two come from disjoint frames (the by-frame split). With
``--auto_t both`` each score is shown with all start points and with those --auto_t=1 keeps.

    make bench-scores          # or, on existing runs:
    python -m benchmarks.bench_scores --output_dir demo_out/runs --model_name unet_small_QPSK,autoencoder_QPSK
"""
from __future__ import annotations

import argparse

from src.ood.detection_stage import score_run
from src.ood.detector import ScoreOptions
from src.ood.evaluation import auroc_table
from src.ood.ood_folder import OodFolder
from src.ood.score_functions import SCORES
from src.run import Run


def rows(output_dir: str, model_names: list[str], metric_sets: list[str], scores: list[str],
         auto_t_values: list[bool]):
    for model_name in model_names:
        ood_dir = Run(output_dir, model_name).ood_dir
        for metrics in metric_sets:
            for score in scores:
                for auto_t in auto_t_values:
                    scored = score_run(OodFolder(ood_dir), ScoreOptions(score, metrics.split(","), auto_t=auto_t))
                    yield {"model": model_name, "metrics": metrics, "score": score, "auto_t": int(auto_t),
                           "n_t": len(scored.ts),
                           **{name: f"{value:.3f}" for name, value in auroc_table(scored.inside, scored.outs).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_out/runs")
    parser.add_argument("--model_name", default="unet_small_QPSK,wavenet_QPSK,autoencoder_QPSK")
    parser.add_argument("--scores", default=",".join(SCORES))
    parser.add_argument("--auto_t", choices=("0", "1", "both"), default="both")
    parser.add_argument("--metric_sets", default="mse;mse,env,lsd",
                        help="semicolon-separated metric sets, each a comma list (default: %(default)s)")
    args = parser.parse_args()
    auto_t_values = [False, True] if args.auto_t == "both" else [args.auto_t == "1"]
    table = list(rows(args.output_dir, args.model_name.split(","), args.metric_sets.split(";"),
                      args.scores.split(","), auto_t_values))
    widths = {key: max(len(key), *(len(str(row[key])) for row in table)) for key in table[0]}
    print("AUROC per out family (in = 0, out = 1); every score fitted on val, tested on in (disjoint frames)")
    print("| " + " | ".join(key for key in widths) + " |")
    print("|" + "---|" * len(widths))
    for row in table:
        print("| " + " | ".join(str(row[key]) for key in widths) + " |")


if __name__ == "__main__":
    main()
