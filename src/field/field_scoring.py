"""Scoring long raw recordings in bounded memory: score.py on SigMF, ``.npy`` and ``*_raw_data.h5`` inputs.

A recording is read chunk by chunk (:mod:`src.data.streaming`, ``--chunk_windows`` windows at a
time), its windows (``--hop`` samples apart) are regrouped into batches of ``--batch_size``, and each
batch is reconstructed, scored, localised and written out before the next is read. Memory holds one
chunk, one batch and the plot's bounded :class:`src.field.timeline.Timeline`, whatever the length.
Batches, and each window's noise (fixed by the seed and the window's index), do not depend on the
chunk size, so neither do the scores.

Rows, one per window, appended to a temporary file that is moved into place at the end (a crash
never leaves a partial CSV under the result's name):

- ``filename``: the window id ``<input stem>:<index>``; ``offset``: its first sample (frame
  arrays [frames, L] count samples as if the frames were laid end to end);
- ``time_s`` (seconds from the start; where the sample rate is known) and ``time`` (ISO 8601;
  where the recording also gives its start, SigMF's ``core:datetime``);
- ``score``, ``threshold``, ``ood`` (1 = flagged: score above threshold; with ``--pfa`` the threshold
  is that of the window's SNR band, :mod:`src.ood.decisions`); ``snr_est_db``, the window's blind
  SNR estimate (:func:`src.dsp.blind_snr_db`);
- with ``--integrate K``: ``score_int``, ``threshold_int``, ``ood_int``, the decision over the K
  consecutive windows that end at this one (empty on other rows; :class:`StreamIntegrator`);
- for flagged windows, the most anomalous band (:mod:`src.field.localisation`): ``band_center_hz``,
  ``band_width_hz`` (``--units hz``) or ``band_center``, ``band_width`` (cycles/sample), and
  ``band_z``, the signed z-score of its peak bin; empty where no bin stands out. Under the run's
  carrier recovery the band is found in the recovered window and moved back by the offset the
  recovery removed from that window, so it is at the recording's frequency either way.

Under torchrun, batch k is scored by process k mod world size and the main process writes all rows.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.data.prep import normalize_rms
from src.data.streaming import Recording
from src.distributed import Dist, gather_to_main
from src.dsp import PSD_SEGMENT, blind_snr_db, recover_carrier_with_offset, welch_psd
from src.errors import UserError
from src.field.localisation import NO_BAND, Band, SpectralBaseline, in_recording_frequency, window_bands
from src.field.timeline import Timeline, timeline_figure
from src.io import atomic_path
from src.ood.decisions import Decider, StreamIntegrator
from src.ood.detector import Detector
from src.ood.distances import reconstruction_errors, spectral_difference
from src.ood.ood_folder import FLOAT_FORMAT, as_written, results_frame
from src.progress import progress

log = logging.getLogger("rfood")
UNITS = ("auto", "hz", "cycles")
TIME_COLUMNS = ("time_s", "time")
SCORE_COLUMNS = ("score", "threshold", "ood")
SNR_EST_COLUMN = "snr_est_db"  # as in results files (src.ood.ood_folder)
INTEGRATED_COLUMNS = ("score_int", "threshold_int", "ood_int")  # --integrate K > 1
BAND_COLUMNS = {"hz": ("band_center_hz", "band_width_hz", "band_z"), "cycles": ("band_center", "band_width", "band_z")}


@dataclass
class FieldOptions:
    """How score.py cuts, normalises, localises and plots a raw recording (its flags)."""

    window: int
    hop: int
    chunk_windows: int
    batch_size: int
    normalize: str
    first_n: int | None
    units: str
    sample_rate: float | None
    band_z: float
    plot: bool
    carrier_order: int = 0  # the run's carrier recovery (0: none), applied after the normalisation
    integrate: int = 1  # --integrate: windows per decision (1: single windows only)


# --------------------------------------------------------------------------------------------------
# Timing and units of one recording
# --------------------------------------------------------------------------------------------------

@dataclass
class Clock:
    """Sample offsets as seconds and datetimes, where the recording (or --sample_rate) says."""

    sample_rate: float | None
    start_time: datetime | None

    def columns(self, offsets: np.ndarray) -> dict[str, object]:
        if self.sample_rate is None:
            return {}
        seconds = offsets / self.sample_rate
        if self.start_time is None:
            return {"time_s": seconds}
        return {"time_s": seconds, "time": [(self.start_time + timedelta(seconds=float(s))).isoformat()
                                            for s in seconds]}


def recording_clock(recording: Recording, sample_rate: float | None) -> Clock:
    """The recording's own sample rate, or ``--sample_rate`` where it records none (a clash is refused)."""
    recorded = recording.sample_rate
    if recorded is not None and sample_rate is not None and not np.isclose(recorded, sample_rate, rtol=1e-9):
        raise UserError(f"{recording.path} records a sample rate of {recorded:g} Hz but --sample_rate is "
                        f"{sample_rate:g}; drop --sample_rate or fix the recording's metadata")
    return Clock(recorded if recorded is not None else sample_rate, recording.start_time)


