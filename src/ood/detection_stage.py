"""The detection stage (ood_detection.py): score each run's sets and report how well they separate.

Per run, a :class:`src.ood.detector.Detector` is fitted on the val results alone and scores val, in
(the held-out in-distribution test set) and every out set; the measures come from
:mod:`src.ood.evaluation`. Written in ``<run>/ood/``: ``metrics_<metrics>_<score>.csv``,
``auroc_<metrics>_<score>.json`` and ``report.md`` with its plots; for several runs also
``<output_dir>/ood_comparison_<metrics>_<score>.csv``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from src.io import save_json
from src.ood.detector import Detector, ScoreOptions, score_sets
from src.ood.evaluation import auroc_table, metrics_table
from src.ood.ood_folder import OodFolder, load_sets, write_table
from src.ood.report import write_report
from src.ood.score_functions import DESCRIPTIONS
from src.run import Run

log = logging.getLogger("rfood")


def ood_aurocs(ood_dir: str | Path, options: ScoreOptions) -> tuple[pd.Series, list[int]]:
    """AUROC per out set and their mean for one run, exactly as ood_detection.py reports it; and the t used."""
    scored = score_sets(ood_dir, options.metric, options.score, options.min_t, options.max_t, options.t_skip,
                        options.auto_t)
    return auroc_table(scored.inside, scored.outs), scored.ts


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


def method_line(model_name: str, settings: dict, detector: Detector) -> str:
    ts = detector.ts
    dropped = f", auto_t dropped t = {detector.auto_dropped}" if detector.auto_dropped else ""
    points = f"{len(ts)} start points (t = {ts[0]}..{ts[-1]}" if len(ts) > 1 else f"1 start point (t = {ts[0]}"
    return (f"{model_name}: {settings.get('mode', '?')}, {points}{dropped}), "
            f"{settings.get('model_evaluations_per_signal', '?')} network calls per signal")


def evaluate_run(output_dir: str, model_name: str, options: ScoreOptions, n_bootstrap: int, seed: int,
                 report: bool) -> tuple[pd.DataFrame, str]:
    """Score one run, write its metrics, summary and report; return its metrics table and method line."""
    folder = OodFolder(Run(output_dir, model_name).ood_dir)
    val, inside, outs = load_sets(folder)
    detector = options.fit(val)
    frames = {"val": val, "in": inside, **outs}
    scores = {name: detector.score_frame(frame, name) for name, frame in frames.items()}
    table = metrics_table(scores["in"], {name: scores[name] for name in outs}, n_bootstrap, seed)
    settings = folder.load_settings()
    method = method_line(model_name, settings, detector)
    write_table(table, folder.metrics_file(options.suffix), index_label="dataset", float_format="%.4f")
    save_json({"model_name": model_name, "metrics": options.metric, "score": options.score, "t_used": detector.ts,
               "t_dropped_by_auto_t": detector.auto_dropped, "reconstruction": settings,
               "auroc": table["AUROC"].to_dict()}, folder.auroc_file(options.suffix))
    if report:
        title = f"OOD report: {model_name} ({options.score} score on {','.join(options.metric)})"
        fitting = (f"metrics: {','.join(options.metric)}; fitted on {val['filename'].nunique()} val signals, "
                   f"tested on {len(scores['in'])} in signals")
        lines = [method, f"score: {options.score}, {DESCRIPTIONS[options.score]}", fitting]
        log.info("wrote %s", write_report(folder, title, lines, table, detector, scores, frames))
    return table, method


def detect(output_dir: str, model_names: list[str], options: ScoreOptions, n_bootstrap: int = 1000, seed: int = 0,
           report: bool = True) -> str:
    """Evaluate every run; write the comparison table for several; return the text ood_detection.py prints."""
    tables, methods = {}, []
    for model_name in model_names:
        tables[model_name], method = evaluate_run(output_dir, model_name, options, n_bootstrap, seed, report)
        methods.append(method)
    aurocs = pd.DataFrame({name: table["AUROC"] for name, table in tables.items()})
    if len(tables) > 1:
        comparison = Path(output_dir) / f"ood_comparison_{options.suffix}.csv"
        write_table(aurocs, comparison, index_label="dataset", float_format="%.4f")
        log.info("wrote %s", comparison)
    lines = [f"AUROC (in = 0, out = 1; score = {options.score}: {DESCRIPTIONS[options.score]}; "
             f"metrics = {','.join(options.metric)})", *(f"  {method}" for method in methods), format_table(aurocs)]
    for model_name, table in tables.items():
        lines += ["", f"{model_name}: AUROC with bootstrap 95% interval ({n_bootstrap} resamples), AUPR, FPR@95TPR",
                  format_table(table)]
    return "\n".join(lines)
