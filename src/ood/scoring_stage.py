"""The scoring stage (score.py): flag out-of-distribution windows in new recordings with a trained run.

Each window is reconstructed with exactly the settings of the run's val reconstruction (its ood
folder's reconstruction.json) and scored by a detector fitted on its val results alone, as
ood_detection.py fits it. The threshold is the (1 - fpr) quantile of *cross-fitted* val scores:
each val signal is scored by a detector fitted without it, because a detector scores its own
fitting signals as more typical than new ones, so an in-sample quantile flags more than ``fpr`` of
new in-distribution windows.
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from src.cli import setup_logging
from src.data.datasets import SignalDataset, display_name
from src.data.prep import cut_windows, normalize_rms
from src.data.recordings import NPY_SUFFIX, SIGMF_META_SUFFIX, RecordingTooShort, read_recording
from src.diffusion.engine import MODES
from src.distributed import Dist
from src.errors import UserError
from src.ood.detector import Detector, ScoreOptions
from src.ood.ood_folder import OodFolder, as_written, read_results, write_table
from src.ood.reconstructors import build_reconstructor, reconstruct_set
from src.run import Run

log = logging.getLogger("rfood")
CROSSFIT_FOLDS = 5


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


# --------------------------------------------------------------------------------------------------
# The run's val reconstruction
# --------------------------------------------------------------------------------------------------

def val_settings(folder: OodFolder, config: dict) -> dict:
    """reconstruction.json, checked to hold what rebuilding the val reconstruction needs."""
    path = folder.settings_file
    settings = folder.load_settings(required=True)
    needed = ["mode", "seed", "start_points"]
    if config.get("kind") != "autoencoder":
        needed += ["num_inference_steps", "inference_skip_factor"]
    missing = [key for key in needed if key not in settings]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; re-create it with reconstruct.py --overwrite=1")
    if config.get("kind") != "autoencoder" and settings["mode"] not in MODES:
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

class WindowSet(Dataset):
    """Windows [N, 2, T] held in memory, with the interface of :class:`SignalDataset` that
    :func:`reconstruct_set` uses (path, name, ids, items {"signal", "index"})."""

    def __init__(self, path: Path, windows: np.ndarray) -> None:
        self.path, self.name = path, display_name(path)
        self.windows = np.ascontiguousarray(windows, dtype=np.float32)
        self.signal_length = self.windows.shape[-1]
        self.ids = [f"{path.stem}:{index}" for index in range(len(self.windows))]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        return {"signal": torch.from_numpy(self.windows[index]), "index": index}


def is_raw_h5(path: Path) -> bool:
    """An h5 whose ``dataset`` is complex (a raw recording) rather than float [N, 2, T] (processed)."""
    try:
        with h5py.File(path, "r") as handle:
            data = handle.get("dataset")
            return isinstance(data, h5py.Dataset) and np.issubdtype(data.dtype, np.complexfloating)
    except OSError as err:
        raise UserError(f"cannot read {path} as HDF5 ({err}); --input takes processed h5, *_raw_data.h5, "
                        ".sigmf-meta or .npy files") from err


def read_input(path: Path, signal_length: int, normalize: str, first_n: int | None, cache: bool):
    """One --input as a dataset of windows [N, 2, signal_length] for :func:`reconstruct_set`."""
    if path.name.endswith(".sigmf-data"):
        raise UserError(f"{path}: pass the recording's .sigmf-meta file, not its .sigmf-data")
    if not path.is_file():
        raise UserError(f"input not found: {path}")
    raw = path.name.endswith((SIGMF_META_SUFFIX, NPY_SUFFIX)) or is_raw_h5(path)
    if not raw:
        dataset = SignalDataset(path, first_n, cache)
        if dataset.signal_length != signal_length:
            raise UserError(f"{path} holds windows of {dataset.signal_length} samples but the run was trained on "
                            f"{signal_length}; prepare it with --trim_length={signal_length} or pass the raw "
                            "recording")
        return dataset
    try:
        frames, _, _ = read_recording(path, signal_length)  # a stream is cut straight into windows
    except RecordingTooShort as err:
        raise UserError(f"{path} is shorter than one window of the run's {signal_length} samples; "
                        "use a longer recording") from err
    if frames.shape[1] < signal_length:
        raise UserError(f"{path} holds frames of {frames.shape[1]} samples, shorter than one window of the run's "
                        f"{signal_length} samples; use longer frames")
    windows, frame_index = cut_windows(path, frames, signal_length)
    if first_n is not None:
        windows, frame_index = windows[:first_n], frame_index[:first_n]
    if normalize == "rms":
        windows = normalize_rms(path, windows, frame_index)
    log.info("%s: %d frames of %d samples -> %d windows of %d%s", path, len(frames), frames.shape[1], len(windows),
             signal_length, " (rms-normalised)" if normalize == "rms" else "")
    return WindowSet(path, windows)


def check_stems(paths: list[Path]) -> None:
    stems = [path.stem for path in paths]
    clashes = sorted({stem for stem in stems if stems.count(stem) > 1})
    if clashes:
        raise UserError(f"several inputs are named {', '.join(clashes)}; their window ids and score files would "
                        "collide: rename them or score them one at a time")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------

def score_table(scores: pd.Series, ids: list[str], threshold: float) -> pd.DataFrame:
    values = scores.reindex(ids).to_numpy()
    return pd.DataFrame({"filename": ids, "score": values, "threshold": threshold,
                         "ood": (values > threshold).astype(int)})


def write_scores(table: pd.DataFrame, path: Path) -> None:
    write_table(table, path, index=False)


def score_inputs(args, dist: Dist) -> None:
    """The whole of score.py for parsed flags ``args``, under torchrun or not."""
    setup_logging(main_process=dist.is_main)
    run = Run(args.output_dir, args.model_name)
    folder = OodFolder(run.ood_dir)
    config = run.load_config()
    settings = val_settings(folder, config)
    detector = ScoreOptions.from_args(args).fit(load_val(run, folder, settings))
    threshold, val_fpr, n_val = detector_threshold(detector, args.fpr)
    signal_length = int(config["data"]["signal_length"])
    paths = [Path(path) for path in args.input]
    check_stems(paths)
    if args.out is not None and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give the path of the CSV file to write")
    datasets = [read_input(path, signal_length, args.normalize, args.first_n, args.cache_data) for path in paths]

    reconstructor = build_reconstructor(run, config, settings.get("num_inference_steps", 1),
                                        settings.get("inference_skip_factor", 1), settings["seed"], dist.device,
                                        settings["mode"], args.max_chains)
    if list(reconstructor.starts) != list(settings["start_points"]):
        raise UserError(f"rebuilding the val reconstruction of {run.path} gives start points "
                        f"{reconstructor.starts}, not those in reconstruction.json; re-run reconstruct.py")
    log.info("%s reconstruction (%d start points, seed %d) on %s; score %s on %s at t = %s; threshold %.6g from "
             "%d cross-fitted val scores", settings["mode"], len(reconstructor.starts), settings["seed"], dist.device,
             detector.score, ",".join(detector.metrics), detector.ts, threshold, n_val)

    tables, summaries = [], []
    for path, dataset in zip(paths, datasets):
        frame = reconstruct_set(reconstructor, dataset, "score", args.batch_size, dist, args.num_workers)
        if not dist.is_main:
            continue
        table = score_table(detector.score_frame(as_written(frame), f"input {path.name}"), dataset.ids, threshold)
        target = Path(args.out) if args.out else folder.scores_file(path.stem)
        if args.out is None:
            write_scores(table, target)
            log.info("wrote %s", target)
        tables.append(table)
        flagged = int(table["ood"].sum())
        summaries.append(f"{path.name}: {len(table)} windows, {flagged} flagged ({flagged / len(table):.1%}); "
                         f"threshold {threshold:.6g}, target FPR {args.fpr:g}, val FPR {val_fpr:.4f} -> {target}")
    if not dist.is_main:
        return
    if args.out is not None:
        write_scores(pd.concat(tables, ignore_index=True), Path(args.out))
        log.info("wrote %s", args.out)
    print(f"{run.name}: score {detector.score} on {','.join(detector.metrics)}, {len(detector.ts)} start points "
          f"(t = {detector.ts[0]}..{detector.ts[-1]}), threshold from {n_val} cross-fitted val scores")
    print("\n".join(f"  {line}" for line in summaries))


