"""Localising an anomaly in frequency: which part of the band a window's reconstruction gets wrong.

The ``lsd`` error averages, over frequency, the dB difference between the Welch PSDs of a window's
reconstruction and the window (:func:`src.ood.distances.spectral_difference`). Kept per bin and
averaged over the detector's start points t, it gives each window a spectral error profile d[k].
Against the val windows' profiles, per bin, it becomes a z-score::

    z[k] = (d[k] - val mean[k]) / max(val std[k], STD_FLOOR_DB)

A negative z marks power the window holds and the model does not rebuild (an interferer), a positive
one power the model expects and the window lacks (a notch, a missing carrier). The **band** is the peak
bin (largest |z|) and every contiguous bin around it whose |z| reaches the threshold ``--band_z`` and
half the peak's |z|: a full width at half maximum, in z, so the leakage of a strong narrowband
interferer into its neighbouring bins (Hann sidelobes, far above the val spread there) does not widen
its band. The spectrum wraps at +-1/2 cycles/sample, so a band may cross it. The peak below the
threshold: no band.

**Val statistics.** They need the val windows' per-bin errors, which reconstruct.py does not record
(results_val.csv keeps one lsd value per window and t). score.py therefore rebuilds the first
:data:`VAL_WINDOWS` val windows once, with the run's reconstruction settings and each window's own
noise (which depends on the seed and its index only, so these are the reconstructions results_val.csv
was made from), and stores their per-bin errors for every t in ``<run>/ood/val_spectra.npz``. The
file is keyed by the reconstruction settings and the val windows' lsd values, so a re-run of
reconstruct.py (another model or settings) makes it stale and it is rebuilt. Keeping every t lets
any ``--min_t/--max_t/--t_skip`` choose its own start points without rebuilding.

**Under carrier recovery** the model sees each window with its own blindly estimated offset removed,
so the profiles (val's and the window's) are in that recovered frame, where an in-family signal is
centred. A window's band is found there and then moved back by the offset removed from it
(:func:`in_recording_frequency`), which puts it at the recording's frequency whatever the estimate.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.datasets import SignalDataset
from src.errors import UserError
from src.io import atomic_path
from src.ood.distances import reconstruction_errors, spectral_difference
from src.ood.ood_folder import FLOAT_FORMAT, OodFolder

log = logging.getLogger("rfood")

VAL_WINDOWS = 256  # val windows whose per-bin errors calibrate the z-scores
STD_FLOOR_DB = 0.1  # a bin whose val errors barely vary would turn any tiny change into a huge z
BAND_Z = 3.0  # default |z| a bin must reach to belong to the band (score.py --band_z)


# --------------------------------------------------------------------------------------------------
# Per-window spectral profiles and their val statistics
# --------------------------------------------------------------------------------------------------

def profile(differences: np.ndarray, starts: list[int], ts: list[int]) -> np.ndarray:
    """Mean over the start points ``ts`` of per-bin differences [..., n_starts, bins] -> [..., bins]."""
    columns = [list(starts).index(t) for t in ts]
    return differences[..., columns, :].mean(axis=-2)


@dataclass
class SpectralBaseline:
    """Per-bin mean and spread of the val windows' spectral profiles; turns a window's profile into z."""

    mean: np.ndarray  # [bins] dB
    std: np.ndarray  # [bins] dB, floored at STD_FLOOR_DB
    n_val: int

    @classmethod
    def fit(cls, val_differences: np.ndarray, starts: list[int], ts: list[int]) -> SpectralBaseline:
        """From val per-bin differences [n_val, n_starts, bins] at the detector's start points ``ts``."""
        profiles = profile(val_differences, starts, ts)
        if len(profiles) < 2:
            raise UserError("localising bands needs at least 2 val windows; reconstruct more val windows")
        return cls(profiles.mean(axis=0), np.maximum(profiles.std(axis=0, ddof=1), STD_FLOOR_DB), len(profiles))

    def z(self, profiles: np.ndarray) -> np.ndarray:
        """z-scores [B, bins] of window profiles [B, bins]."""
        return (profiles - self.mean) / self.std


# --------------------------------------------------------------------------------------------------
# The band
# --------------------------------------------------------------------------------------------------

@dataclass
class Band:
    """The most anomalous band of one window, in cycles/sample (NaN when no bin reaches the threshold)."""

    center: float
    width: float
    z: float  # the signed z-score of the peak bin


NO_BAND = Band(np.nan, np.nan, np.nan)


def strongest_band(z: np.ndarray, threshold: float) -> Band:
    """The peak bin of |z| [bins] and its contiguous neighbours (wrapping around) whose |z| reaches both
    ``threshold`` and half the peak's |z|.

    Bins are in FFT order (bin k at k / n cycles/sample, the upper half negative); the centre is the
    middle of the run, wrapped into [-1/2, 1/2); the width is the run's bin count / n.
    """
    n = len(z)
    peak = int(np.argmax(np.abs(z)))
    if not abs(z[peak]) >= threshold:
        return Band(np.nan, np.nan, float(z[peak]))
    above = np.abs(z) >= max(threshold, abs(z[peak]) / 2)
    if above.all():
        return Band(0.0, 1.0, float(z[peak]))
    low = high = peak
    while above[(low - 1) % n]:
        low -= 1
    while above[(high + 1) % n]:
        high += 1
    center = ((low + high) / 2 / n + 0.5) % 1.0 - 0.5
    return Band(float(center), (high - low + 1) / n, float(z[peak]))


