"""Score reconstructed signals and print how well they flag unseen signal types (AUROC).

Example:
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK,unet_medium_QPSK --min_t=100

Reads <run>/ood/results_*.csv written by reconstruct.py. Every results file other than val and in
is an out dataset. Writes each run's column as auroc_<metric>.csv and .json in its ood folder and,
for several runs, the whole table as <output_dir>/ood_comparison_<metric>.csv.
"""
import logging
from pathlib import Path

import pandas as pd

from src.cli import Parser, comma_list, positive_int, run_main, setup_logging
from src.io import atomic_path, load_json, save_json
from src.ood.results import METRICS
from src.ood.scoring import ood_aurocs
from src.run import Run

log = logging.getLogger("rfood")


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", type=comma_list, required=True, help="run name(s), comma separated")
    parser.add_argument("--metric", choices=METRICS, default="mse", help="reconstruction error (default: %(default)s)")
    parser.add_argument("--min_t", type=int, default=0, help="smallest start point kept (default: %(default)s)")
    parser.add_argument("--max_t", type=int, default=1000, help="largest start point kept (default: %(default)s)")
    parser.add_argument("--t_skip", type=positive_int, default=1,
                        help="keep every k-th start point within the range (default: %(default)s)")
    return parser


def format_table(table: pd.DataFrame) -> str:
    """A plain fixed-width table: out dataset rows, one AUROC column per run, the mean last."""
    width = max(len("dataset"), *(len(str(name)) for name in table.index))
    header = "dataset".ljust(width) + "".join(f"  {column:>{max(8, len(column))}}" for column in table.columns)
    lines = [header, "-" * len(header)]
    for name, row in table.iterrows():
        if name == "mean":
            lines.append("-" * len(header))
        lines.append(str(name).ljust(width) + "".join(
            f"  {value:>{max(8, len(column))}.3f}" for column, value in zip(table.columns, row)))
    return "\n".join(lines)


def main() -> None:
    args = create_argparser().parse_args()
    setup_logging()
    columns, methods = {}, []
    for model_name in args.model_name:
        run = Run(args.output_dir, model_name)
        aurocs, ts = ood_aurocs(run.ood_dir, args.metric, args.min_t, args.max_t, args.t_skip)
        columns[model_name] = aurocs
        settings_file = run.ood_dir / "reconstruction.json"
        settings = load_json(settings_file, "reconstruction settings") if settings_file.is_file() else {}
        summary = {"model_name": model_name, "metric": args.metric, "score": "zmean", "t_used": ts,
                   "reconstruction": settings, "auroc": aurocs.to_dict()}
        save_json(summary, run.ood_dir / f"auroc_{args.metric}.json")
        with atomic_path(run.ood_dir / f"auroc_{args.metric}.csv") as tmp:
            aurocs.rename(model_name).to_frame().to_csv(tmp, index_label="dataset", float_format="%.4f")
        methods.append(f"{model_name}: {settings.get('mode', '?')}, {len(ts)} start points (t = {ts[0]}..{ts[-1]}), "
                       f"{settings.get('model_evaluations_per_signal', '?')} network calls per signal")
    table = pd.DataFrame(columns)
    table = pd.concat([table.drop(index="mean"), table.loc[["mean"]]])
    if len(columns) > 1:
        comparison = Path(args.output_dir) / f"ood_comparison_{args.metric}.csv"
        with atomic_path(comparison) as tmp:
            table.to_csv(tmp, index_label="dataset", float_format="%.4f")
        log.info("wrote %s", comparison)
    print(f"AUROC (in = 0, out = 1; score = mean z over t; metric = {args.metric})")
    print("\n".join(f"  {method}" for method in methods))
    print(format_table(table))


if __name__ == "__main__":
    run_main(main)
