"""What score.py's plot needs of a scored recording, gathered while streaming in bounded memory.

A :class:`Timeline` holds one column per window (its sample range, Welch PSD, score, flag and band)
until there are ``2 * max_columns``; then neighbouring columns merge in pairs and each later column
gathers twice as many windows. However long the recording, the plot holds at most
``2 * max_columns`` columns (of equal length but the last). A merged column averages its windows'
PSD power, keeps the highest score, is flagged when any of its windows is, and shows the band of
its highest-scoring flagged window.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from src.dsp import psd_frequencies
from src.figures import field_figure

MAX_COLUMNS = 1024
KEYS = ("start", "stop", "count", "psd", "score", "flagged", "center", "width")


def empty_columns(n_bins: int) -> dict[str, np.ndarray]:
    return {"start": np.empty(0, np.int64), "stop": np.empty(0, np.int64), "count": np.empty(0, np.int64),
            "psd": np.empty((0, n_bins)), "score": np.empty(0), "flagged": np.empty(0, bool),
            "center": np.empty(0), "width": np.empty(0)}


def concatenate(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([first[key], second[key]]) for key in KEYS}


def head(columns: dict[str, np.ndarray], n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The first ``n`` rows and the rest."""
    return {key: value[:n] for key, value in columns.items()}, {key: value[n:] for key, value in columns.items()}


def aggregate(columns: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Consecutive rows merged in groups of ``size`` (the last group may be smaller)."""
    n = len(columns["start"])
    firsts = np.arange(0, n, size)
    count = np.add.reduceat(columns["count"], firsts)
    ranked = np.where(columns["flagged"], columns["score"], -np.inf)
    group = np.repeat(np.arange(len(firsts)), np.diff(np.r_[firsts, n]))
    best = np.lexsort((-ranked, group))[firsts]  # each group's highest-scoring flagged row (if any)
    flagged = np.logical_or.reduceat(columns["flagged"], firsts)
    return {"start": np.minimum.reduceat(columns["start"], firsts),
            "stop": np.maximum.reduceat(columns["stop"], firsts), "count": count,
            "psd": np.add.reduceat(columns["psd"] * columns["count"][:, None], firsts, axis=0) / count[:, None],
            "score": np.maximum.reduceat(columns["score"], firsts), "flagged": flagged,
            "center": np.where(flagged, columns["center"][best], np.nan),
            "width": np.where(flagged, columns["width"][best], np.nan)}


class Timeline:
    """Bounded per-window history of a recording for the waterfall and the score trace."""

    def __init__(self, n_bins: int, max_columns: int = MAX_COLUMNS) -> None:
        self.max_columns, self.windows_per_column = max_columns, 1
        self.columns, self.pending = empty_columns(n_bins), empty_columns(n_bins)

    def add(self, offsets: np.ndarray, window: int, psd: np.ndarray, scores: np.ndarray, flagged: np.ndarray,
            centers: np.ndarray, widths: np.ndarray) -> None:
        """Windows starting at ``offsets`` with their PSD power [n, bins] (FFT order), scores, flags and bands."""
        rows = {"start": np.asarray(offsets, np.int64), "stop": np.asarray(offsets, np.int64) + window,
                "count": np.ones(len(offsets), np.int64), "psd": np.asarray(psd, np.float64),
                "score": np.asarray(scores, np.float64), "flagged": np.asarray(flagged, bool),
                "center": np.asarray(centers, np.float64), "width": np.asarray(widths, np.float64)}
        self.pending = concatenate(self.pending, rows)
        full = len(self.pending["start"]) // self.windows_per_column * self.windows_per_column
        if full:
            ready, self.pending = head(self.pending, full)
            self.columns = concatenate(self.columns, aggregate(ready, self.windows_per_column))
        while len(self.columns["start"]) >= 2 * self.max_columns:
            self.columns = aggregate(self.columns, 2)
            self.windows_per_column *= 2

    def finished(self) -> dict[str, np.ndarray]:
        """All columns, the windows still pending merged into a last (shorter) one."""
        if not len(self.pending["start"]):
            return self.columns
        return concatenate(self.columns, aggregate(self.pending, len(self.pending["start"])))


def timeline_figure(timeline: Timeline, threshold: float, sample_rate: float | None, title: str) -> Figure:
    """The field figure (:func:`src.figures.field_figure`) in seconds and Hz where the sample rate is known,
    else in samples and cycles/sample."""
    columns = timeline.finished()
    scale = sample_rate or 1.0
    edges = np.r_[columns["start"], columns["stop"][-1]] / scale
    n_bins = columns["psd"].shape[1]
    frequencies = np.fft.fftshift(psd_frequencies(n_bins).numpy()) * scale
    psd_db = 10 * np.log10(np.fft.fftshift(columns["psd"], axes=1) + 1e-12)
    bands = np.stack([columns["center"], columns["width"]], axis=1) * scale
    return field_figure(edges, frequencies, psd_db, columns["score"], threshold, columns["flagged"], bands,
                        sample_rate is not None, title)