def in_recording_frequency(bands: list[Band], carrier_offsets: np.ndarray) -> list[Band]:
    """Bands found in carrier-recovered windows, moved back to the recording's frequencies: recovery removed an
    offset f0 from its window, so what sits at f in the recovered window is at f + f0 in the recording (wrapped
    into [-1/2, 1/2)). Zero offsets (no recovery) leave every band where it is."""
    return [band if offset == 0 else Band(float((band.center + offset + 0.5) % 1.0 - 0.5), band.width, band.z)
            for band, offset in zip(bands, carrier_offsets, strict=True)]


def window_bands(baseline: SpectralBaseline, differences: np.ndarray, starts: list[int], ts: list[int],
                 threshold: float) -> list[Band]:
    """The band of each window from its per-bin differences [n_starts, B, bins]."""
    profiles = profile(np.moveaxis(differences, 0, 1), starts, ts)
    return [strongest_band(z, threshold) for z in baseline.z(profiles)]


# --------------------------------------------------------------------------------------------------
# The val windows' per-bin errors, rebuilt once and cached
# --------------------------------------------------------------------------------------------------

def val_window_ids(val: pd.DataFrame, limit: int = VAL_WINDOWS) -> list[str]:
    """The first ``limit`` val window ids of results_val.csv, by window index."""
    ids = val["filename"].drop_duplicates()
    order = np.argsort(ids.str.rsplit(":", n=1).str[-1].astype(int).to_numpy(), kind="stable")
    return ids.iloc[order[:limit]].tolist()


def cache_key(settings: dict, val: pd.DataFrame, ids: list[str]) -> str:
    """Pins the cache to the reconstruction settings and to the val errors those windows got."""
    lsd = val[val["filename"].isin(ids)].sort_values(["filename", "t"])["lsd"].to_numpy()
    text = json.dumps({"settings": settings, "ids": ids, "lsd": [FLOAT_FORMAT % value for value in lsd]},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_val_file(path: Path, ids: list[str]) -> None:
    stems = {window_id.rsplit(":", 1)[0] for window_id in ids}
    if not path.is_file():
        raise UserError(f"the run's val file {path} is not found; pass --val_h5file=<the file reconstruct.py got as "
                        "--validation_h5file>, or --localise=0 to score without bands")
    if stems != {path.stem}:
        raise UserError(f"results_val.csv holds windows of {', '.join(sorted(stems))}, not of {path.name}; pass "
                        "--val_h5file=<the file reconstruct.py got as --validation_h5file>")


def rebuild_val_differences(reconstructor, path: Path, ids: list[str], batch_size: int, device: torch.device,
                            carrier_order: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin differences [n, n_starts, bins] and lsd [n, n_starts] of the val windows ``ids``, rebuilt (read with
    the run's carrier recovery, as reconstruct.py read them)."""
    indices = [int(window_id.rsplit(":", 1)[1]) for window_id in ids]
    dataset = SignalDataset(path, first_n=max(indices) + 1, cache=True, carrier_order=carrier_order)
    differences, lsd = [], []
    for first in range(0, len(indices), batch_size):
        batch = indices[first:first + batch_size]
        x0 = torch.stack([dataset[index]["signal"] for index in batch]).to(device)
        signals = reconstructor.reconstructions(x0, torch.tensor(batch))
        differences.append(spectral_difference(x0, signals).float().cpu().numpy().transpose(1, 0, 2))
        lsd.append(reconstruction_errors(x0, signals)["lsd"].float().cpu().numpy().T)
    return np.concatenate(differences), np.concatenate(lsd)


def check_rebuilt(val: pd.DataFrame, ids: list[str], starts: list[int], lsd: np.ndarray) -> None:
    """Warn when the rebuilt val windows do not give results_val.csv's lsd (another file, model or device)."""
    recorded = val.pivot_table(index="filename", columns="t", values="lsd").reindex(index=ids, columns=starts)
    gap = np.nanmax(np.abs(lsd - recorded.to_numpy()) / np.maximum(np.abs(recorded.to_numpy()), 1e-12))
    if gap > 1e-2:
        log.warning("the val windows rebuilt for localisation differ from results_val.csv (lsd up to %.1f%% apart): "
                    "is --val_h5file the file reconstruct.py used, and the model the one it ran?", 100 * gap)


def val_differences(folder: OodFolder, reconstructor, settings: dict, val: pd.DataFrame, val_path: Path,
                    batch_size: int, device: torch.device, carrier_order: int = 0) -> np.ndarray:
    """The val windows' per-bin differences [n, n_starts, bins], from the cache or rebuilt (and cached)."""
    if "lsd" not in val.columns:
        raise UserError(f"{folder.results('val')} has no lsd column, which localising bands checks against; re-run "
                        "reconstruct.py with --overwrite=1, or pass --localise=0")
    ids = val_window_ids(val)
    key = cache_key(settings, val, ids)
    cached = read_cache(folder.val_spectra_file, key)
    if cached is not None:
        return cached
    check_val_file(val_path, ids)
    log.info("rebuilding %d val windows of %s once for the per-bin val statistics (cached in %s)", len(ids),
             val_path, folder.val_spectra_file)
    differences, lsd = rebuild_val_differences(reconstructor, val_path, ids, batch_size, device, carrier_order)
    check_rebuilt(val, ids, list(reconstructor.starts), lsd)
    with atomic_path(folder.val_spectra_file) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, differences=differences, key=np.array(key))
    return differences


def read_cache(path: Path, key: str) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            return cached["differences"] if str(cached["key"]) == key else None
    except (OSError, ValueError, KeyError):
        return None  # unreadable: rebuilt
