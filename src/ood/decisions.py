"""Decisions the way a receiver makes them: over an observation of K windows, at a false-alarm rate set per SNR.

**Integration** (``--integrate K``, ood_detection.py and score.py). A monitor sees many windows of one
emission; it decides on K consecutive windows of it together. Windows are grouped in their order
within their emission (a frame of a processed file: the windows sharing a frame id; a raw
recording: consecutive windows, within each frame of a frame source), K at a time from the first;
a frame's tail of fewer than K windows forms no group and is left out (so every integrated score
covers exactly K windows and shares one null distribution). The integrated score is the **detector's
score of the K windows' mean log errors** (after the SNR move where the score is SNR-aware), the score
fitted on val's K-window means (:meth:`src.ood.detector.Detector.for_groups`): for the default
``bands`` score, the Mahalanobis distance of the mean of the K windows' band features under the
covariance of such means. Where the windows share their emission and differ by noise, averaging first
shrinks the noise in every feature before the distance is taken, so a small shift common to the K
windows stands out; the mean of K distances keeps each window's own chi-square spread, which the shift
must clear window by window. Put to the selection rule (benchmarks/bench_integration.py; draws A-D and
Q, every one-step diffusion run, K = 2, 4, 8) it won against the mean of the K scores, 0.856 against
0.836, and tied with the same score fitted on single windows, 0.856 against 0.855. The threshold comes
from val windows grouped and scored the same way, cross-fitted (whole frames held out), so it stays
calibrated when the windows of a frame are correlated. A group holding a diverged window scores the
maximum.

**False alarms per SNR band** (``score.py --pfa``). A threshold fitted on val windows of all SNRs
together flags windows of some SNRs far more often than others (the score moves with SNR). Here
windows are grouped in bands of ``width`` dB of their blind SNR estimate (``snr_est_db``,
:func:`src.dsp.blind_snr_db`), [k width, (k + 1) width), and each band gets the (1 - Pfa) quantile of
the cross-fitted val scores that fall in it. A band needs at least ``MIN_EXCEEDANCES / Pfa`` val
windows (at Pfa 1 %: 500), so its threshold rests on some val windows above it; a band with fewer,
and any SNR outside val's bands, uses the pooled threshold (the quantile of all val scores), and the
log says which bands do.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from src.errors import UserError

log = logging.getLogger("rfood")
SNR_BAND_DB = 5.0  # default width of the SNR bands (score.py --snr_band)
MIN_EXCEEDANCES = 5  # val windows a band needs above its threshold (in expectation) to get its own
Pool = Callable[[pd.Series], pd.Series]  # window id -> group id, to each group's score (indexed by group id)


# --------------------------------------------------------------------------------------------------
# Integration over K windows of one emission
# --------------------------------------------------------------------------------------------------

def sample_index(ids: pd.Index) -> np.ndarray:
    """The window index of ids ``<stem>:<index>`` (their order within a file), or their position where not numeric."""
    tail = pd.Series(ids.astype(str)).str.rsplit(":", n=1).str[-1]
    numeric = pd.to_numeric(tail, errors="coerce")
    return np.where(numeric.isna(), np.arange(len(ids)), numeric.fillna(0)).astype(np.int64)


@dataclass
class Integrated:
    """Scores of groups of K consecutive windows of one emission.

    ``scores``: group id -> mean window score; ``units``: group id -> the frame it lies in (the
    independent unit, for the bootstrap); ``members``: window id -> its group id (windows in complete
    groups only); ``last``: group id -> the id of its last window; ``left_out``: windows in frame tails
    shorter than K.
    """

    k: int
    scores: pd.Series
    units: pd.Series
    members: pd.Series
    last: pd.Series
    left_out: int

    def mean_of(self, values: pd.Series) -> pd.Series:
        """Per-group mean of a per-window quantity (e.g. the SNR estimate), indexed by group id."""
        return values.reindex(self.members.index).groupby(self.members.to_numpy()).mean().reindex(self.scores.index)


def integrate(scores: pd.Series, units: pd.Series | None, k: int, pool: Pool | None = None) -> Integrated:
    """The score of each group of ``k`` consecutive windows within a frame (see the module docstring): ``pool`` of
    its members (the detector's score of their mean log errors), or without it the mean of their ``scores``.

    ``scores`` are indexed by window id (``<stem>:<index>``); ``units`` maps each id to its frame (None,
    or an id missing from it: the window is its own frame). Group ids are ``<frame>/<first index>+<k>``.
    """
    if k < 1:
        raise UserError(f"--integrate must be a positive number of windows, got {k}")
    ids = scores.index
    frames = (units.reindex(ids) if units is not None else pd.Series(np.nan, index=ids, dtype=object))
    frames = pd.Series(np.where(frames.isna(), ids.to_numpy(dtype=object), frames.to_numpy(dtype=object)), index=ids)
    order = pd.DataFrame({"frame": frames.astype(str).to_numpy(), "index": sample_index(ids), "id": ids.to_numpy(),
                          "score": scores.to_numpy(dtype=float)})
    order = order.sort_values(["frame", "index"], kind="stable")
    position = order.groupby("frame", sort=False).cumcount().to_numpy()
    size = order.groupby("frame", sort=False)["id"].transform("size").to_numpy()
    complete = position < size // k * k
    kept = order[complete].assign(group=position[complete] // k)
    first = kept.groupby(["frame", "group"], sort=False)["index"].transform("first")
    kept = kept.assign(group_id=kept["frame"] + "/" + first.astype(str) + f"+{k}")
    grouped = kept.groupby("group_id", sort=False)
    members = pd.Series(kept["group_id"].to_numpy(), index=kept["id"].to_numpy())
    pooled = pool is not None and len(members)
    group_scores = pool(members).reindex(grouped.size().index) if pooled else grouped["score"].mean()
    return Integrated(k, group_scores.rename("integrated"), grouped["frame"].first(), members, grouped["id"].last(),
                      int((~complete).sum()))


def window_groups(ids: pd.Index, units: pd.Series | None, k: int) -> pd.Series:
    """Window id -> group id of the groups :func:`integrate` makes of the windows ``ids`` (``units``: their frames)."""
    return integrate(pd.Series(0.0, index=ids), units, k).members


def integrated_sets(scores: dict[str, pd.Series], units: dict[str, pd.Series | None], k: int,
                    pools: dict[str, Pool] | None = None) -> dict[str, Integrated]:
    """:func:`integrate` for every set (``pools``: each set's, else the mean score); refuses a set that gives no group
    (every frame shorter than ``k``)."""
    done = {}
    for name, values in scores.items():
        done[name] = integrate(values, units.get(name), k, None if pools is None else pools[name])
        if done[name].scores.empty:
            longest = integrate(values, units.get(name), 1).units.value_counts().max()
            raise UserError(f"--integrate {k}: no frame of {name} holds {k} windows (at most {longest}; results "
                            "without a frame column count each window as its own frame); lower --integrate")
    left_out = sum(item.left_out for item in done.values())
    if left_out:
        log.info("--integrate %d: %d windows in frame tails shorter than %d are left out", k, left_out, k)
    return done


class StreamIntegrator:
    """Integration of a raw recording's windows as they arrive (in order, batch after batch).

    Window i of a stream sits at position i (in a frame source [frames, L]: i mod windows per frame);
    groups start at positions 0, K, 2K, ...; the group's score is emitted on its last window (the
    moment a receiver has seen all K), NaN elsewhere. A frame's tail shorter than K emits nothing.
    ``pool`` scores a group from its windows' log errors [K, features] (the detector's score of their
    mean); without it a group's score is the mean of its windows' scores.
    """

    def __init__(self, k: int, per_frame: int | None = None,
                 pool: Callable[[np.ndarray], float] | None = None) -> None:
        self.k, self.per_frame, self.pool = k, per_frame, pool
        self.values: list = []
        self.snrs: list[float] = []

    def __call__(self, indices: np.ndarray, scores: np.ndarray, snrs: np.ndarray,
                 logs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The integrated score and mean SNR estimate per window of a batch (NaN where no group ends); ``logs``
        [n, features]: each window's log errors, needed with ``pool``."""
        out_scores, out_snrs = np.full(len(indices), np.nan), np.full(len(indices), np.nan)
        for row, (index, snr) in enumerate(zip(indices, snrs)):
            position = int(index) % self.per_frame if self.per_frame else int(index)
            if position % self.k == 0:
                self.values, self.snrs = [], []
            self.values.append(float(scores[row]) if self.pool is None else logs[row])
            self.snrs.append(float(snr))
            if position % self.k == self.k - 1 and len(self.values) == self.k:
                out_scores[row] = np.mean(self.values) if self.pool is None else self.pool(np.stack(self.values))
                out_snrs[row] = np.mean(self.snrs)
        return out_scores, out_snrs


