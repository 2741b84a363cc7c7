"""SNR-aware scoring (``--snr_aware=1``): each window's log errors moved to val's mean SNR before it is scored.

A window's reconstruction errors move with its SNR: at small t the model removes the window's own
noise, so its log error falls about linearly with the SNR in dB. Fitted on val windows of many SNRs,
a score's statistics (mean, covariance) mix every SNR: a noisy in-family window is compared with
in-family windows of all SNRs, and the spread of the SNR dominates the covariance, so an out-family
window that differs from in-family windows *of its own SNR* along that direction goes unseen.

Here each log error l_j (one per metric and start point) is regressed on the window's blind SNR
estimate s (``snr_est_db``, :func:`src.dsp.blind_snr_db`) by least squares over the val windows,
l_j ~ a_j + b_j s, and every window's log errors are moved along these lines to val's mean SNR m:

    l'_j = l_j - b_j (clip(s, s_min, s_max) - m)

where [s_min, s_max] is the range of val's SNRs (the lines are not extrapolated) and a window without
an estimate is not moved. The score is then fitted on the moved val errors and applied to the moved
errors of any set: a window is compared with val windows of its own SNR, as far as a line says how
the errors move with it. For the log-error scores (``mahalanobis``, ``bands``) this is the score of
the regression's residuals (moved to m, which changes no distance); ``zmean``, ``zabs`` and
``pooled`` read the moved errors exp(l'): each error scaled by the factor by which val's errors
differ between the window's SNR and the mean. One line per feature (two numbers) rather than a
score fitted per SNR band: a band of 5 dB holds a quarter of val, too few windows for the 40
dimensions of ``bands``. Fitted on val alone, and refitted without the held-out frames when val
scores are cross-fitted.

The SNR estimate comes from the results' ``snr_est_db`` column (reconstruct.py writes it). Results
written before it existed lack it: then it is computed from the set's h5 windows, as reconstruct.py
computes it, where that file is known and checked: ``<stem>.h5`` (the stem of the window ids) in the
folder of the run's validation file (config.json), holding the ids' windows with the results' frame
ids and SNRs. Otherwise, with ``--snr_aware=1`` given, the detector refuses, naming the file and the
remedy; under the default, val without estimates gives a plain detector, and a set without them beside
val with them (results of two reconstruct.py versions) is scored unmoved, with a warning.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.datasets import SignalDataset
from src.dsp import blind_snr_db
from src.errors import UserError
from src.ood.ood_folder import SNR_COLUMN, SNR_EST_COLUMN, SOURCE_ATTR, UNIT_COLUMN
from src.ood.score_functions import log_errors

log = logging.getLogger("rfood")
SNR_MATCH_DB = 1e-3  # the results' snr_db and the h5 file's must agree this closely for the file to be the set's


@dataclass
class SnrAdjust:
    """Lines of each log error against the SNR, fitted on val: ``slopes`` [n_features] (per dB), val's mean SNR and
    range, and the val SNRs they were fitted on (aligned with the val features, for cross-fitting)."""

    slopes: np.ndarray
    mean_snr: float
    low: float
    high: float
    val_snr: np.ndarray

    @classmethod
    def fit(cls, errors: np.ndarray, snr: np.ndarray) -> SnrAdjust:
        """Least-squares slopes of log(errors [n, f]) on ``snr`` [n] (dB) over the windows with a finite SNR."""
        snr = np.asarray(snr, dtype=np.float64)
        known = np.isfinite(snr)
        if known.sum() < 2:
            raise UserError(f"--snr_aware=1 needs the SNR estimate of at least 2 val windows, got {int(known.sum())}; "
                            "drop --snr_aware")
        logs = log_errors(errors)[known]
        centred = snr[known] - snr[known].mean()
        spread = float(centred @ centred)
        slopes = (centred @ (logs - logs.mean(axis=0)) / spread if spread > 0 else np.zeros(logs.shape[1]))
        return cls(slopes, float(snr[known].mean()), float(snr[known].min()), float(snr[known].max()), snr)

    def shift(self, snr: np.ndarray | None, n: int) -> np.ndarray:
        """Each of ``n`` windows' clipped SNR minus val's mean (0 where the SNR is unknown; None: all unknown)."""
        snr = np.full(n, np.nan) if snr is None else np.asarray(snr, dtype=np.float64)
        return np.where(np.isfinite(snr), np.clip(snr, self.low, self.high) - self.mean_snr, 0.0)

    def log_errors(self, errors: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """The moved log errors l - b (s - m), [n, f]."""
        return log_errors(errors) - self.shift(snr, len(errors))[:, None] * self.slopes[None, :]

    def __call__(self, errors: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """The moved errors exp(l'), which every score reads as it reads errors."""
        return np.exp(self.log_errors(errors, snr))

    def split(self, errors: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Val ``errors`` of the ``train`` rows and of the others, moved by lines refitted on the ``train`` rows alone
        (cross-fitting: a held-out fold's frames fit nothing it is scored with)."""
        fitted = SnrAdjust.fit(errors[train], self.val_snr[train])
        return fitted(errors[train], self.val_snr[train]), fitted(errors[~train], self.val_snr[~train])

    def describe(self) -> str:
        return (f"SNR-aware: log errors moved to val's mean SNR {self.mean_snr:.1f} dB along lines fitted on val "
                f"(SNR estimates {self.low:.1f}..{self.high:.1f} dB)")


def window_snrs(frame: pd.DataFrame, where: str) -> pd.Series:
    """Each window's blind SNR estimate in dB (filename -> dB) of a results frame: its ``snr_est_db`` column, or for
    results written before it existed, computed from the set's h5 windows (:func:`estimates_from_h5`)."""
    if SNR_EST_COLUMN in frame.columns:
        return frame.groupby("filename", sort=False)[SNR_EST_COLUMN].first()
    source = frame.attrs.get(SOURCE_ATTR)
    if source is None:
        raise UserError(f"--snr_aware=1 needs each window's blind SNR estimate, but the results for {where} have no "
                        f"{SNR_EST_COLUMN} column; re-run reconstruct.py with --overwrite=1 (it records it), or drop "
                        "--snr_aware")
    return estimates_from_h5(Path(source), frame)


def estimates_from_h5(results: Path, frame: pd.DataFrame) -> pd.Series:
    """``snr_est_db`` of every window of a results file that lacks the column, from its h5 windows (see the module
    docstring for how the file is found and checked); a UserError naming the file where it is not found."""
    run_dir = results.parent.parent
    try:
        data = json.loads((run_dir / "config.json").read_text()).get("data", {})
    except (OSError, ValueError):
        data = {}
    if data.get("spatial_dims", 1) != 1:
        raise UserError(f"{results} holds errors of images, which have no SNR estimate; drop --snr_aware")
    folder = Path(data["validation_h5file"]).parent if data.get("validation_h5file") else None
    ids = frame["filename"].drop_duplicates()
    parts = ids.str.rsplit(":", n=1)
    stems, indices = parts.str[0], pd.to_numeric(parts.str[-1], errors="coerce")
    estimates = []
    for stem in stems.unique():
        mine = (stems == stem).to_numpy()
        path = None if folder is None else folder / f"{stem}.h5"
        problem = windows_problem(path, frame, ids[mine], indices[mine])
        if problem:
            raise UserError(f"{results} has no {SNR_EST_COLUMN} column (written before reconstruct.py recorded it) "
                            f"and {problem}: re-run reconstruct.py on the run with --overwrite=1 to record it, or drop "
                            "--snr_aware")
        dataset = SignalDataset(path, int(indices[mine].max()) + 1, True, int(data.get("carrier_order", 0)))
        signals = torch.stack([dataset[int(index)]["signal"] for index in indices[mine]])
        estimates.append(pd.Series(blind_snr_db(signals).numpy(), index=ids[mine].to_numpy()))
        log.info("%s: no %s column; estimated from the windows of %s, as reconstruct.py does", results.name,
                 SNR_EST_COLUMN, path)
    return pd.concat(estimates)


def windows_problem(path: Path | None, frame: pd.DataFrame, ids: pd.Series, indices: pd.Series) -> str | None:
    """Why ``path`` is not known to hold the windows ``ids`` of the results ``frame`` (None: it is)."""
    if path is None:
        return "the run's config.json names no validation file beside which its windows' h5 file would lie"
    if not path.is_file():
        return f"its windows' file {path} is not found (sought beside the run's validation file)"
    if indices.isna().any():
        return f"its window ids are not <file stem>:<index>, so their windows in {path} are unknown"
    try:
        dataset = SignalDataset(path, None, False)
    except UserError as err:
        return f"its windows' file {path} cannot be read ({err})"
    last = int(indices.max())
    if last >= len(dataset):
        return f"{path} holds {len(dataset)} windows, fewer than its ids need ({last + 1}): another file"
    positions = indices.astype(int).to_numpy()
    if UNIT_COLUMN in frame.columns:
        recorded = frame.groupby("filename", sort=False)[UNIT_COLUMN].first().reindex(ids).astype(str).to_numpy()
        if (recorded != np.asarray(dataset.units, dtype=object)[positions].astype(str)).any():
            return f"the frames of {path} differ from those the results record: another file"
    if SNR_COLUMN in frame.columns and dataset.snr_db is not None:
        recorded = frame.groupby("filename", sort=False)[SNR_COLUMN].first().reindex(ids).to_numpy(dtype=np.float64)
        if not np.allclose(recorded, np.asarray(dataset.snr_db, dtype=np.float64)[positions], atol=SNR_MATCH_DB,
                           equal_nan=True):
            return f"the SNRs of {path} differ from those the results record: another file"
    return None