def frequency_unit(path: Path, units: str, clock: Clock) -> str:
    """``hz`` or ``cycles`` for the band columns: ``auto`` gives Hz where the sample rate is known."""
    if units == "hz" and clock.sample_rate is None:
        raise UserError(f"{path} records no sample rate (SigMF core:sample_rate), so --units=hz cannot give Hz; "
                        "pass --sample_rate=<Hz> or --units=cycles")
    if units == "auto":
        return "hz" if clock.sample_rate is not None else "cycles"
    return units


def output_columns(clock: Clock, unit: str | None, integrate: int = 1) -> list[str]:
    """The CSV columns of one recording (``unit`` None: no band columns; ``integrate`` > 1: the integrated ones)."""
    times = [] if clock.sample_rate is None else ["time_s"] if clock.start_time is None else list(TIME_COLUMNS)
    return ["filename", "offset", *times, *SCORE_COLUMNS, SNR_EST_COLUMN,
            *(INTEGRATED_COLUMNS if integrate > 1 else ()),
            *(BAND_COLUMNS[unit] if unit else ())]


def merged_columns(column_lists: list[list[str]]) -> list[str]:
    """Every column of several inputs in one canonical order (for --out holding them all)."""
    order = ["filename", "offset", *TIME_COLUMNS, *SCORE_COLUMNS, SNR_EST_COLUMN, *INTEGRATED_COLUMNS,
             *BAND_COLUMNS["hz"][:2], *BAND_COLUMNS["cycles"]]
    present = {column for columns in column_lists for column in columns}
    return [column for column in order if column in present]


# --------------------------------------------------------------------------------------------------
# Windows in batches
# --------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """Consecutive windows: their indices and first samples, raw samples, the scored I/Q [n, 2, T] and the carrier
    offset its recovery removed from each (cycles/sample; zeros without recovery)."""

    indices: np.ndarray
    offsets: np.ndarray
    raw: np.ndarray
    iq: np.ndarray
    carrier_offsets: np.ndarray


def as_iq(windows: np.ndarray) -> np.ndarray:
    """Complex windows [n, T] as float32 I/Q channels [n, 2, T]."""
    return np.stack([windows.real, windows.imag], axis=1).astype(np.float32)


def scored_iq(path: Path, offsets: np.ndarray, raw: np.ndarray, normalize: str, carrier_order: int = 0) -> np.ndarray:
    """The windows as the model sees them: I/Q, each scaled to unit power under --normalize rms (as prep does),
    then with the run's carrier recovery (as its training windows were)."""
    return scored_windows(path, offsets, raw, normalize, carrier_order)[0]