# --------------------------------------------------------------------------------------------------
# Thresholds: pooled, or per SNR band
# --------------------------------------------------------------------------------------------------

def upper_quantile(scores: np.ndarray, target: float) -> float:
    """The (1 - target) quantile, as :func:`src.field.scoring_stage.val_threshold` sets it (flag: score above)."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), 1.0 - target))


def band_edges(snr_db: np.ndarray, width: float) -> np.ndarray:
    """The lower edge of each SNR's band, floor(snr / width) * width (NaN stays NaN)."""
    return np.floor(np.asarray(snr_db, dtype=np.float64) / width) * width


@dataclass
class BandThresholds:
    """A threshold per ``width`` dB band of estimated SNR, and the pooled one for every other SNR."""

    target: float
    width: float
    pooled: float
    bands: dict[float, float] = field(default_factory=dict)  # lower edge -> threshold
    counts: dict[float, int] = field(default_factory=dict)  # lower edge -> val windows (all bands seen in val)

    @classmethod
    def fit(cls, scores: np.ndarray, snr_db: np.ndarray, target: float, width: float = SNR_BAND_DB,
            what: str = "window") -> BandThresholds:
        """Thresholds from cross-fitted val ``scores`` and their SNR estimates (the quantile per band)."""
        if not width > 0:
            raise UserError(f"--snr_band must be a positive number of dB, got {width}")
        scores, edges = np.asarray(scores, dtype=np.float64), band_edges(snr_db, width)
        needed = math.ceil(MIN_EXCEEDANCES / target)
        fitted = cls(target, width, upper_quantile(scores, target))
        for lower in np.unique(edges[np.isfinite(edges)]):
            inside = edges == lower
            fitted.counts[float(lower)] = int(inside.sum())
            if inside.sum() >= needed:
                fitted.bands[float(lower)] = upper_quantile(scores[inside], target)
        fallback = sorted(set(fitted.counts) - set(fitted.bands))
        log.info("Pfa %g per %g dB SNR band (%s scores): own thresholds for %s; the pooled threshold %.6g for %s "
                 "(fewer than %d val %ss) and for SNRs outside them", target, width, what,
                 ", ".join(band_label(lower, width) for lower in sorted(fitted.bands)) or "no band",
                 fitted.pooled, ", ".join(band_label(lower, width) for lower in fallback) or "no other band",
                 needed, what)
        return fitted

    def __call__(self, snr_db: np.ndarray) -> np.ndarray:
        """The threshold of each SNR estimate's band (the pooled one where its band has none)."""
        edges = np.atleast_1d(band_edges(snr_db, self.width))
        thresholds = np.full(edges.shape, self.pooled, dtype=np.float64)
        for lower, threshold in self.bands.items():  # a few bands, not one Python step per window
            thresholds[edges == lower] = threshold
        return thresholds

    def describe(self) -> str:
        return (f"thresholds per {self.width:g} dB SNR band at Pfa {self.target:g} ({len(self.bands)} band(s) of their "
                f"own, pooled {self.pooled:.6g} elsewhere)")


