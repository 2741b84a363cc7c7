"""OOD scores from reconstruction errors, and the AUROC table (DESIGN.md, "OOD scoring").

For each metric and start point t: z = (error - mean_val(t)) / std_val(t), with the statistics
fitted on the val set only. A signal's score is its mean z over the kept t; AUROC treats in = 0 and
out = 1, one value per out dataset found in the ood folder plus their mean.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from src.errors import UserError
from src.ood.results import read_results

STD_FLOOR = 1e-12  # a start point whose val errors are all equal carries no scale


def load_sets(ood_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(val, in, {out name: frame}) from ``<run>/ood``; out sets are every other results file."""
    for name in ("val", "in"):
        if not (ood_dir / f"results_{name}.csv").is_file():
            raise UserError(f"{ood_dir} has no results_{name}.csv; run reconstruct.py with --run_{name}=1 first")
    val, inside = read_results(ood_dir / "results_val.csv"), read_results(ood_dir / "results_in.csv")
    outs = {path.stem.removeprefix("results_"): read_results(path) for path in sorted(ood_dir.glob("results_*.csv"))
            if path.stem not in ("results_val", "results_in")}
    if not outs:
        raise UserError(f"{ood_dir} has no out results (results_<Name>.csv); run reconstruct.py with --out_ids")
    return val, inside, outs


def error_table(frame: pd.DataFrame, metric: str, where: str) -> pd.DataFrame:
    """Errors as [signal, t]; every signal must have every t."""
    if metric not in frame.columns:
        raise UserError(f"results for {where} have no {metric!r} column; choose --metric from the columns present")
    table = frame.pivot_table(index="filename", columns="t", values=metric, aggfunc="mean")
    if table.isna().any().any():
        raise UserError(f"results for {where} miss some (signal, t) rows; run reconstruct.py again")
    return table


def kept_t(available: list[int], min_t: int, max_t: int, t_skip: int) -> list[int]:
    """Start points with min_t <= t <= max_t, then every t_skip-th of them."""
    kept = [t for t in sorted(available) if min_t <= t <= max_t][::t_skip]
    if not kept:
        raise UserError(f"no start point lies in --min_t={min_t} .. --max_t={max_t}; "
                        f"the results hold t = {sorted(available)[0]} .. {sorted(available)[-1]}")
    return kept


def fit_val_statistics(val_table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Mean and standard deviation of the val errors at each t."""
    if len(val_table) < 2:
        raise UserError("the val results hold fewer than 2 signals; a standard deviation needs more")
    return val_table.mean(axis=0), val_table.std(axis=0, ddof=1).clip(lower=STD_FLOOR)


def zmean_scores(table: pd.DataFrame, mean: pd.Series, std: pd.Series) -> pd.Series:
    """The paper's score: mean over t of the one-sided z-score (higher = more unusual)."""
    return ((table - mean) / std).mean(axis=1)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(labels, np.r_[in_scores, out_scores]))


def ood_aurocs(ood_dir: Path, metric: str = "mse", min_t: int = 0, max_t: int = 1000,
               t_skip: int = 1) -> tuple[pd.Series, list[int]]:
    """AUROC per out dataset (and their mean) for one run; also returns the t values used."""
    val, inside, outs = load_sets(ood_dir)
    val_table = error_table(val, metric, "val")
    ts = kept_t(list(val_table.columns), min_t, max_t, t_skip)
    mean, std = fit_val_statistics(val_table[ts])

    def scores(frame: pd.DataFrame, where: str) -> np.ndarray:
        table = error_table(frame, metric, where)
        missing = sorted(set(ts) - set(table.columns))
        if missing:
            raise UserError(f"results for {where} lack start points {missing} that val has; "
                            "reconstruct every set with the same --num_inference_steps and --inference_skip_factor")
        return zmean_scores(table[ts], mean, std).to_numpy()

    in_scores = scores(inside, "in")
    values = {name: auroc(in_scores, scores(frame, name)) for name, frame in outs.items()}
    values["mean"] = float(np.mean(list(values.values())))
    return pd.Series(values, name="AUROC"), ts