def scored_windows(path: Path, offsets: np.ndarray, raw: np.ndarray, normalize: str,
                   carrier_order: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scored_iq`, and the carrier offset (cycles/sample) the recovery removed from each window (zeros
    without recovery): what puts a band found in the recovered window back at the recording's frequency."""
    iq = as_iq(raw)
    if normalize == "rms":
        iq = rms_scaled(path, offsets, raw, iq)
    if not carrier_order:
        return iq, np.zeros(len(iq))
    windows, carrier_offsets = recover_carrier_with_offset(torch.from_numpy(iq), carrier_order)
    return windows.numpy(), carrier_offsets.numpy()


def rms_scaled(path: Path, offsets: np.ndarray, raw: np.ndarray, iq: np.ndarray) -> np.ndarray:
    silent = np.flatnonzero(~np.any(raw != 0, axis=1))
    if silent.size:
        raise UserError(f"{path}: the window at sample {offsets[silent[0]]} is all zeros, so --normalize rms cannot "
                        "scale it; use --normalize none or cut that part of the recording")
    return normalize_rms(path, iq, offsets)


def window_batches(recording: Recording, options: FieldOptions, n_windows: int) -> Iterator[Batch]:
    """The first ``n_windows`` windows in batches of ``options.batch_size``, read ``chunk_windows`` at a time."""
    chunks = recording.windows(options.window, options.hop, options.chunk_windows)
    offsets, raw, first = np.empty(0, np.int64), np.empty((0, options.window), np.complex64), 0
    for chunk_offsets, chunk_windows in chunks:
        offsets, raw = np.concatenate([offsets, chunk_offsets]), np.concatenate([raw, chunk_windows])
        while len(offsets) >= options.batch_size or (len(offsets) and first + len(offsets) >= n_windows):
            size = min(options.batch_size, len(offsets), n_windows - first)
            yield Batch(np.arange(first, first + size), offsets[:size], raw[:size],
                        *scored_windows(recording.path, offsets[:size], raw[:size], options.normalize,
                                        options.carrier_order))
            offsets, raw, first = offsets[size:], raw[size:], first + size
            if first >= n_windows:
                return


# --------------------------------------------------------------------------------------------------
# Scoring a batch
# --------------------------------------------------------------------------------------------------

@dataclass
class BatchResult:
    """One batch's scores and, where asked for, bands and raw PSDs (for the plot)."""

    indices: np.ndarray
    offsets: np.ndarray
    scores: np.ndarray
    bands: list[Band] | None
    psd: np.ndarray | None
    snr_est: np.ndarray | None = None  # each window's blind SNR estimate (dB)
    logs: np.ndarray | None = None  # each window's log errors as the detector reads them [n, features]


@dataclass
class Scorer:
    """A fitted detector and its reconstructor, turning batches of windows into scores and bands."""

    reconstructor: object
    detector: Detector
    threshold: float
    baseline: SpectralBaseline | None
    band_z: float
    device: torch.device
    with_psd: bool = False
    decider: Decider | None = None  # per-band and integrated thresholds (None: ``threshold`` for every window)
    grouped: Detector | None = None  # --integrate K: the K-window detector (Detector.for_groups; None: ``detector``)

    def __post_init__(self) -> None:
        self.grouped = self.detector if self.grouped is None else self.grouped

    def __call__(self, batch: Batch, stem: str) -> BatchResult:
        x0 = torch.from_numpy(batch.iq).to(self.device)
        indices = torch.from_numpy(batch.indices)
        ids = [f"{stem}:{index}" for index in batch.indices]
        differences = None
        if self.baseline is None:
            errors = self.reconstructor.errors(x0, indices)
        else:
            signals = self.reconstructor.reconstructions(x0, indices)
            errors = reconstruction_errors(x0, signals)
            differences = spectral_difference(x0, signals).float().cpu().numpy()
        snr_est = blind_snr_db(x0).cpu().numpy()  # each window's blind SNR: a column, and --snr_aware's input
        frame = results_frame(ids, "score", stem, self.reconstructor.starts,
                              {key: value.float().cpu().numpy() for key, value in errors.items()}, snr_est_db=snr_est)
        logs = self.detector.frame_logs(as_written(frame), f"input {stem}").reindex(ids)
        scores = self.detector.score_logs(logs).to_numpy()
        bands = None if differences is None else in_recording_frequency(window_bands(
            self.baseline, differences, list(self.reconstructor.starts), self.detector.ts, self.band_z),
            batch.carrier_offsets)
        psd = welch_psd(torch.from_numpy(as_iq(batch.raw))).numpy() if self.with_psd else None
        return BatchResult(batch.indices, batch.offsets, scores, bands, psd, snr_est, logs.to_numpy())


def scored_rounds(batches: Iterator[Batch], scorer: Scorer, stem: str, dist: Dist) -> Iterator[BatchResult]:
    """Each batch's result, in order, on the main process: batch k is scored by process k mod world size."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == dist.world_size:
            yield from score_group(group, scorer, stem, dist)
            group = []
    if group:
        yield from score_group(group, scorer, stem, dist)


def score_group(group: list[Batch], scorer: Scorer, stem: str, dist: Dist) -> list[BatchResult]:
    mine = scorer(group[dist.rank], stem) if dist.rank < len(group) else None
    gathered = gather_to_main(dist, mine)
    return [] if gathered is None else [result for result in gathered if result is not None]


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------

def result_rows(result: BatchResult, stem: str, threshold: float, clock: Clock, unit: str | None,
                decider: Decider | None = None, integrator: StreamIntegrator | None = None) -> pd.DataFrame:
    """The CSV rows of one batch; band columns only for flagged windows (empty elsewhere). ``decider`` sets each
    window's threshold (else ``threshold``); ``integrator`` adds the integrated decision
    (:data:`INTEGRATED_COLUMNS`)."""
    snr = result.snr_est if result.snr_est is not None else np.full(len(result.scores), np.nan)
    thresholds = decider.thresholds(snr) if decider is not None else np.full(len(result.scores), threshold)
    flagged = result.scores > thresholds
    table = {"filename": [f"{stem}:{index}" for index in result.indices], "offset": result.offsets,
             **clock.columns(result.offsets), "score": result.scores, "threshold": thresholds,
             "ood": flagged.astype(int), SNR_EST_COLUMN: snr}
    if integrator is not None:
        scores, snrs = integrator(result.indices, result.scores, snr, result.logs)
        done = np.isfinite(scores)
        limits = np.where(done, decider.int_thresholds(snrs), np.nan)
        table.update(zip(INTEGRATED_COLUMNS, (scores, limits, np.where(done, scores > limits, np.nan))))
    if unit is not None:
        scale = clock.sample_rate if unit == "hz" else 1.0
        bands = [band if flag else NO_BAND for band, flag in zip(result.bands or [NO_BAND] * len(flagged), flagged)]
        center, width, z = BAND_COLUMNS[unit]
        table.update({center: [band.center * scale for band in bands], width: [band.width * scale for band in bands],
                      z: [band.z for band in bands]})
    return pd.DataFrame(table)


@contextlib.contextmanager
def row_writer(path: Path, columns: list[str]) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A function appending tables (reindexed to ``columns``) to a temporary CSV, moved onto ``path`` on success."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            handle.write(",".join(columns) + "\n")
            yield lambda table: table.reindex(columns=columns).to_csv(handle, header=False, index=False,
                                                                       float_format=FLOAT_FORMAT)


# --------------------------------------------------------------------------------------------------
# One recording
# --------------------------------------------------------------------------------------------------

@dataclass
class StreamSummary:
    windows: int
    flagged: int
    seconds: float
    samples: int
    groups: int = 0  # --integrate: complete groups of K windows, and those flagged
    flagged_groups: int = 0

    def rates(self) -> str:
        seconds = max(self.seconds, 1e-9)
        return f"{self.windows / seconds:.1f} windows/s, {self.samples / seconds:.4g} samples/s"


def last_sample(recording: Recording, options: FieldOptions, n_windows: int) -> int:
    """The sample after the last scored window: the progress bar's total."""
    last = recording.window_offsets(options.window, options.hop, n_windows - 1, n_windows)
    return int(last[0]) + options.window


def score_recording(recording: Recording, scorer: Scorer, options: FieldOptions, n_windows: int, clock: Clock,
                    unit: str | None, write: Callable[[pd.DataFrame], None] | None, dist: Dist,
                    plot_path: Path | None) -> StreamSummary:
    """Stream one recording through ``scorer``; the main process writes its rows (and the plot)."""
    stem, flagged, done, groups, flagged_groups = recording.path.stem, 0, 0, 0, 0
    timeline = Timeline(n_bins=min(PSD_SEGMENT, options.window)) if plot_path is not None else None
    integrator = None
    if options.integrate > 1 and scorer.decider is not None:
        per_frame = recording.windows_per_frame(options.window, options.hop) if recording.frame_length else None
        integrator = StreamIntegrator(options.integrate, per_frame, scorer.grouped.score_mean)
    started = time.perf_counter()
    total = last_sample(recording, options, n_windows)
    with progress(None, f"score {recording.path.name}", total=total, unit="sample", unit_scale=True,
                  enabled=dist.is_main) as bar:
        for result in scored_rounds(window_batches(recording, options, n_windows), scorer, stem, dist):
            rows = result_rows(result, stem, scorer.threshold, clock, unit, scorer.decider, integrator)
            write(rows)
            flagged += int(rows["ood"].sum())
            if integrator is not None:
                groups += int(rows[INTEGRATED_COLUMNS[0]].notna().sum())
                flagged_groups += int((rows[INTEGRATED_COLUMNS[2]] == 1).sum())
            end = int(result.offsets[-1]) + options.window
            bar.update(end - done)
            done = end
            if timeline is not None:
                add_to_timeline(timeline, result, rows, options.window)
    summary = StreamSummary(n_windows, flagged, time.perf_counter() - started, total, groups, flagged_groups)
    if timeline is not None and dist.is_main:
        title = f"{recording.path.name}: {flagged} of {n_windows} windows flagged"
        with atomic_path(plot_path) as tmp:  # fixed margins: no tight_layout
            timeline_figure(timeline, scorer.threshold, clock.sample_rate, title).savefig(tmp, format="png", dpi=110)
        log.info("wrote %s", plot_path)
    return summary


def add_to_timeline(timeline: Timeline, result: BatchResult, rows: pd.DataFrame, window: int) -> None:
    bands = [band if flag else NO_BAND for band, flag in zip(result.bands or [NO_BAND] * len(rows), rows["ood"])]
    timeline.add(result.offsets, window, result.psd, result.scores, rows["ood"].to_numpy(bool),
                 np.array([band.center for band in bands]), np.array([band.width for band in bands]))
