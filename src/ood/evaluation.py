"""How well scores separate in from out: the OOD detection measures (OpenOOD conventions).

The one AUROC of the project: ood_detection.py's tables, the report and the benchmarks that chose
the defaults all go through :func:`ood_metrics` / :func:`auroc_table`. Intervals resample frames
(the independent units) rather than the correlated windows cut from them.

Scores: higher = more unusual. AUROC and AUPR-Out treat out as the positive class; AUPR-In treats
in as positive (with the scores negated); FPR@95TPR is the fraction of out signals accepted as in at
the threshold that accepts 95% of the in signals. The AUROC interval is a percentile bootstrap that
resamples the in and the out signals separately.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_curve

COLUMNS = ["AUROC", "AUROC_low", "AUROC_high", "AUPR_In", "AUPR_Out", "FPR@95TPR"]
TPR_LEVEL = 0.95


def labels_and_scores(in_scores: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))], np.r_[in_scores, out_scores]


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr_level: float = TPR_LEVEL) -> float:
    """Fraction of out signals scored at or below the lowest threshold that accepts ``tpr_level`` of in."""
    labels, scores = labels_and_scores(in_scores, out_scores)
    fpr, tpr, _ = roc_curve(1 - labels, -scores)  # in is the positive class, accepted when -score is high
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def rank_auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> np.ndarray:
    """AUROC = P(out > in) + P(out = in) / 2 per row of [..., n_in] and [..., n_out] (Mann-Whitney U)."""
    n_in, n_out = in_scores.shape[-1], out_scores.shape[-1]
    ranks = rankdata(np.concatenate([in_scores, out_scores], axis=-1), axis=-1)  # ties get their mean rank
    return (ranks[..., n_in:].sum(axis=-1) - n_out * (n_out + 1) / 2) / (n_in * n_out)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(an out score > an in score), ties counting half: the area under the ROC curve."""
    return float(rank_auroc(np.asarray(in_scores, dtype=float), np.asarray(out_scores, dtype=float)))


def bootstrap_auroc(in_scores: np.ndarray, out_scores: np.ndarray, n_bootstrap: int, seed: int = 0,
                    level: float = 0.95, in_units=None, out_units=None) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling independent units (frames).

    Windows cut from one frame share its carrier offset, phase and noise, so they are not
    independent draws: each resample draws whole units with replacement, in and out apart, and keeps
    every window of each drawn unit (a cluster bootstrap). ``in_units``/``out_units`` name each
    score's unit; without them every score is its own unit.
    """
    in_scores, out_scores = np.asarray(in_scores, dtype=float), np.asarray(out_scores, dtype=float)
    in_index, n_in_units = unit_index(in_units, len(in_scores))
    out_index, n_out_units = unit_index(out_units, len(out_scores))
    rng = np.random.default_rng(seed)
    in_counts, out_counts = np.empty((n_bootstrap, n_in_units)), np.empty((n_bootstrap, n_out_units))
    for draw in range(n_bootstrap):
        in_counts[draw] = np.bincount(rng.integers(0, n_in_units, n_in_units), minlength=n_in_units)
        out_counts[draw] = np.bincount(rng.integers(0, n_out_units, n_out_units), minlength=n_out_units)
    return percentile_interval(weighted_auroc(in_scores, out_scores, in_counts[:, in_index], out_counts[:, out_index]),
                               level)


def unit_index(units, n: int) -> tuple[np.ndarray, int]:
    """Each score's unit as 0..n_units-1, and n_units (every score its own unit when ``units`` is None)."""
    if units is None:
        return np.arange(n), n
    names, index = np.unique(np.asarray(units, dtype=str), return_inverse=True)
    return index, len(names)


def weighted_auroc(in_scores: np.ndarray, out_scores: np.ndarray, in_weights: np.ndarray,
                   out_weights: np.ndarray) -> np.ndarray:
    """AUROC per row of weights [B, n_in] and [B, n_out]: each score counted as often as its weight."""
    order = np.argsort(in_scores, kind="stable")
    sorted_in = in_scores[order]
    cumulative = np.concatenate([np.zeros((len(in_weights), 1)), np.cumsum(in_weights[:, order], axis=1)], axis=1)
    below = cumulative[:, np.searchsorted(sorted_in, out_scores, side="left")]
    up_to = cumulative[:, np.searchsorted(sorted_in, out_scores, side="right")]
    wins = (out_weights * (below + 0.5 * (up_to - below))).sum(axis=1)
    return wins / (in_weights.sum(axis=1) * out_weights.sum(axis=1))


