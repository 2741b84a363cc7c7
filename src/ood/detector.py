"""From results files to one OOD score per signal: the :class:`Detector`, fitted on val alone.

Each signal's errors at the kept start points t, for each chosen metric, form its feature vector
[(metric, t)]. A :class:`Detector` fits a score function (:mod:`src.ood.score_functions`) on the val
features only (no OOD labels, no test data) and scores any set. The paper's method is
``score="zmean", metrics=["mse"]``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from src.errors import UserError
from src.ood.decisions import window_groups
from src.ood.ood_folder import FEATURE_COLUMN, METRICS, signal_units
from src.ood.score_functions import fit_score, log_errors
from src.ood.snr_adjust import SnrAdjust, window_snrs

log = logging.getLogger("rfood")

# Chosen by benchmarks/bench_selection.py on synthetic draws that share nothing with the reported data
# (docs/benchmarks.md, "The default score at 256 windows"): the best mean AUROC over draws A-D (256 windows
# per set) and every diffusion run made on all of them (UNet and LDM, one-step, front end off and auto).
DEFAULT_SCORE = "bands"
DEFAULT_METRICS = ["mse", "mae", "env", "lsd"]
# --snr_aware's default (src.ood.snr_adjust): put to the same rule, SNR-aware `bands` came first (0.870 against 0.869,
# worst family 0.510 against 0.506; docs/benchmarks.md). It applies where the windows' SNR estimates exist (results
# written before snr_est_db: estimated from the set's h5 file where it is found, else scored as before), never to the
# feature baseline's distance.
DEFAULT_SNR_AWARE = True
# The feature baseline records one distance per window: larger = further from the training windows,
# so the one-sided zmean is its natural score (a two-sided one would also flag unusually typical windows).
FEATURE_DEFAULTS = ("zmean", ["feat"])
# Images and volumes record mse, mae and ssim; pooled is two-sided over the two kinds of error. Not
# chosen on a benchmark (no image selection draws): say so where it is reported.
IMAGE_DEFAULTS = ("pooled", ["mse", "ssim"])
SIGNAL_ONLY_METRICS = ("env", "lsd")
CROSSFIT_FOLDS = 5  # folds of whole val frames for the out-of-sample val scores thresholds come from


def error_table(frame: pd.DataFrame, metric: str, where: str) -> pd.DataFrame:
    """Errors as [signal, t]; every signal must have every t. NaN and inf (diverged) are kept."""
    if metric in SIGNAL_ONLY_METRICS and "ssim" in frame.columns:
        raise UserError(f"--metric {metric} is an error of 1D RF signals; these results are of images, which record "
                        "mse, mae and ssim: choose from those")
    if metric not in frame.columns:
        raise UserError(f"results for {where} have no {metric!r} column (present: "
                        f"{', '.join(m for m in METRICS if m in frame.columns)}); choose another --metric or "
                        "re-run reconstruct.py with --overwrite=1 to record every metric")
    rows = frame.pivot_table(index="filename", columns="t", values=metric, aggfunc="size")
    if rows.isna().any().any():
        raise UserError(f"results for {where} miss some (signal, t) rows; run reconstruct.py again")
    return frame.pivot_table(index="filename", columns="t", values=metric, aggfunc="mean", dropna=False)


def kept_t(available: list[int], min_t: int, max_t: int, t_skip: int) -> list[int]:
    """Start points with min_t <= t <= max_t, then every t_skip-th of them."""
    kept = [t for t in sorted(available) if min_t <= t <= max_t][::t_skip]
    if not kept:
        raise UserError(f"no start point lies in --min_t={min_t} .. --max_t={max_t}; "
                        f"the results hold t = {sorted(available)[0]} .. {sorted(available)[-1]}")
    return kept


def feature_table(frame: pd.DataFrame, metrics: list[str], ts: list[int], where: str) -> pd.DataFrame:
    """Errors as [signal, (metric, t)] for the given metrics and start points.

    A non-finite error (a reconstruction that diverged) is refused in val, where it would break the
    fitted statistics; elsewhere the :class:`Detector` makes that signal maximally unusual.
    """
    tables = {}
    for metric in metrics:
        table = error_table(frame, metric, where)
        missing = sorted(set(ts) - set(table.columns))
        if missing:
            raise UserError(f"results for {where} lack start points {missing} that val has; "
                            "reconstruct every set with the same --num_inference_steps and --inference_skip_factor")
        tables[metric] = table[ts]
    features = pd.concat(tables, axis=1)
    finite = np.isfinite(features.to_numpy())
    if where == "val" and not finite.all():
        bad = sorted({t for metric, t in features.columns[~finite.all(axis=0)]})
        raise UserError(f"val errors are NaN or infinite at t = {bad} (diverged reconstructions); "
                        "drop them with --auto_t=1 or --max_t")
    return features


@dataclass
class Detector:
    """A score fitted on one run's val errors: which metrics and t it reads, and the fitted function."""

    score: str
    metrics: list[str]
    ts: list[int]
    auto_dropped: list[int]
    scorer: object
    val_features: pd.DataFrame
    val_units: pd.Series | None = None  # each val signal's frame: held out together in cross-fitting
    snr_adjust: SnrAdjust | None = None  # --snr_aware: errors moved to val's mean SNR first (src.ood.snr_adjust)
    snr_asked: bool = False  # --snr_aware=1 given: a set without SNR estimates is refused, not scored unmoved
    val_members: pd.Series | None = None  # a K-window detector (for_groups): val window id -> its group id

    def __call__(self, features: pd.DataFrame, snr: np.ndarray | None = None) -> pd.Series:
        """Scores of errors [signal, (metric, t)] (SNR-aware: with each signal's SNR estimate ``snr``); a diverged
        (non-finite) reconstruction scores the maximum."""
        return self.score_logs(self.logs(features, snr))

    def logs(self, features: pd.DataFrame, snr: np.ndarray | None = None) -> pd.DataFrame:
        """The log errors the score reads, [signal, feature]: floored (and SNR-aware: moved to val's mean SNR); a row
        of a diverged (non-finite) reconstruction is NaN throughout."""
        errors = features.to_numpy()
        finite = np.isfinite(errors).all(axis=1)
        errors = np.where(np.isfinite(errors), errors, 0.0)
        logs = log_errors(errors if self.snr_adjust is None else self.snr_adjust(errors, snr))
        logs[~finite] = np.nan
        return pd.DataFrame(logs, index=features.index)

    def score_logs(self, logs: pd.DataFrame) -> pd.Series:
        """Scores of log errors as :meth:`logs` gives them (or their means over windows, :meth:`pooled`); a row with a
        NaN scores the maximum."""
        values = logs.to_numpy()
        finite = np.isfinite(values).all(axis=1)
        scores = self.scorer(np.exp(np.where(finite[:, None], values, 0.0)))
        scores[~finite] = np.finfo(np.float64).max
        return pd.Series(scores, index=logs.index)

    def pooled(self, logs: pd.DataFrame, members: pd.Series) -> pd.Series:
        """The score of each group's mean log errors (``members``: window id -> group id; see
        :mod:`src.ood.decisions`), indexed by group id; a group holding a diverged window scores the maximum."""
        return self.score_logs(mean_logs(logs, members))

    def score_mean(self, rows: np.ndarray) -> float:
        """The score of the mean of log-error rows [windows, features] as :meth:`logs` gives them (a stream's group of
        windows, :class:`src.ood.decisions.StreamIntegrator`)."""
        return float(self.score_logs(pd.DataFrame(np.mean(rows, axis=0, keepdims=True))).iloc[0])

    def for_groups(self, k: int) -> Detector:
        """The detector of decisions over ``k`` windows (:mod:`src.ood.decisions`): the same score fitted on the mean
        log errors of val's groups of ``k`` consecutive windows of a frame, the statistic it then scores, and
        cross-fitted the same way. Where val holds fewer groups than :func:`groups_needed`, and for ``k`` = 1, the
        score fitted on single windows (itself)."""
        if k == 1:
            return self
        members = window_groups(self.val_features.index, self.val_units, k)
        needed = groups_needed(self.scorer.dimensions)
        if members.nunique() < needed:
            log.info("--integrate %d: the score of the groups' mean log errors is fitted on single val windows: val "
                     "holds %d groups of %d, fewer than the %d a fit on group means needs (%d dimensions)", k,
                     members.nunique(), k, needed, self.scorer.dimensions)
            return self
        grouped = replace(self, val_members=members)
        means = grouped.group_means(self.val_errors(), np.ones(len(self.val_features), dtype=bool))
        grouped.scorer = fit_score(self.score, means, metric_groups(self.val_features, self.metrics))
        return grouped

    def val_errors(self) -> np.ndarray:
        """The val errors as the score was fitted on them (SNR-aware: moved to val's mean SNR)."""
        errors = self.val_features.to_numpy()
        return errors if self.snr_adjust is None else self.snr_adjust(errors, self.snr_adjust.val_snr)

    def group_means(self, errors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """exp of the mean log errors of each val group whose windows are the ``rows`` (a mask) of val, ``errors``
        being those rows' errors: what a K-window score is fitted on."""
        logs = pd.DataFrame(log_errors(errors), index=self.val_features.index[rows])
        members = self.val_members[self.val_members.index.isin(logs.index)]
        return np.exp(mean_logs(logs, members).to_numpy())

    def frame_logs(self, frame: pd.DataFrame, where: str) -> pd.DataFrame:
        """:meth:`logs` of a results frame (rows per (signal, t), as reconstruct.py writes)."""
        features = feature_table(frame, self.metrics, self.ts, where)
        return self.logs(features, None if self.snr_adjust is None else self.set_snrs(frame, where, features.index))

    def set_snrs(self, frame: pd.DataFrame, where: str, ids: pd.Index) -> np.ndarray | None:
        """Each window's SNR estimate; under the default (not asked for) a set without them, e.g. results written by
        an older reconstruct.py beside newer val results, is scored unmoved, with a warning."""
        try:
            return window_snrs(frame, where).reindex(ids).to_numpy()
        except UserError as err:
            if self.snr_asked:
                raise
            log.warning("%s is scored without the SNR move (val's errors are moved): %s", where, err)
            return None

    def score_frame(self, frame: pd.DataFrame, where: str) -> pd.Series:
        """Scores of a results frame (rows per (signal, t), as reconstruct.py writes)."""
        return self.score_logs(self.frame_logs(frame, where)).rename(where)

    def crossfit_val_scores(self, folds: int = CROSSFIT_FOLDS, seed: int = 0,
                            members: pd.Series | None = None) -> pd.Series:
        """Out-of-sample val scores: each fold scored by the score fitted on the other folds.

        A fitted score sees its own val signals as more typical than new in-distribution signals,
        so thresholds come from these instead. Folds are made of whole frames, so no window is
        scored by a detector fitted on its own frame's other windows. With ``members`` (val window id -> group
        id, groups within frames; a K-window detector's own by default): the :meth:`pooled` score of each group,
        indexed by group id.
        """
        members = self.val_members if members is None else members
        if members is None:
            values = np.empty(len(self.val_features))
            for held_out, scorer, scored in self.folds(folds, seed):
                values[held_out] = scorer(scored)
            return pd.Series(values, index=self.val_features.index, name="val")
        pooled = []
        for held_out, scorer, scored in self.folds(folds, seed):
            logs = pd.DataFrame(log_errors(scored), index=self.val_features.index[held_out])
            means = mean_logs(logs, members[members.index.isin(logs.index)])
            pooled.append(pd.Series(scorer(np.exp(means.to_numpy())), index=means.index))
        return pd.concat(pooled).reindex(pd.unique(members.to_numpy())).rename("val")

    def folds(self, folds: int, seed: int) -> Iterator[tuple[np.ndarray, object, np.ndarray]]:
        """Each fold of whole val frames: its mask, the score fitted on the other folds (SNR-aware: their lines too)
        and the fold's errors as that score reads them."""
        units = (self.val_units.reindex(self.val_features.index).to_numpy() if self.val_units is not None
                 else self.val_features.index.to_numpy())
        names, unit_of = np.unique(units.astype(str), return_inverse=True)
        if len(names) < 2:  # each fold is fitted on the other folds' frames: one frame leaves none to fit on
            raise UserError(f"cross-fitting the threshold needs val windows from at least two frames, but the val "
                            f"results hold {len(units)} window(s) of {len(names)} frame; reconstruct more val windows "
                            "(a larger --first_n_val) or use a validation file with more frames")
        fold_of = (np.random.default_rng(seed).permutation(len(names)) % min(folds, len(names)))[unit_of]
        errors, groups = self.val_features.to_numpy(), metric_groups(self.val_features, self.metrics)
        for fold in np.unique(fold_of):
            held_out = fold_of == fold
            fitting, scored = errors[~held_out], errors[held_out]
            if self.snr_adjust is not None:
                fitting, scored = self.snr_adjust.split(errors, ~held_out)
            if self.val_members is not None:
                fitting = self.group_means(fitting, ~held_out)
                if len(fitting) < 2:
                    raise UserError("cross-fitting the integrated threshold leaves fewer than 2 val groups to fit on; "
                                    "lower --integrate or reconstruct more val frames")
            yield held_out, fit_score(self.score, fitting, groups), scored


def groups_needed(dimensions: int) -> int:
    """Val groups a K-window score needs to be fitted on group means: half its dimensions, and two per cross-fitting
    fold. Measured: 32 groups of 8 for the 40 dimensions of ``bands`` scored with the single-window fit on the
    selection draws (a tie; docs/benchmarks.md); 6 groups for 16 dimensions flagged 2 of 11 in-family groups at a 5 %
    false-alarm rate (tests/test_score_decisions).
    """
    return max(math.ceil(dimensions / 2), 2 * CROSSFIT_FOLDS)


def mean_logs(logs: pd.DataFrame, members: pd.Series) -> pd.DataFrame:
    """Each group's mean log errors (``members``: window id -> group id), indexed by group id in order of appearance;
    a group holding a NaN row (a diverged window) is NaN."""
    rows = logs.reindex(members.index)
    keys = members.to_numpy()
    means = rows.groupby(keys, sort=False).mean()
    diverged = rows.isna().any(axis=1).groupby(keys, sort=False).any()
    means.loc[diverged.reindex(means.index).to_numpy()] = np.nan
    return means


def metric_groups(features: pd.DataFrame, metrics: list[str]) -> np.ndarray:
    return features.columns.get_level_values(0).map(metrics.index).to_numpy()


def fit_detector(val: pd.DataFrame, metrics: str | list[str] = tuple(DEFAULT_METRICS), score: str = DEFAULT_SCORE,
                 min_t: int = 0, max_t: int = 1000, t_skip: int = 1, auto_t: bool = False,
                 snr_aware: bool | None = None) -> Detector:
    """Fit ``score`` on the val results alone (``metrics`` at the kept t, optionally --auto_t; ``snr_aware``: on
    errors moved to val's mean SNR, :mod:`src.ood.snr_adjust`; None: :data:`DEFAULT_SNR_AWARE` where val's SNR
    estimates are found, not for the feature baseline)."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    ts = kept_t(list(error_table(val, metrics[0], "val").columns), min_t, max_t, t_skip)
    dropped = []
    if auto_t:
        ts, dropped = informative_t({metric: error_table(val, metric, "val")[ts] for metric in metrics})
    features = feature_table(val, metrics, ts, "val")
    if len(features) < 2:
        raise UserError("the val results hold fewer than 2 signals; fitting a score needs more")
    errors, adjust, snrs = features.to_numpy(), None, None
    if snr_aware or (snr_aware is None and DEFAULT_SNR_AWARE and FEATURE_COLUMN not in metrics):
        try:
            snrs = window_snrs(val, "val")
        except UserError as err:
            if snr_aware:
                raise
            log.info("scored without SNR awareness (its default): %s", err)
    if snrs is not None:
        adjust = SnrAdjust.fit(errors, snrs.reindex(features.index).to_numpy())
        errors = adjust(errors, adjust.val_snr)
    scorer = fit_score(score, errors, metric_groups(features, metrics))
    return Detector(score, metrics, ts, dropped, scorer, features, signal_units(val), adjust, bool(snr_aware))


@dataclass
class ScoreOptions:
    """Which score, metrics and start points (the flags of :func:`src.ood.flags.add_score_args`).

    ``score`` or ``metric`` None means the run's default: :data:`DEFAULT_SCORE` on
    :data:`DEFAULT_METRICS`, or :data:`FEATURE_DEFAULTS` for a feature-baseline run; ``snr_aware`` None:
    :data:`DEFAULT_SNR_AWARE` where the windows' SNR estimates are found (:func:`fit_detector`).
    """

    score: str | None
    metric: list[str] | None
    min_t: int = 0
    max_t: int = 1000
    t_skip: int = 1
    auto_t: bool = False
    snr_aware: bool | None = None  # score errors moved to val's mean SNR (src.ood.snr_adjust)

    def for_run(self, settings: dict) -> ScoreOptions:
        """These options with the defaults of the run whose reconstruction.json holds ``settings`` filled in."""
        score, metric = (FEATURE_DEFAULTS if settings.get("mode") == "features" else
                         IMAGE_DEFAULTS if settings.get("spatial_dims", 1) != 1 else (DEFAULT_SCORE, DEFAULT_METRICS))
        return ScoreOptions(self.score or score, list(self.metric or metric), self.min_t, self.max_t, self.t_skip,
                            self.auto_t, self.snr_aware)

    def fit(self, val: pd.DataFrame) -> Detector:
        return fit_detector(val, self.metric, self.score, self.min_t, self.max_t, self.t_skip, self.auto_t,
                            self.snr_aware)

    @property
    def suffix(self) -> str:
        """``<metrics>_<score>``, the suffix of the files this choice writes; ``-snr`` (``-plain``) added where
        --snr_aware asks for what its default does not."""
        differs = self.snr_aware is not None and self.snr_aware != DEFAULT_SNR_AWARE
        return f"{'-'.join(self.metric)}_{self.score}" + (("-snr" if self.snr_aware else "-plain") if differs else "")


CONSTANT_CV = 1e-3  # val errors this tight (relative to their mean) carry no information
DIVERGING_ROBUST_Z = 3.5  # a log-CV this many robust standard deviations above the others' is diverging


def informative_t(val_tables: dict[str, pd.DataFrame]) -> tuple[list[int], list[int]]:
    """--auto_t: the start points whose val errors are usable, and those dropped. Val only.

    A start point is dropped when, for any metric, its val errors
    - are NaN or infinite (the reconstruction diverged),
    - are (nearly) constant: coefficient of variation std / mean below ``CONSTANT_CV``, or
    - are far more dispersed than at the other start points: the robust z-score (median and MAD over
      t) of log(CV) above ``DIVERGING_ROBUST_Z``. Heavy tails there mean some in-distribution
      reconstructions run away; z-scores of such a t are mostly noise.
    """
    first = next(iter(val_tables.values()))
    drop = pd.Series(False, index=first.columns)
    for table in val_tables.values():
        finite = np.isfinite(table).all(axis=0)
        drop |= ~finite
        spread = table.loc[:, finite].std(axis=0, ddof=1) / table.loc[:, finite].mean(axis=0).abs()
        drop |= (spread.fillna(0.0) < CONSTANT_CV).reindex(drop.index, fill_value=False)
        log_cv = np.log(spread[spread >= CONSTANT_CV])
        if len(log_cv) >= 3:
            mad = 1.4826 * (log_cv - log_cv.median()).abs().median()
            drop |= ((log_cv - log_cv.median()) / max(mad, 1e-12) > DIVERGING_ROBUST_Z).reindex(drop.index,
                                                                                               fill_value=False)
    kept = [t for t in first.columns if not drop[t]]
    if not kept:
        raise UserError("--auto_t dropped every start point (val errors diverge or are constant everywhere); "
                        "check the run's reconstructions or choose --min_t/--max_t by hand")
    return kept, [t for t in first.columns if drop[t]]
