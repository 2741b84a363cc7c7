"""Score reconstructed signals and report how well they flag unseen signal types.

Example:
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK,wavenet_QPSK --score=zmean --metric=mse

Reads <run>/ood/results_*.csv written by reconstruct.py. Every results file other than val and in
is an out dataset. The score is fitted on val only and evaluated on in (test) and out. Per run it
writes, in <run>/ood/: metrics_<metrics>_<score>.csv (AUROC with a bootstrap 95% interval, AUPR-In,
AUPR-Out, FPR@95TPR per out dataset), auroc_<metrics>_<score>.json (settings and AUROCs), and
report.md with PNG plots in report/ (ROC curves, score histograms, mean z against t). For several
runs, the AUROC table is also written as <output_dir>/ood_comparison_<metrics>_<score>.csv.
"""
import logging
from pathlib import Path

import pandas as pd

from src.cli import Parser, add_score_args, comma_list, flag, run_main, setup_logging
from src.io import atomic_path, load_json, save_json
from src.ood.metrics import metrics_table
from src.ood.report import write_report
from src.ood.scores import DESCRIPTIONS
from src.ood.scoring import fit_detector, load_sets
from src.run import Run

log = logging.getLogger("rfood")


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", type=comma_list, required=True, help="run name(s), comma separated")
    add_score_args(parser)
    parser.add_argument("--n_bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the AUROC 95%% interval; 0 skips it (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap (default: %(default)s)")
    parser.add_argument("--report", type=flag, default=1,
                        help="1: write report.md and its PNG plots in each run's ood folder (default: %(default)s)")
    return parser


def format_table(table: pd.DataFrame) -> str:
    """A plain fixed-width table: out dataset rows, one column per run or metric, the mean last."""
    width = max(len("dataset"), *(len(str(name)) for name in table.index))
    header = "dataset".ljust(width) + "".join(f"  {column:>{max(8, len(column))}}" for column in table.columns)
    lines = [header, "-" * len(header)]
    for name, row in table.iterrows():
        if name == "mean":
            lines.append("-" * len(header))
        lines.append(str(name).ljust(width) + "".join(
            f"  {'-' if pd.isna(value) else f'{value:.3f}':>{max(8, len(column))}}"
            for column, value in zip(table.columns, row)))
    return "\n".join(lines)


def method_line(model_name: str, settings: dict, detector) -> str:
    ts = detector.ts
    dropped = f", auto_t dropped t = {detector.auto_dropped}" if detector.auto_dropped else ""
    points = f"{len(ts)} start points (t = {ts[0]}..{ts[-1]}" if len(ts) > 1 else f"1 start point (t = {ts[0]}"
    return (f"{model_name}: {settings.get('mode', '?')}, {points}{dropped}), "
            f"{settings.get('model_evaluations_per_signal', '?')} network calls per signal")


def evaluate_run(args, model_name: str, metric_name: str) -> tuple[pd.DataFrame, str]:
    """Score one run, write its metrics, summary and report; return its metrics table and method line."""
    run = Run(args.output_dir, model_name)
    val, inside, outs = load_sets(run.ood_dir)
    detector = fit_detector(val, args.metric, args.score, args.min_t, args.max_t, args.t_skip, args.auto_t)
    frames = {"val": val, "in": inside, **outs}
    scores = {name: detector.score_frame(frame, name) for name, frame in frames.items()}
    table = metrics_table(scores["in"], {name: scores[name] for name in outs}, args.n_bootstrap, args.seed)
    settings_file = run.ood_dir / "reconstruction.json"
    settings = load_json(settings_file, "reconstruction settings") if settings_file.is_file() else {}
    method = method_line(model_name, settings, detector)
    suffix = f"{metric_name}_{args.score}"
    with atomic_path(run.ood_dir / f"metrics_{suffix}.csv") as tmp:
        table.to_csv(tmp, index_label="dataset", float_format="%.4f")
    save_json({"model_name": model_name, "metrics": args.metric, "score": args.score, "t_used": detector.ts,
               "t_dropped_by_auto_t": detector.auto_dropped, "reconstruction": settings,
               "auroc": table["AUROC"].to_dict()}, run.ood_dir / f"auroc_{suffix}.json")
    if args.report:
        title = f"OOD report: {model_name} ({args.score} score on {','.join(args.metric)})"
        fitting = (f"metrics: {','.join(args.metric)}; fitted on {val['filename'].nunique()} val signals, "
                   f"tested on {len(scores['in'])} in signals")
        lines = [method, f"score: {args.score}, {DESCRIPTIONS[args.score]}", fitting]
        path = write_report(run.ood_dir, title, lines, table, detector, scores, frames)
        log.info("wrote %s", path)
    return table, method


def main() -> None:
    args = create_argparser().parse_args()
    setup_logging()
    metric_name = "-".join(args.metric)
    tables, methods = {}, []
    for model_name in args.model_name:
        tables[model_name], method = evaluate_run(args, model_name, metric_name)
        methods.append(method)
    aurocs = pd.DataFrame({name: table["AUROC"] for name, table in tables.items()})
    if len(tables) > 1:
        comparison = Path(args.output_dir) / f"ood_comparison_{metric_name}_{args.score}.csv"
        with atomic_path(comparison) as tmp:
            aurocs.to_csv(tmp, index_label="dataset", float_format="%.4f")
        log.info("wrote %s", comparison)
    print(f"AUROC (in = 0, out = 1; score = {args.score}: {DESCRIPTIONS[args.score]}; "
          f"metrics = {','.join(args.metric)})")
    print("\n".join(f"  {method}" for method in methods))
    print(format_table(aurocs))
    for model_name, table in tables.items():
        print(f"\n{model_name}: AUROC with bootstrap 95% interval ({args.n_bootstrap} resamples), AUPR, FPR@95TPR")
        print(format_table(table))


if __name__ == "__main__":
    run_main(main)
