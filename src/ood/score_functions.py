"""OOD scores: functions of a signal's reconstruction errors over start points t (and metrics), fitted on val.

Each score is fitted on the val errors alone (an array [n_val, n_features], one feature per
(metric, t): no OOD labels, no test data) and then maps any error array [n, n_features] to one
number per signal, higher = more unusual. ``groups`` gives each feature's metric.

- ``zmean``: the paper's score. z = (e - mean_val) / std_val per feature, averaged. One-sided: a
  signal reconstructed BETTER than the training type (a pure tone, a constant-envelope signal) gets
  negative z and looks more normal than normal.
- ``zabs``: mean |z|. Two-sided: any departure from the val profile counts.
- ``mahalanobis``: squared Mahalanobis distance of the log errors from the val mean, under the val
  covariance with Ledoit-Wolf shrinkage. Two-sided, and it accounts for features that move together
  (mse and mae of one reconstruction). Logs make the skewed positive errors closer to Gaussian.
- ``pooled``: each metric's z averaged over t first (signed, as in zmean), then the squared
  Mahalanobis distance of these per-metric means from their val mean (Ledoit-Wolf). Averaging first
  is what makes it strong: the noise drawn at each t is independent, so in-distribution errors at
  different t are nearly uncorrelated and their mean is far less noisy than any one t, while an
  out-of-distribution signal shifts most t the same way. The distance then flags a shift in either
  direction and in any metric. With one metric it is the two-sided zmean, (zmean / its val std)^2.
- ``bands``: between the two: each metric's log errors averaged over t in N_BANDS contiguous bands of
  start points (low, middle, high noise ...), then their Mahalanobis distance (Ledoit-Wolf). Four
  metrics give 40 dimensions instead of mahalanobis's 4 x 99, so a covariance fitted on a few hundred
  val windows is well determined (a rule of thumb: at least twice as many val windows as
  dimensions, 80 here), while keeping how the error moves with the noise level, which ``pooled``
  averages away.
"""
from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

STD_FLOOR = 1e-12  # a feature whose val errors are all equal carries no scale
ERROR_FLOOR = 1e-12  # errors are clipped here before taking logs


class ZScore:
    """Per-feature standardisation by the val mean and standard deviation."""

    def fit(self, val: np.ndarray, groups: np.ndarray) -> ZScore:
        self.mean = val.mean(axis=0)
        self.std = np.maximum(val.std(axis=0, ddof=1), STD_FLOOR)
        self.groups = np.asarray(groups)
        return self

    def z(self, errors: np.ndarray) -> np.ndarray:
        return (errors - self.mean) / self.std

    @property
    def dimensions(self) -> int:
        return self.mean.size


class ZMean(ZScore):
    def __call__(self, errors: np.ndarray) -> np.ndarray:
        return self.z(errors).mean(axis=1)


class ZAbs(ZScore):
    def __call__(self, errors: np.ndarray) -> np.ndarray:
        return np.abs(self.z(errors)).mean(axis=1)


def log_errors(errors: np.ndarray) -> np.ndarray:
    """The log of errors clipped at :data:`ERROR_FLOOR`: what the log-error scores and the SNR move read."""
    return np.log(np.maximum(np.asarray(errors, dtype=np.float64), ERROR_FLOOR))


class Mahalanobis:
    def fit(self, val: np.ndarray, groups: np.ndarray) -> Mahalanobis:
        self.model = LedoitWolf().fit(self.features(val))
        return self

    def features(self, errors: np.ndarray) -> np.ndarray:
        return log_errors(errors)

    def __call__(self, errors: np.ndarray) -> np.ndarray:
        return self.model.mahalanobis(self.features(errors))

    @property
    def dimensions(self) -> int:
        """The rows of the fitted covariance."""
        return self.model.location_.size


class Pooled(Mahalanobis):
    def fit(self, val: np.ndarray, groups: np.ndarray) -> Pooled:
        self.zscore = ZScore().fit(val, groups)
        return super().fit(val, groups)

    def features(self, errors: np.ndarray) -> np.ndarray:
        z, groups = self.zscore.z(errors), self.zscore.groups
        return np.stack([z[:, groups == group].mean(axis=1) for group in np.unique(groups)], axis=1)


N_BANDS = 10  # t-bands of the ``bands`` score


class Bands(Mahalanobis):
    def fit(self, val: np.ndarray, groups: np.ndarray) -> Bands:
        self.groups = np.asarray(groups)
        return super().fit(val, groups)

    def features(self, errors: np.ndarray) -> np.ndarray:
        """Per metric (features in ascending t), the mean log error in each of N_BANDS contiguous bands."""
        logs = super().features(errors)
        return np.concatenate([np.stack([logs[:, band].mean(axis=1) for band in
                                         np.array_split(np.flatnonzero(self.groups == group), N_BANDS) if len(band)],
                                        axis=1) for group in np.unique(self.groups)], axis=1)


SCORES = {"zmean": ZMean, "zabs": ZAbs, "mahalanobis": Mahalanobis, "pooled": Pooled, "bands": Bands}
DESCRIPTIONS = {
    "zmean": "mean z over t (one-sided, the paper's)",
    "zabs": "mean |z| over t (two-sided)",
    "mahalanobis": "Mahalanobis distance of the log errors over t (Ledoit-Wolf covariance)",
    "pooled": "each metric's mean z over t, then their Mahalanobis distance (two-sided)",
    "bands": f"each metric's mean log error in {N_BANDS} t-bands, then their Mahalanobis distance (Ledoit-Wolf)",
}


def fit_score(name: str, val: np.ndarray, groups: np.ndarray | None = None):
    """The score ``name`` fitted on the val errors [n_val, n_features]; call it on errors [n, n_features].

    ``groups``: the metric of each feature (default: all one metric).
    """
    groups = np.zeros(val.shape[1], dtype=int) if groups is None else np.asarray(groups)
    return SCORES[name]().fit(val, groups)