def ood_metrics(in_scores: np.ndarray, out_scores: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                in_units=None, out_units=None) -> dict:
    """AUROC with its bootstrap 95% interval over units (NaN when n_bootstrap is 0), AUPR-In, AUPR-Out,
    FPR@95TPR."""
    in_scores, out_scores = np.asarray(in_scores, dtype=float), np.asarray(out_scores, dtype=float)
    labels, scores = labels_and_scores(in_scores, out_scores)
    low, high = (bootstrap_auroc(in_scores, out_scores, n_bootstrap, seed, in_units=in_units, out_units=out_units)
                 if n_bootstrap else (np.nan, np.nan))
    return {"AUROC": auroc(in_scores, out_scores), "AUROC_low": low, "AUROC_high": high,
            "AUPR_In": float(average_precision_score(1 - labels, -scores)),
            "AUPR_Out": float(average_precision_score(labels, scores)),
            "FPR@95TPR": fpr_at_tpr(in_scores, out_scores)}


def metrics_table(in_scores: pd.Series, outs: dict[str, pd.Series], n_bootstrap: int = 1000,
                  seed: int = 0, units: pd.Series | None = None) -> pd.DataFrame:
    """One row per out set (sorted by name) and a ``mean`` row; columns :data:`COLUMNS`.

    ``units`` maps each signal id (the scores' index) to its independent unit (frame) for the
    bootstrap; without it every signal is its own unit.
    """
    def unit_ids(scores: pd.Series):
        if units is None:
            return None
        found = units.reindex(scores.index).to_numpy(dtype=object)
        return np.where(pd.isna(found), scores.index.to_numpy(dtype=object), found)  # unknown: its own unit

    rows = {name: ood_metrics(in_scores.to_numpy(), outs[name].to_numpy(), n_bootstrap, seed,
                              unit_ids(in_scores), unit_ids(outs[name])) for name in sorted(outs)}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    table.loc["mean"] = table.mean(axis=0)
    table.loc["mean", ["AUROC_low", "AUROC_high"]] = np.nan  # an interval of the mean needs a joint bootstrap
    return table


def auroc_table(in_scores: pd.Series, outs: dict[str, pd.Series]) -> pd.Series:
    """AUROC of in (0) against each out set (1), sorted by name, and their ``mean``."""
    return metrics_table(in_scores, outs, n_bootstrap=0)["AUROC"]


def mean_auroc_bootstrap(scorings: list[tuple[pd.Series, dict[str, pd.Series]]], units: pd.Series | None = None,
                         n_bootstrap: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean AUROC over the out sets of several scorings of the same signals, and its frame bootstrap.

    ``scorings`` are (in scores, {out set: scores}) pairs, e.g. one per reconstruction setting or
    precision, all indexed by the same signal ids. Each resample draws whole units (``units`` maps a
    signal id to its frame) of the in set and of every out set, and the SAME draw serves every
    scoring, so the difference between two scorings is a paired comparison. Returns the point
    estimates [k] and the resampled values [n_bootstrap, k].
    """
    reference_in, reference_outs = scorings[0]
    rng = np.random.default_rng(seed)

    def weights(ids: pd.Index) -> np.ndarray:
        found = None if units is None else units.reindex(ids).to_numpy(dtype=object)
        if found is not None:
            found = np.where(pd.isna(found), ids.to_numpy(dtype=object), found)
        index, n_units = unit_index(found, len(ids))
        counts = np.stack([np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
                           for _ in range(n_bootstrap)])
        return counts[:, index]

    def aligned(scores: pd.Series, ids: pd.Index) -> np.ndarray:
        values = scores.reindex(ids)
        if values.isna().any():
            raise ValueError("the scorings to compare do not hold the same signals")
        return values.to_numpy(dtype=float)

    in_weights = weights(reference_in.index)
    out_weights = {name: weights(scores.index) for name, scores in sorted(reference_outs.items())}
    points, values = [], []
    for in_scores, outs in scorings:
        inside = aligned(in_scores, reference_in.index)
        per_set = [(auroc(inside, aligned(outs[name], reference_outs[name].index)),
                    weighted_auroc(inside, aligned(outs[name], reference_outs[name].index), in_weights, w))
                   for name, w in out_weights.items()]
        points.append(np.mean([point for point, _ in per_set]))
        values.append(np.mean([draws for _, draws in per_set], axis=0))
    return np.asarray(points), np.stack(values, axis=1)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap values (percentile bootstrap)."""
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))
