"""The detection stage (ood_detection.py): score each run's sets and report how well they separate.

Per run, a :class:`src.ood.detector.Detector` is fitted on the val results alone and scores val, in
(the held-out in-distribution test set) and every out set; the measures come from
:mod:`src.ood.evaluation`. Written in ``<run>/ood/``: ``metrics_<metrics>_<score>.csv``,
``auroc_<metrics>_<score>.json`` and ``report.md`` with its plots; for several runs also
``<output_dir>/ood_comparison_<metrics>_<score>.csv``. With ``integrate`` K > 1 every measure is of
decisions over K consecutive windows of a frame (:mod:`src.ood.decisions`), and the files' suffix
ends in ``_k<K>``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from src.errors import UserError
from src.io import save_json
from src.ood.decisions import integrated_sets
from src.ood.detector import Detector, ScoreOptions
from src.ood.evaluation import auroc_table, metrics_table
from src.ood.fusion import View, fuse
from src.ood.ood_folder import OodFolder, load_sets, signal_units, write_table
from src.ood.report import write_report
from src.ood.score_functions import DESCRIPTIONS
from src.ood.snr import MEASURES, SNR_BIN_DB, format_snr_table, signal_snrs, snr_table
from src.run import Run

log = logging.getLogger("rfood")


@dataclass
class ScoredRun:
    """One ood folder's sets scored with a detector fitted on its val set (the run's defaults filled in)."""

    options: ScoreOptions
    settings: dict
    detector: Detector
    frames: dict[str, pd.DataFrame]  # "val", "in" and each out set: the results as reconstruct.py wrote them
    scores: dict[str, pd.Series]  # the same sets: one score per signal
    units: pd.Series  # each in and out signal's frame, for the bootstrap
    logs: dict[str, pd.DataFrame] = field(default_factory=dict)  # the same sets: the log errors each score read

    @property
    def val(self) -> pd.Series:
        return self.scores["val"]

    @property
    def inside(self) -> pd.Series:
        return self.scores["in"]

    @property
    def outs(self) -> dict[str, pd.Series]:
        """Each out set's scores, by set name."""
        return {name: scores for name, scores in self.scores.items() if name not in ("val", "in")}

    @property
    def ts(self) -> list[int]:
        return self.detector.ts

    @property
    def auto_dropped(self) -> list[int]:
        return self.detector.auto_dropped


def score_run(folder: OodFolder, options: ScoreOptions) -> ScoredRun:
    """Fit ``options`` (the run's defaults where they leave it open) on the folder's val results and score every
    set: the one way ood_detection.py, its fused rows and the benchmarks score a run."""
    settings = folder.load_settings()
    options = options.for_run(settings)
    val, inside, outs = load_sets(folder)
    detector = options.fit(val)
    frames = {"val": val, "in": inside, **outs}
    logs = {name: detector.frame_logs(frame, name) for name, frame in frames.items()}
    scores = {name: detector.score_logs(logs[name]).rename(name) for name in frames}
    units = pd.concat([signal_units(frame) for frame in (inside, *outs.values())])
    return ScoredRun(options, settings, detector, frames, scores, units, logs)


def ood_aurocs(ood_dir: str | Path, options: ScoreOptions) -> tuple[pd.Series, list[int]]:
    """AUROC per out set and their mean for one run, as ood_detection.py reports it; and the t used."""
    run = score_run(OodFolder(ood_dir), options)
    return auroc_table(run.inside, run.outs), run.ts


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
            f"{settings.get('model_evaluations_per_signal', '?')} network calls per signal; "
            f"score {detector.score} on {','.join(detector.metrics)}"
            + (f"; {detector.snr_adjust.describe()}" if detector.snr_adjust is not None else ""))


@dataclass
class RunResult:
    """One run's metrics table, its method line and the score options it was evaluated with."""

    table: pd.DataFrame
    method: str
    options: ScoreOptions
    snr: pd.DataFrame | None = None  # AUROC and FPR@95TPR per SNR bin, where the results record SNRs


def per_snr(folder: OodFolder, suffix: str, scores: dict[str, pd.Series], snrs: dict[str, pd.Series | None],
            out_names: list[str], width: float) -> pd.DataFrame | None:
    """The per-SNR table (:mod:`src.ood.snr`), written as snr_<suffix>.csv; None without SNRs."""
    table = snr_table(scores["in"], {name: scores[name] for name in out_names}, snrs["in"],
                      {name: snrs[name] for name in out_names}, width)
    if table is not None:
        write_table(table, folder.snr_file(suffix), index=False, float_format="%.4f")
    return table


