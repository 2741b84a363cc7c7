"""The scoring stage (score.py): flag out-of-distribution windows in new recordings with a trained run.

Each window is reconstructed with exactly the settings of the run's val reconstruction (its ood
folder's reconstruction.json) and scored by a detector fitted on its val results alone, as
ood_detection.py fits it. The threshold is the (1 - fpr) quantile of *cross-fitted* val scores:
each val signal is scored by a detector fitted without it, because a detector scores its own
fitting signals as more typical than new ones, so an in-sample quantile flags more than ``fpr`` of
new in-distribution windows.

Processed h5 inputs are scored as reconstruct.py reads them. Raw recordings (SigMF, ``.npy``,
``*_raw_data.h5``) are streamed in bounded memory, windows ``--hop`` apart, and each flagged window
gets the band that deviates most (:mod:`src.field.field_scoring`, :mod:`src.field.localisation`).
``--pfa`` sets the threshold per band of estimated SNR and ``--integrate K`` adds a decision over K
windows with its own cross-fitted threshold (:mod:`src.ood.decisions`); ``--annotate`` writes a
SigMF recording's flagged segments as a new ``.sigmf-meta`` (:mod:`src.field.annotations`).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from src.cli import setup_logging
from src.data.datasets import SignalDataset
from src.data.recordings import NPY_SUFFIX, SIGMF_META_SUFFIX, RecordingTooShort, is_raw_h5
from src.data.sources import DataFlags, options_for_run
from src.data.streaming import DEFAULT_CHUNK_WINDOWS, open_recording
from src.diffusion.engine import MODES
from src.distributed import Dist, on_main
from src.errors import UserError
from src.field.annotations import SegmentCollector, annotation_path, write_annotations
from src.field.field_scoring import (
    INTEGRATED_COLUMNS,
    Clock,
    FieldOptions,
    Scorer,
    StreamSummary,
    frequency_unit,
    merged_columns,
    output_columns,
    recording_clock,
    row_writer,
    score_recording,
)
from src.field.localisation import BAND_Z, SpectralBaseline, val_differences
from src.ood.decisions import SNR_BAND_DB, Decider, Pool, fit_decider, integrate
from src.ood.detector import CROSSFIT_FOLDS, Detector, ScoreOptions
from src.ood.ood_folder import SNR_EST_COLUMN, OodFolder, as_written, read_results, write_table
from src.ood.reconstructors import build_reconstructor, reconstruct_set, scoring_precision
from src.run import Run

log = logging.getLogger("rfood")
INPUT_KINDS = "--input takes processed h5, *_raw_data.h5, .sigmf-meta or .npy files"


@dataclass(frozen=True)
class ScoringJob:
    """score.py's options: the run, the inputs (processed h5, raw h5, SigMF or npy files) and where their scores
    go, the target rate, how raw recordings are windowed, localised and plotted, and how windows are
    reconstructed and scored (None in ``scoring``, ``precision``, ``carrier_recovery``: as the run)."""

    output_dir: str
    model_name: str
    input: list[str]
    fpr: float = 0.05
    pfa: float | None = None  # instead of fpr: a threshold per snr_band dB band of estimated SNR
    snr_band: float = SNR_BAND_DB
    integrate: int = 1  # also decide over this many consecutive windows
    annotate: bool = False  # SigMF inputs: write the flagged segments as annotations beside the CSV
    out: str | None = None  # one CSV for all inputs; None: <run>/ood/scores_<input stem>.csv each
    normalize: str = "rms"
    first_n: int | None = None  # only the first N windows of each input
    carrier_recovery: str | None = None
    hop: int | None = None  # None: the window length
    chunk_windows: int = DEFAULT_CHUNK_WINDOWS
    sample_rate: float | None = None  # where a recording records none
    units: str = "auto"
    localise: bool = True
    band_z: float = BAND_Z
    val_h5file: str | None = None  # for localisation; None: the run's config.json data.validation_h5file
    plot: bool = False
    precision: str | None = None
    scoring: ScoreOptions = field(default_factory=lambda: ScoreOptions(None, None))
    max_chains: int | None = None
    batch_size: int = 32
    num_workers: int = 0
    cache_data: bool = True


# --------------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------------

def val_threshold(val_scores: np.ndarray, fpr: float) -> tuple[float, float]:
    """The (1 - fpr) quantile of val scores and the share of val scores above it (the achieved FPR).

    With n val scores the achieved share lies within 1/n of ``fpr``. A window is flagged when its
    score is strictly above the threshold.
    """
    scores = np.asarray(val_scores, dtype=np.float64)
    if not 0.0 < fpr < 1.0:
        raise UserError(f"--fpr must lie strictly between 0 and 1, got {fpr}")
    if len(scores) == 0 or not np.isfinite(scores).all():
        raise UserError("the cross-fitted val scores are empty or not finite; check the run's results_val.csv")
    threshold = float(np.quantile(scores, 1.0 - fpr))
    return threshold, float(np.mean(scores > threshold))


def detector_threshold(detector: Detector, fpr: float) -> tuple[float, float, int]:
    """Threshold from the out-of-sample (cross-fitted) val scores; also the achieved val FPR and n_val."""
    val_scores = detector.crossfit_val_scores(folds=CROSSFIT_FOLDS, seed=0).to_numpy()
    threshold, achieved = val_threshold(val_scores, fpr)
    return threshold, achieved, len(val_scores)


def decide(detector: Detector, grouped: Detector, val: pd.DataFrame, job: ScoringJob) -> tuple[Decider, str, int]:
    """score.py's decisions from the cross-fitted val scores: the pooled threshold at --fpr (as
    :func:`detector_threshold`) or one per SNR band at --pfa, and with --integrate K the integrated one from
    ``grouped``, the K-window detector (:mod:`src.ood.decisions`). Also the summary's threshold text and the number
    of val windows."""
    per_band = job.pfa is not None
    target = job.pfa if per_band else job.fpr
    crossfit = detector.crossfit_val_scores(folds=CROSSFIT_FOLDS, seed=0)
    threshold, achieved = val_threshold(crossfit.to_numpy(), target)
    val_snr = None
    if per_band:
        if SNR_EST_COLUMN not in val.columns:
            raise UserError(f"--pfa sets thresholds per band of the val windows' SNR estimates, but the run's "
                            f"results_val.csv has no {SNR_EST_COLUMN} column (written before it existed); re-run "
                            "reconstruct.py --run_val=1 --overwrite=1, or use --fpr")
        val_snr = val.groupby("filename")[SNR_EST_COLUMN].first()
    k = job.integrate
    decider, band_achieved = fit_decider(crossfit, detector.val_units, val_snr, target, per_band, job.snr_band, k,
                                         partial(grouped.crossfit_val_scores, CROSSFIT_FOLDS, 0))
    tail = (f"{decider.bands.describe()}, val FPR {band_achieved:.4f}" if per_band else
            f"threshold {threshold:.6g}, target FPR {job.fpr:g}, val FPR {achieved:.4f}")
    if k > 1:
        tail += f"; over {k} windows: " + (decider.int_bands.describe() if decider.int_bands is not None else
                                           f"threshold {decider.int_threshold:.6g}")
    return decider, tail, len(crossfit)


# --------------------------------------------------------------------------------------------------
# The run's val reconstruction
# --------------------------------------------------------------------------------------------------

def val_settings(folder: OodFolder, config: dict) -> dict:
    """reconstruction.json, checked to hold what rebuilding the val reconstruction needs."""
    path = folder.settings_file
    settings = folder.load_settings(required=True)
    needed = ["mode", "seed", "start_points"]
    diffusion = config.get("kind") in ("ddpm", "ldm")
    if diffusion:
        needed += ["num_inference_steps", "inference_skip_factor"]
    missing = [key for key in needed if key not in settings]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; re-create it with reconstruct.py --overwrite=1")
    if diffusion and settings["mode"] not in MODES:
        raise UserError(f"{path} records mode {settings['mode']!r}, not a diffusion reconstruction mode "
                        f"({', '.join(MODES)}); re-create it with reconstruct.py --overwrite=1")
    return settings


def load_val(run: Run, folder: OodFolder, settings: dict) -> pd.DataFrame:
    path = folder.results("val")
    if not path.is_file():
        raise UserError(f"{path} not found; run reconstruct.py on the run with --run_val=1 first")
    val = read_results(path)
    if sorted(val["t"].unique().tolist()) != sorted(settings["start_points"]):
        raise UserError(f"{path} holds other start points than {folder.settings_file} records; "
                        "the val results are stale: re-run reconstruct.py with --overwrite=1")
    if run.best_checkpoint.is_file() and run.best_checkpoint.stat().st_mtime > path.stat().st_mtime:
        log.warning("%s is newer than %s: the val errors may come from an older model; re-run reconstruct.py "
                    "if the run was trained further", run.best_checkpoint, path)
    return val


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

@dataclass
class RawInput:
    """A raw recording to stream, checked on opening: how many windows it gives, its clock, its CSV columns."""

    path: Path
    n_windows: int
    clock: Clock
    unit: str | None  # of the band columns (None: no localisation)
    columns: list[str]


def inspect_raw(path: Path, options: FieldOptions, localise: bool) -> RawInput:
    """Open ``path`` once to check it against the flags (too short, units) before any reconstruction."""
    with open_recording(path, any_h5_name=True) as recording:
        try:
            n_windows = recording.n_windows(options.window, options.hop)
        except RecordingTooShort as err:
            frames = recording.frame_length is not None and recording.frame_length < options.window
            what = f"holds frames of {recording.frame_length} samples, shorter" if frames else "is shorter"
            raise UserError(f"{path} {what} than one window of the run's {options.window} samples; use a longer "
                            "recording") from err
        clock = recording_clock(recording, options.sample_rate)
    unit = frequency_unit(path, options.units, clock) if localise else None
    n_windows = n_windows if options.first_n is None else min(n_windows, options.first_n)
    return RawInput(path, n_windows, clock, unit, output_columns(clock, unit, options.integrate))


def read_input(path: Path, signal_length: int, job: ScoringJob, options: FieldOptions, localise: bool):
    """One --input: a processed h5 as a :class:`SignalDataset`, or a raw recording as a :class:`RawInput`."""
    if path.name.endswith(".sigmf-data"):
        raise UserError(f"{path}: pass the recording's .sigmf-meta file, not its .sigmf-data")
    if not path.is_file():
        raise UserError(f"input not found: {path}")
    if job.annotate and not path.name.endswith(SIGMF_META_SUFFIX):
        raise UserError(f"--annotate=1 writes SigMF annotations of SigMF recordings, but {path} is not a "
                        f"{SIGMF_META_SUFFIX} file; drop --annotate or score it separately")
    if path.name.endswith((SIGMF_META_SUFFIX, NPY_SUFFIX)) or is_raw_h5(path, INPUT_KINDS):
        return inspect_raw(path, options, localise)
    if job.hop is not None:
        raise UserError(f"--hop applies to raw recordings, but {path} is a processed h5 of fixed windows; "
                        "drop --hop or pass the raw recording")
    dataset = SignalDataset(path, job.first_n, job.cache_data, options.carrier_order)
    if dataset.signal_length != signal_length:
        raise UserError(f"{path} holds windows of {dataset.signal_length} samples but the run was trained on "
                        f"{signal_length}; prepare it with --trim_length={signal_length} or pass the raw "
                        "recording")
    return dataset


def check_annotation_targets(job: ScoringJob, paths: list[Path], folder: OodFolder) -> None:
    """--annotate writes ``<csv stem>.sigmf-meta`` beside the CSV: refuse a name that is one of the inputs."""
    if not job.annotate:
        return
    several = job.out is not None and len(paths) > 1
    for path in paths:
        target = annotation_path(Path(job.out) if job.out else folder.scores_file(path.stem), path, several)
        if target.resolve() == path.resolve():
            raise UserError(f"--annotate would write its annotations onto the input {path}; give --out another name "
                            "or folder")


def check_stems(paths: list[Path]) -> None:
    stems = [path.stem for path in paths]
    clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashes:
        raise UserError(f"several inputs are named {', '.join(clashes)}; their window ids and score files would "
                        "collide: rename them or score them one at a time")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------

PROCESSED_COLUMNS = ["filename", "score", "threshold", "ood", SNR_EST_COLUMN]


def processed_columns(k: int) -> list[str]:
    return PROCESSED_COLUMNS + (list(INTEGRATED_COLUMNS) if k > 1 else [])


def score_table(scores: pd.Series, ids: list[str], decider: Decider, snr_est: pd.Series | None = None,
                units: list[str] | None = None, pool: Pool | None = None) -> pd.DataFrame:
    """One row per window; with ``decider.k`` > 1 each group of K windows of a frame (``units``) also gets its
    integrated decision (``pool``: the group's score, as :func:`src.ood.decisions.integrate`), on the row of its
    last window."""
    values = scores.reindex(ids).to_numpy()
    snr = np.full(len(ids), np.nan) if snr_est is None else snr_est.reindex(ids).to_numpy(dtype=np.float64)
    thresholds = decider.thresholds(snr)
    table = pd.DataFrame({"filename": ids, "score": values, "threshold": thresholds,
                          "ood": (values > thresholds).astype(int), SNR_EST_COLUMN: snr})
    if decider.k > 1:
        groups = integrate(pd.Series(values, index=ids), None if units is None else pd.Series(units, index=ids),
                           decider.k, pool)
        if groups.scores.empty:
            log.warning("no frame of the input holds %d windows (a processed file without frame_index counts each "
                        "window as its own frame): its integrated columns stay empty", decider.k)
        at_last = groups.last.reindex(groups.scores.index).to_numpy()
        group_snr = groups.mean_of(pd.Series(snr, index=ids)).to_numpy(dtype=np.float64)
        limits = decider.int_thresholds(group_snr)
        integrated = pd.DataFrame({INTEGRATED_COLUMNS[0]: groups.scores.to_numpy(), INTEGRATED_COLUMNS[1]: limits,
                                   INTEGRATED_COLUMNS[2]: (groups.scores.to_numpy() > limits).astype(float)},
                                  index=at_last)
        table = table.join(integrated.reindex(ids).reset_index(drop=True))
    return table


def write_scores(table: pd.DataFrame, path: Path) -> None:
    write_table(table, path, index=False)


def field_options(job: ScoringJob, signal_length: int, carrier_order: int) -> FieldOptions:
    """How score.py reads raw recordings; windows are the run's signal length, --hop apart, with the run's
    carrier recovery."""
    return FieldOptions(window=signal_length, hop=job.hop or signal_length, chunk_windows=job.chunk_windows,
                        batch_size=job.batch_size, normalize=job.normalize, first_n=job.first_n,
                        units=job.units, sample_rate=job.sample_rate, band_z=job.band_z, plot=job.plot,
                        carrier_order=carrier_order, integrate=job.integrate)


def spectral_baseline(job: ScoringJob, config: dict, folder: OodFolder, settings: dict, val: pd.DataFrame,
                      reconstructor, detector: Detector, dist: Dist, carrier_order: int = 0) -> SpectralBaseline:
    """Per-bin val statistics for localising bands (:mod:`src.field.localisation`), rebuilt once and cached."""
    val_path = job.val_h5file or config.get("data", {}).get("validation_h5file")
    if val_path is None:
        raise UserError(f"{folder.path.parent / 'config.json'} names no validation file; pass --val_h5file=<the file "
                        "reconstruct.py got as --validation_h5file>, or --localise=0")
    differences = on_main(dist, val_differences, folder, reconstructor, settings, val, Path(val_path),
                          job.batch_size, dist.device, carrier_order)
    return SpectralBaseline.fit(differences, list(reconstructor.starts), detector.ts)


def plot_path(target: Path, path: Path, several: bool) -> Path:
    """The plot beside the CSV: ``<csv stem>.png``, or ``<csv stem>_<input stem>.png`` when --out holds several
    inputs."""
    return target.with_name(f"{target.stem}_{path.stem}.png" if several else f"{target.stem}.png")


def collecting(write, collector: SegmentCollector | None):
    """``write``, also handing each batch's rows to ``collector`` (--annotate)."""
    if write is None or collector is None:
        return write

    def both(rows: pd.DataFrame) -> None:
        write(rows)
        collector.add(rows)
    return both


def stream_input(item: RawInput, scorer: Scorer, options: FieldOptions, target: Path, shared_write, dist: Dist,
                 several: bool, annotate: bool = False) -> StreamSummary:
    """Score one raw recording into ``target`` (or the shared --out writer, which holds ``several`` inputs); with
    ``annotate``, write its flagged segments as a new .sigmf-meta beside ``target``."""
    plot = plot_path(target, item.path, several) if options.plot else None
    collector = SegmentCollector(options.window, item.unit, item.clock.sample_rate) if annotate else None
    with open_recording(item.path, any_h5_name=True) as recording:
        if shared_write is not None or not dist.is_main:
            done = score_recording(recording, scorer, options, item.n_windows, item.clock, item.unit,
                                   collecting(shared_write, collector), dist, plot)
        else:
            with row_writer(target, item.columns) as write:
                done = score_recording(recording, scorer, options, item.n_windows, item.clock, item.unit,
                                       collecting(write, collector), dist, plot)
    if collector is not None and dist.is_main:
        path = write_annotations(item.path, annotation_path(target, item.path, several), collector.segments,
                                 item.clock.sample_rate)
        log.info("wrote %s: %d flagged segment(s) as SigMF annotations", path, len(collector.segments))
    return done


def score_processed(dataset: SignalDataset, scorer: Scorer, job: ScoringJob, target: Path, shared_write,
                    dist: Dist):
    """Score a processed h5 as reconstruct.py reads it (one row per window: filename, score, threshold, ood)."""
    frame = reconstruct_set(scorer.reconstructor, dataset, "score", job.batch_size, dist, job.num_workers)
    if not dist.is_main:
        return None
    snr = frame.groupby("filename")[SNR_EST_COLUMN].first() if SNR_EST_COLUMN in frame.columns else None
    detector = scorer.detector
    logs = detector.frame_logs(as_written(frame), f"input {dataset.path.name}")
    table = score_table(detector.score_logs(logs), dataset.ids, scorer.decider, snr, dataset.units,
                        partial(scorer.grouped.pooled, logs))
    if shared_write is not None:
        shared_write(table)
    else:
        write_scores(table, target)
    return table


def score_all(job: ScoringJob, inputs: list, scorer: Scorer, options: FieldOptions, folder: OodFolder, dist: Dist,
              tail: str) -> list[str]:
    """Score every input (rows to --out or to scores_<stem>.csv each); the summary line of each."""
    shared = Path(job.out) if job.out else None
    several = shared is not None and len(inputs) > 1
    k = job.integrate
    columns = merged_columns([item.columns if isinstance(item, RawInput) else processed_columns(k) for item in inputs])
    summaries = []
    with (row_writer(shared, columns) if shared and dist.is_main else contextlib.nullcontext()) as shared_write:
        for item in inputs:
            target = shared or folder.scores_file(item.path.stem)
            if isinstance(item, RawInput):
                done = stream_input(item, scorer, options, target, shared_write, dist, several, bool(job.annotate))
                groups = f"; {done.flagged_groups} of {done.groups} groups of {k} flagged" if k > 1 else ""
                summaries.append(f"{item.path.name}: {done.windows} windows of {options.window} samples every "
                                 f"{options.hop}, {done.flagged} flagged "
                                 f"({done.flagged / done.windows:.1%}){groups} at "
                                 f"{done.rates()}; {tail} -> {target}")
                continue
            table = score_processed(item, scorer, job, target, shared_write, dist)
            if table is not None:
                flagged = int(table["ood"].sum())
                groups = (f"; {int((table[INTEGRATED_COLUMNS[2]] == 1).sum())} of "
                          f"{int(table[INTEGRATED_COLUMNS[0]].notna().sum())} groups of {k} flagged" if k > 1 else "")
                summaries.append(f"{item.path.name}: {len(table)} windows, {flagged} flagged "
                                 f"({flagged / len(table):.1%}){groups}; {tail} -> {target}")
    return summaries


def score_inputs(job: ScoringJob, dist: Dist) -> None:
    """The whole of score.py, under torchrun or not."""
    setup_logging(main_process=dist.is_main)
    run = Run(job.output_dir, job.model_name)
    folder = OodFolder(run.ood_dir)
    config = run.load_config()
    settings = val_settings(folder, config)
    val = load_val(run, folder, settings)
    detector = job.scoring.for_run(settings).fit(val)
    grouped = detector.for_groups(job.integrate)
    decider, tail, n_val = decide(detector, grouped, val, job)
    threshold = decider.threshold
    signal_length = int(config["data"]["signal_length"])
    paths = [Path(path) for path in job.input]
    check_stems(paths)
    if job.out is not None and Path(job.out).is_dir():
        raise UserError(f"--out {job.out} is a folder; give the path of the CSV file to write")
    data = options_for_run(config.get("data", {}), DataFlags(carrier_recovery=job.carrier_recovery))
    options = field_options(job, signal_length, data.carrier_order)
    localise = bool(job.localise) and config.get("kind") != "features"
    inputs = [read_input(path, signal_length, job, options, localise) for path in paths]
    check_annotation_targets(job, paths, folder)
    if options.integrate > 1 and options.hop != signal_length and any(isinstance(item, RawInput) for item in inputs):
        log.warning("--integrate %d with --hop %d: the integrated threshold is set on adjacent val windows; "
                    "overlapping or skipping windows changes how much a group holds, so its false-alarm rate "
                    "may differ",
                    options.integrate, options.hop)

    reconstructor = build_reconstructor(run, config, settings.get("num_inference_steps", 1),
                                        settings.get("inference_skip_factor", 1), settings["seed"], dist.device,
                                        settings["mode"], job.max_chains,
                                        plms_history=settings.get("plms_history", "reset"),
                                        precision=on_main(dist, scoring_precision, job.precision, settings,
                                                          dist.device))
    if list(reconstructor.starts) != list(settings["start_points"]):
        raise UserError(f"rebuilding the val reconstruction of {run.path} gives start points "
                        f"{reconstructor.starts}, not those in reconstruction.json; re-run reconstruct.py")
    log.info("%s reconstruction (%d start points, seed %d) on %s; score %s on %s at t = %s; threshold %.6g from "
             "%d cross-fitted val scores", settings["mode"], len(reconstructor.starts), settings["seed"], dist.device,
             detector.score, ",".join(detector.metrics), detector.ts, threshold, n_val)
    streaming = any(isinstance(item, RawInput) for item in inputs)
    baseline = (spectral_baseline(job, config, folder, settings, val, reconstructor, detector, dist,
                                  data.carrier_order)
                if localise and streaming else None)
    scorer = Scorer(reconstructor, detector, threshold, baseline, job.band_z, dist.device, with_psd=job.plot,
                    decider=decider, grouped=grouped)
    summaries = score_all(job, inputs, scorer, options, folder, dist, tail)
    if not dist.is_main:
        return
    print(f"{run.name}: score {detector.score} on {','.join(detector.metrics)}, {len(detector.ts)} start points "
          f"(t = {detector.ts[0]}..{detector.ts[-1]}), threshold from {n_val} cross-fitted val scores")
    print("\n".join(f"  {line}" for line in summaries))
