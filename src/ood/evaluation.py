"""How well scores separate in from out: the OOD detection measures (OpenOOD conventions).

The one AUROC of the project: ood_detection.py's tables, the report and the benchmarks that chose
the defaults all go through :func:`ood_metrics` / :func:`auroc_table`.

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
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (in and out resampled separately)."""
    rng = np.random.default_rng(seed)
    in_draws = in_scores[rng.integers(0, len(in_scores), size=(n_bootstrap, len(in_scores)))]
    out_draws = out_scores[rng.integers(0, len(out_scores), size=(n_bootstrap, len(out_scores)))]
    values = rank_auroc(in_draws, out_draws)
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def ood_metrics(in_scores: np.ndarray, out_scores: np.ndarray, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """AUROC with its bootstrap 95% interval (NaN when n_bootstrap is 0), AUPR-In, AUPR-Out, FPR@95TPR."""
    in_scores, out_scores = np.asarray(in_scores, dtype=float), np.asarray(out_scores, dtype=float)
    labels, scores = labels_and_scores(in_scores, out_scores)
    low, high = bootstrap_auroc(in_scores, out_scores, n_bootstrap, seed) if n_bootstrap else (np.nan, np.nan)
    return {"AUROC": auroc(in_scores, out_scores), "AUROC_low": low, "AUROC_high": high,
            "AUPR_In": float(average_precision_score(1 - labels, -scores)),
            "AUPR_Out": float(average_precision_score(labels, scores)),
            "FPR@95TPR": fpr_at_tpr(in_scores, out_scores)}


def metrics_table(in_scores: pd.Series, outs: dict[str, pd.Series], n_bootstrap: int = 1000,
                  seed: int = 0) -> pd.DataFrame:
    """One row per out set (sorted by name) and a ``mean`` row; columns :data:`COLUMNS`."""
    rows = {name: ood_metrics(in_scores.to_numpy(), outs[name].to_numpy(), n_bootstrap, seed) for name in sorted(outs)}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    table.loc["mean"] = table.mean(axis=0)
    table.loc["mean", ["AUROC_low", "AUROC_high"]] = np.nan  # an interval of the mean needs a joint bootstrap
    return table


def auroc_table(in_scores: pd.Series, outs: dict[str, pd.Series]) -> pd.Series:
    """AUROC of in (0) against each out set (1), sorted by name, and their ``mean``."""
    return metrics_table(in_scores, outs, n_bootstrap=0)["AUROC"]