# How decide over K windows combines them (src.ood.decisions): the default, and the alternatives it was chosen against
# in benchmarks/bench_integration.py.
INTEGRATION_WAYS = {
    "groups": "the score of their mean log errors, fitted on val's K-window means",
    "windows": "the score of their mean log errors, fitted on val's single windows",
    "mean": "the mean of their scores",
}


def decision_view(scored: ScoredRun, k: int,
                  way: str = "groups") -> tuple[dict[str, pd.Series], pd.Series, dict[str, pd.Series | None]]:
    """Every set's scores, the in and out scores' frames (for the bootstrap) and their SNRs (where recorded): of
    single windows for ``k`` = 1, else of groups of ``k`` consecutive windows of a frame, combined the
    :data:`INTEGRATION_WAYS` ``way``."""
    snrs = {name: signal_snrs(frame) for name, frame in scored.frames.items()}
    if k == 1:
        return scored.scores, scored.units, snrs
    detector = scored.detector.for_groups(k) if way == "groups" else scored.detector
    pools = None if way == "mean" else {name: partial(detector.pooled, logs) for name, logs in scored.logs.items()}
    groups = integrated_sets(scored.scores, {name: signal_units(frame) for name, frame in scored.frames.items()}, k,
                             pools)
    scores = {name: group.scores.rename(name) for name, group in groups.items()}
    units = pd.concat([groups[name].units for name in ("in", *scored.outs)])
    return scores, units, {name: None if snrs[name] is None else groups[name].mean_of(snrs[name]) for name in groups}


def evaluate_run(output_dir: str, model_name: str, options: ScoreOptions, n_bootstrap: int, seed: int,
                 report: bool, snr_bin: float = SNR_BIN_DB, integrate: int = 1) -> RunResult:
    """Score one run (its default score where ``options`` leave it open), write its metrics, summary and report;
    with ``integrate`` K > 1, of decisions over K consecutive windows of a frame."""
    folder = OodFolder(Run(output_dir, model_name).ood_dir)
    scored = score_run(folder, options)
    options, settings, detector, frames = scored.options, scored.settings, scored.detector, scored.frames
    out_names = list(scored.outs)
    scores, units, snrs = decision_view(scored, integrate)
    suffix = options.suffix + (f"_k{integrate}" if integrate > 1 else "")
    table = metrics_table(scores["in"], {name: scores[name] for name in out_names}, n_bootstrap, seed, units)
    method = method_line(model_name, settings, detector) + (
        f"; decisions over {integrate} consecutive windows of a frame (score of their mean log errors, fitted on "
        f"val's {integrate}-window means)"
        if integrate > 1 else "")
    write_table(table, folder.metrics_file(suffix), index_label="dataset", float_format="%.4f")
    snr = per_snr(folder, suffix, scores, snrs, out_names, snr_bin)
    save_json({"model_name": model_name, "metrics": options.metric, "score": options.score,
               "snr_aware": detector.snr_adjust is not None, "t_used": detector.ts,
               "t_dropped_by_auto_t": detector.auto_dropped, "integrate": integrate, "reconstruction": settings,
               "auroc": table["AUROC"].to_dict()}, folder.auroc_file(suffix))
    if report:
        title = f"OOD report: {model_name} ({options.score} score on {','.join(options.metric)})"
        unit = "signals" if integrate == 1 else f"groups of {integrate} windows"
        fitting = (f"metrics: {','.join(options.metric)}; fitted on {frames['val']['filename'].nunique()} val "
                   f"signals, tested on {len(scores['in'])} in {unit}")
        lines = [method, f"score: {options.score}, {DESCRIPTIONS[options.score]}", fitting]
        log.info("wrote %s", write_report(folder, title, lines, table, detector, scores, frames, snr))
    return RunResult(table, method, options, snr)


def fuse_runs(runs: dict[str, ScoredRun]) -> dict[str, pd.Series]:
    """The fused score (:mod:`src.ood.fusion`) of scored runs of the same windows, keyed by run name: in and each
    out set, each run on the scale of its own cross-fitted val scores."""
    return fuse([View(name, run.detector.crossfit_val_scores(), {key: run.scores[key] for key in ("in", *run.outs)})
                 for name, run in runs.items()])


