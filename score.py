"""Score new recordings with a trained run: flag the windows that look out of distribution.

Example:
    python score.py --output_dir=runs --model_name=unet_small_QPSK --input=capture.sigmf-meta --fpr=0.05

Inputs (--input, comma separated): a processed h5 (``dataset`` float [N, 2, T], as written by
src/data/signal_trim_and_unpack.py; used as is, so its T must be the run's signal length) or a raw
recording (``*_raw_data.h5`` with complex ``dataset``, ``.sigmf-meta`` + ``.sigmf-data``, ``.npy``),
cut into consecutive windows of the run's signal length (config.json, data.signal_length; a stream's
tail is dropped) and scaled per window to unit power (--normalize rms, as in prep).

Each window is reconstructed with exactly the settings of the run's val reconstruction (read from
<run>/ood/reconstruction.json) and scored by a detector fitted on <run>/ood/results_val.csv alone,
as ood_detection.py fits it. The threshold is the (1 - fpr) quantile of the cross-fitted val scores
(each val signal scored by a detector fitted without it), so about --fpr of in-distribution windows
are flagged. Writes <run>/ood/scores_<input stem>.csv (or --out) with one row per window:
filename (window id <input stem>:<index>), score (higher = more unusual), threshold, ood (1 = flagged).
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from src.cli import (Parser, add_dist_args, add_loader_args, add_score_args, comma_list, fraction, positive_int,
                     run_main, setup_logging)
from src.data.datasets import SignalDataset, display_name
from src.data.recordings import NPY_SUFFIX, SIGMF_META_SUFFIX, RecordingTooShort, read_recording
from src.data.signal_trim_and_unpack import NORMALIZATIONS, cut_windows, normalize_rms
from src.diffusion.engine import MODES
from src.errors import UserError
from src.io import atomic_path, load_json
from src.ood.reconstruct import build_reconstructor, reconstruct_set
from src.ood.results import read_results
from src.ood.scoring import Detector, fit_detector
from src.run import Run
from src.trainers.distributed import distributed

log = logging.getLogger("rfood")
CROSSFIT_FOLDS = 5
RESULTS_FLOAT_FORMAT = "%.9g"  # reconstruct.py's results files (src.ood.results.write_results)


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", required=True, help="run folder name inside --output_dir")
    parser.add_argument("--input", type=comma_list, required=True,
                        help="file(s) to score, comma separated: processed h5, *_raw_data.h5, .sigmf-meta or .npy")
    parser.add_argument("--fpr", type=fraction, default=0.05,
                        help="target false-positive rate: the share of in-distribution windows flagged "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="CSV to write (all inputs together); default: <run>/ood/scores_<input stem>.csv each")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="rms",
                        help="raw recordings only: rms scales each window to unit power, as prep does; none keeps "
                             "the raw scale (default: %(default)s). Processed h5 files are used as they are")
    parser.add_argument("--first_n", type=positive_int, default=None,
                        help="only the first N windows of each input (default: all)")
    add_score_args(parser)  # --score, --metric, --min_t, --max_t, --t_skip, --auto_t as ood_detection.py
    parser.add_argument("--max_chains", type=positive_int, default=None,
                        help="most signals (start points x batch) in one network call (default: as reconstruct.py)")
    add_loader_args(parser, batch_size=32)
    add_dist_args(parser)
    return parser


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

def val_settings(run: Run, config: dict) -> dict:
    """reconstruction.json, checked to hold what rebuilding the val reconstruction needs."""
    path = run.ood_dir / "reconstruction.json"
    if not path.is_file():
        raise UserError(f"{path} not found: the run has no reconstruction settings; run reconstruct.py on it "
                        "first (with --run_val=1)")
    settings = load_json(path, "reconstruction settings")
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


def load_val(run: Run, settings: dict) -> pd.DataFrame:
    path = run.ood_dir / "results_val.csv"
    if not path.is_file():
        raise UserError(f"{path} not found; run reconstruct.py on the run with --run_val=1 first")
    val = read_results(path)
    if sorted(val["t"].unique().tolist()) != sorted(settings["start_points"]):
        raise UserError(f"{path} holds other start points than {run.ood_dir / 'reconstruction.json'} records; "
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

def as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as reconstruct.py's results file would read back (same float rounding)."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False, float_format=RESULTS_FLOAT_FORMAT)))


def score_table(scores: pd.Series, ids: list[str], threshold: float) -> pd.DataFrame:
    values = scores.reindex(ids).to_numpy()
    return pd.DataFrame({"filename": ids, "score": values, "threshold": threshold,
                         "ood": (values > threshold).astype(int)})


def write_scores(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")


def main() -> None:
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        score_inputs(args, dist)


def score_inputs(args, dist) -> None:
    setup_logging(main_process=dist.is_main)
    run = Run(args.output_dir, args.model_name)
    config = run.load_config()
    settings = val_settings(run, config)
    detector = fit_detector(load_val(run, settings), args.metric, args.score, args.min_t, args.max_t, args.t_skip,
                            args.auto_t)
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
        target = Path(args.out) if args.out else run.ood_dir / f"scores_{path.stem}.csv"
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


if __name__ == "__main__":
    run_main(main)