def band_label(lower: float, width: float) -> str:
    return f"{lower:g}..{lower + width:g} dB"


@dataclass
class Decider:
    """How score.py turns scores into flags: the per-window threshold (pooled, or per SNR band) and, with
    ``k`` > 1, the integrated score's own (pooled or per band)."""

    threshold: float
    bands: BandThresholds | None = None
    k: int = 1
    int_threshold: float | None = None
    int_bands: BandThresholds | None = None

    def thresholds(self, snr_db: np.ndarray) -> np.ndarray:
        return self.bands(snr_db) if self.bands is not None else np.full(len(snr_db), self.threshold)

    def int_thresholds(self, snr_db: np.ndarray) -> np.ndarray:
        if self.int_bands is not None:
            return self.int_bands(snr_db)
        return np.full(len(snr_db), np.nan if self.int_threshold is None else self.int_threshold)


def fit_decider(crossfit: pd.Series, val_units: pd.Series | None, val_snr: pd.Series | None, target: float,
                per_band: bool, width: float, k: int, pool: Pool | None = None) -> tuple[Decider, float]:
    """The :class:`Decider` from cross-fitted val scores (indexed by val window id), and the achieved val FPR of
    the per-window decision. ``val_snr`` (window id -> snr_est_db) is needed with ``per_band``; ``pool`` gives the
    cross-fitted scores of groups of val windows (else their mean cross-fitted score)."""
    values = crossfit.to_numpy(dtype=np.float64)
    threshold = upper_quantile(values, target)
    bands = None
    if per_band:
        bands = BandThresholds.fit(values, val_snr.reindex(crossfit.index).to_numpy(dtype=np.float64), target, width)
        achieved = float(np.mean(values > bands(val_snr.reindex(crossfit.index).to_numpy(dtype=np.float64))))
    else:
        achieved = float(np.mean(values > threshold))
    decider = Decider(threshold, bands, k)
    if k > 1:
        integrated = integrate(crossfit, val_units, k, pool)
        if integrated.scores.empty:
            raise UserError(f"--integrate {k}: no val frame holds {k} windows, so the integrated threshold cannot be "
                            "set (results_val.csv without a frame column counts each window as its own frame); "
                            "lower --integrate or prepare val with frames of more windows")
        decider.int_threshold = upper_quantile(integrated.scores.to_numpy(), target)
        if per_band:
            decider.int_bands = BandThresholds.fit(integrated.scores.to_numpy(),
                                                   integrated.mean_of(val_snr).to_numpy(dtype=np.float64), target,
                                                   width, what=f"{k}-window group")
        log.info("--integrate %d: integrated threshold %.6g from %d cross-fitted val groups of %d windows", k,
                 decider.int_threshold, len(integrated.scores), k)
    return decider, achieved