def fused_run(output_dir: str, model_name: str, partner: str, options: ScoreOptions, n_bootstrap: int,
              seed: int) -> RunResult:
    """``model_name`` fused with the run ``partner`` (:mod:`src.ood.fusion`; each with its own score, the partner
    with its default); the metrics are written as <run>/ood/metrics_fused_<partner>.csv."""
    runs = [score_run(OodFolder(Run(output_dir, name).ood_dir), choice)
            for name, choice in ((model_name, options), (partner, ScoreOptions(None, None)))]
    fused = fuse_runs(dict(zip((model_name, partner), runs)))
    table = metrics_table(fused["in"], {name: fused[name] for name in runs[0].outs}, n_bootstrap, seed, runs[0].units)
    folder = OodFolder(Run(output_dir, model_name).ood_dir)
    write_table(table, folder.metrics_file(f"fused_{partner}"), index_label="dataset", float_format="%.4f")
    method = (f"{model_name}+{partner}: fused, the larger of each run's score standardised against its "
              "cross-fitted val scores")
    return RunResult(table, method, runs[0].options, None)


@dataclass(frozen=True)
class DetectionJob:
    """ood_detection.py's options: the runs in ``output_dir``, how they are scored (None in ``scoring``: each
    run's default), the bootstrap, the report, the SNR bins, decisions over ``integrate`` windows and the run
    ``fuse_with`` each is fused with (None: none)."""

    output_dir: str
    model_names: list[str]
    scoring: ScoreOptions = field(default_factory=lambda: ScoreOptions(None, None))
    n_bootstrap: int = 1000
    seed: int = 0  # of the bootstrap
    report: bool = True
    snr_bin: float = SNR_BIN_DB
    integrate: int = 1
    fuse_with: str | None = None


def detect(job: DetectionJob) -> str:
    """Evaluate every run (and, with ``fuse_with``, each fused with that run); write the comparison table for
    several; return the text ood_detection.py prints."""
    if job.fuse_with is not None and job.integrate > 1:
        raise UserError("--fuse_with scores single windows; drop --integrate or --fuse_with")
    results = run_results(job)
    aurocs = pd.DataFrame({name: result.table["AUROC"] for name, result in results.items()})
    suffixes = {result.options.suffix for result in results.values()}
    suffix = (suffixes.pop() if len(suffixes) == 1 else "defaults") + (
        f"_k{job.integrate}" if job.integrate > 1 else "")
    if len(results) > 1:
        comparison = Path(job.output_dir) / f"ood_comparison_{suffix}.csv"
        write_table(aurocs, comparison, index_label="dataset", float_format="%.4f")
        log.info("wrote %s", comparison)
    scores = sorted({result.options.score for result in results.values()})
    lines = ["AUROC (in = 0, out = 1; " + "; ".join(f"{name}: {DESCRIPTIONS[name]}" for name in scores) + ")",
             *(f"  {result.method}" for result in results.values()), format_table(aurocs)]
    for model_name, result in results.items():
        lines += ["", f"{model_name}: AUROC with bootstrap 95% interval ({job.n_bootstrap} resamples of frames, "
                  "the independent units; of images for image data), AUPR, FPR@95TPR", format_table(result.table)]
        if result.snr is not None:
            lines += snr_lines(model_name, result.snr, job.snr_bin)
    return "\n".join(lines)


def run_results(job: DetectionJob) -> dict[str, RunResult]:
    """Each run's result (:func:`evaluate_run`), and with ``fuse_with`` each run fused with that run."""
    results = {name: evaluate_run(job.output_dir, name, job.scoring, job.n_bootstrap, job.seed,
                                  job.report, job.snr_bin, job.integrate)
               for name in job.model_names}
    partner = job.fuse_with
    if partner is not None:
        results.update({f"{name}+{partner}": fused_run(job.output_dir, name, partner, job.scoring,
                                                       job.n_bootstrap, job.seed)
                        for name in job.model_names if name != partner})
    return results


def snr_lines(model_name: str, table: pd.DataFrame, width: float) -> list[str]:
    """The printed per-SNR tables: AUROC, then FPR@95TPR, one row per SNR bin."""
    lines = []
    for measure in MEASURES:
        lines += ["", f"{model_name}: {measure} per SNR bin ({width:g} dB bins; in against out signals of the same "
                  "bin; n_in = in signals in the bin)", format_snr_table(table, measure)]
    return lines
