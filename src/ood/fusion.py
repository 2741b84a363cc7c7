"""A fused detector: several runs' scores of the same windows combined so that no view dilutes another.

Each view (a run: a diffusion model, the feature baseline, ...) scores every window with its own
detector, fitted on its own val results. To put the views on one scale, each score is standardised
against that view's *cross-fitted* val scores (out-of-sample, as new in-distribution windows would
score): z = (g(s) - mean) / std, with g = log for positive scores (distances, roughly chi-square, so
their logs are roughly Gaussian) and the identity otherwise. The fused score is the largest z over
the views (Tippett's rule, the min-p combination): a window is as unusual as its most unusual view
says. Where one view carries all the signal, the max follows it and the other views only add the
small chance that an in-distribution window looks unusual in two views instead of one; a sum or a
joint Mahalanobis distance (measured: a naive joint distance scored below the features alone) lets
a view that sees nothing add its noise to every window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from src.errors import UserError

STD_FLOOR = 1e-12


@dataclass
class View:
    """One run's scores: cross-fitted val scores (the scale) and the scores of every other set."""

    name: str
    val_crossfit: pd.Series
    scores: dict[str, pd.Series]  # "in" and each out set


def standardise(scores: pd.Series, val_crossfit: pd.Series) -> pd.Series:
    """z of ``scores`` against the cross-fitted val scores, on a log scale where every val score is positive."""
    positive = bool((val_crossfit > 0).all())
    transform = (lambda x: np.log(np.maximum(x, np.finfo(float).tiny))) if positive else (lambda x: x)
    reference = transform(val_crossfit.to_numpy(dtype=float))
    scale = max(float(reference.std(ddof=1)), STD_FLOOR)
    return (transform(scores.astype(float)) - float(reference.mean())) / scale


def fuse(views: list[View]) -> dict[str, pd.Series]:
    """The fused score of every set the views share: per window, the largest standardised score of any view."""
    if len(views) < 2:
        raise UserError("fusing needs at least two runs")
    fused = {}
    for name in views[0].scores:
        columns = []
        for view in views:
            if name not in view.scores:
                raise UserError(f"run {view.name} has no scores of the set {name!r} that {views[0].name} has; "
                                "reconstruct every fused run on the same files")
            columns.append(standardise(view.scores[name], view.val_crossfit).rename(view.name))
        table = pd.concat(columns, axis=1)
        if table.isna().any().any():
            raise UserError(f"the fused runs scored different windows of {name!r}; reconstruct them on the same "
                            "files with the same --first_n")
        fused[name] = table.max(axis=1).rename(name)
    return fused
