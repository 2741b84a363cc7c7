"""Preparation: cut raw complex IQ frames into fixed-length real windows, split by frame into train/val/test.

The library behind ``python src/data/signal_trim_and_unpack.py`` (the research code's command).

Input, found recursively below ``--data_root`` (read by ``src/data/recordings.py``):

- ``*_raw_data.h5`` (RF Challenge InterferenceSet layout): ``dataset`` = complex [N_frames, L] and
  optionally ``sig_type``;
- SigMF recordings, ``<Name>.sigmf-meta`` + ``<Name>.sigmf-data`` (complex cf32/cf64/ci8/ci16/ci32;
  integer samples scaled by sigmf to [-1, 1)); signal name from the global ``rfood:sig_type``, else the
  first annotation's ``core:label``, else ``<Name>`` before its first underscore;
- ``<Name>.npy``: complex [N_frames, L], or a complex 1-D stream (real [..., 2] I/Q pairs also accepted).

A stream (SigMF, 1-D npy) is cut into consecutive frames of ``--frame_length`` samples (default 40960,
the RF Challenge frame length; the tail is dropped); all SigMF captures are used in file order.

Output, per input, under ``--new_data_root`` with the same relative folders:
``<Name>_raw_data_train.h5``, ``..._val.h5`` and (when ``--test_split`` > 0) ``..._test.h5``, each with

- ``dataset``: float32 [N, 2, trim_length]; channel 0 = in-phase (real), channel 1 = quadrature (imag);
- ``frame_index``: int64 [N], the raw frame each window was cut from;
- ``snr_db``: float32 [N], each window's SNR in dB (its frame's), only where the raw h5 records
  ``snr_db`` per frame (as src.data.synthetic does);
- ``sig_type``: copied from the input (or the display name, the stem before the first underscore);
- attributes ``source_file``, ``trim_length``, ``normalize``, ``seed``, ``split``, ``frame_length``.

Each frame gives floor(L / trim_length) non-overlapping windows (the tail is dropped). Frames, not
windows, are split with a seeded permutation, so windows of one frame never land in two splits (they
are correlated; splitting windows would leak). Within a split, windows are ordered by frame, then by
position in the frame.

``--num_samples`` caps the windows kept per input file, over all splits together. It is applied after
the split: the cap is shared among the splits in proportion to their window counts (largest
remainder, at least one window each) and each split keeps its first windows in that order.

``--normalize rms`` (default) scales each window to unit complex power, mean(I^2 + Q^2) = 1, the
convention of the synthetic generator, so a detector cannot separate signal types by power alone.

Example::

    python src/data/signal_trim_and_unpack.py --data_root=data/raw --trim_length=3000 --new_data_root=data/processed
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

from src.data.recordings import DEFAULT_FRAME_LENGTH, find_raw_files, read_frame_snrs, read_recording
from src.errors import UserError
from src.io import atomic_path

log = logging.getLogger("rfood")

NORMALIZATIONS = ("none", "rms")


# --------------------------------------------------------------------------------------------------
# Checking the options
# --------------------------------------------------------------------------------------------------

def check_options(trim_length: int, num_samples: int | None, val_split: float, test_split: float,
                  normalize: str, frame_length: int = DEFAULT_FRAME_LENGTH) -> None:
    if trim_length < 1:
        raise UserError(f"--trim_length must be a positive number of samples, got {trim_length}")
    if frame_length < 1:
        raise UserError(f"--frame_length must be a positive number of samples, got {frame_length}")
    n_splits = 3 if test_split > 0 else 2
    if num_samples is not None and num_samples < n_splits:
        raise UserError(f"--num_samples must be at least {n_splits} (one window per split) or left out to keep "
                        f"all windows, got {num_samples}")
    if not 0.0 < val_split < 1.0:
        raise UserError(f"--val_split must lie strictly between 0 and 1, got {val_split}")
    if not 0.0 <= test_split < 1.0:
        raise UserError(f"--test_split must lie in [0, 1) (0 = no test split), got {test_split}")
    if val_split + test_split >= 1.0:
        raise UserError(f"--val_split + --test_split must be below 1 to leave frames for training, "
                        f"got {val_split} + {test_split}")
    if normalize not in NORMALIZATIONS:
        raise UserError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")


# --------------------------------------------------------------------------------------------------
# Windows, splits, caps
# --------------------------------------------------------------------------------------------------

def cut_windows(path: Path, frames: np.ndarray, trim_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows as float32 [N, 2, trim_length] and the frame index of each window."""
    n_frames, frame_length = frames.shape
    per_frame = frame_length // trim_length
    if per_frame == 0:
        raise UserError(f"--trim_length {trim_length} is longer than the frames of {path} "
                        f"({frame_length} samples); choose --trim_length <= {frame_length}")
    complex_windows = frames[:, :per_frame * trim_length].reshape(n_frames * per_frame, trim_length)
    windows = np.stack([complex_windows.real, complex_windows.imag], axis=1).astype(np.float32)
    return windows, np.repeat(np.arange(n_frames, dtype=np.int64), per_frame)


def proportional_shares(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` items in proportion to ``weights`` (largest remainder), at least one each.

    Needs ``total >= len(weights)``. A group rounded down to zero takes one item from the largest group.
    """
    exact = [total * weight / sum(weights) for weight in weights]
    shares = [int(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in by_remainder[:total - sum(shares)]:
        shares[i] += 1
    for i, share in enumerate(shares):
        if share == 0:
            shares[int(np.argmax(shares))] -= 1
            shares[i] = 1
    return shares


def split_frames(path: Path, n_frames: int, val_split: float, test_split: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted frame indices per split ("train", "val", and "test" when test_split > 0).

    Frame counts are proportional to the fractions (largest remainder, at least one frame per split);
    which frames go where comes from a permutation seeded by ``seed``.
    """
    fractions = {"train": 1.0 - val_split - test_split, "val": val_split, "test": test_split}
    if test_split == 0:
        del fractions["test"]
    if n_frames < len(fractions):
        raise UserError(f"{path} has {n_frames} frames but needs at least {len(fractions)} "
                        f"(one per split: {', '.join(fractions)}); use a file with more frames or --test_split 0")
    sizes = proportional_shares(n_frames, list(fractions.values()))
    order = np.random.default_rng(seed).permutation(n_frames)
    bounds = np.cumsum([0, *sizes])
    return {name: np.sort(order[bounds[i]:bounds[i + 1]]) for i, name in enumerate(fractions)}


def cap_windows(path: Path, members: dict[str, np.ndarray], num_samples: int | None) -> dict[str, np.ndarray]:
    """Keep ``num_samples`` windows in all, shared in proportion to the splits' sizes; first ones first."""
    counts = [len(rows) for rows in members.values()]
    if num_samples is not None and num_samples > sum(counts):
        raise UserError(f"{path}: --num_samples={num_samples} but its frames give only {sum(counts)} windows of "
                        "--trim_length; lower --num_samples or leave it out to keep all")
    if num_samples is None or num_samples == sum(counts):
        return members
    caps = proportional_shares(num_samples, counts)
    return {name: rows[:cap] for (name, rows), cap in zip(members.items(), caps)}


def normalize_rms(path: Path, windows: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
    """Scale each window [2, T] to unit complex power: mean over samples of I^2 + Q^2 equals 1."""
    power = np.mean(np.sum(windows.astype(np.float64) ** 2, axis=1), axis=1)
    silent = np.flatnonzero(power == 0)
    if silent.size:
        raise UserError(f"{path}: a window of frame {frame_index[silent[0]]} is all zeros, so --normalize rms "
                        "cannot scale it; use --normalize none or drop that frame")
    return (windows / np.sqrt(power)[:, None, None]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

def write_split(path: Path, windows: np.ndarray, frame_index: np.ndarray, sig_type: bytes, attrs: dict,
                snr_db: np.ndarray | None = None) -> None:
    """One processed file; ``snr_db`` (each window's SNR in dB) is written only when given."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("dataset", data=windows)
            file.create_dataset("frame_index", data=frame_index)
            if snr_db is not None:
                file.create_dataset("snr_db", data=np.asarray(snr_db, dtype=np.float32))
            file.create_dataset("sig_type", data=np.bytes_(sig_type))
            file.attrs.update(attrs)


def process_file(source: Path, target_dir: Path, trim_length: int, num_samples: int | None, val_split: float,
                 test_split: float, normalize: str, seed: int, frame_length: int = DEFAULT_FRAME_LENGTH) -> list[Path]:
    """Window, split, cap, normalise and write one raw input; return the written paths."""
    frames, sig_type, stem = read_recording(source, frame_length)
    frame_snrs = read_frame_snrs(source, frames.shape[0])
    windows, frame_index = cut_windows(source, frames, trim_length)
    splits = split_frames(source, frames.shape[0], val_split, test_split, seed)
    members = {name: np.flatnonzero(np.isin(frame_index, frame_ids)) for name, frame_ids in splits.items()}
    members = cap_windows(source, members, num_samples)
    written = []
    for name, rows in members.items():
        kept = normalize_rms(source, windows[rows], frame_index[rows]) if normalize == "rms" else windows[rows]
        path = target_dir / f"{stem}_{name}.h5"
        attrs = {"source_file": str(source.resolve()), "trim_length": trim_length, "normalize": normalize,
                 "seed": seed, "split": name, "frame_length": frames.shape[1]}
        write_split(path, kept, frame_index[rows], sig_type, attrs,
                    None if frame_snrs is None else frame_snrs[frame_index[rows]])
        log.info("wrote %s: %d windows from %d frames", path, len(rows), len(np.unique(frame_index[rows])))
        written.append(path)
    return written


def trim_and_unpack(data_root: str | os.PathLike, new_data_root: str | os.PathLike, trim_length: int = 3000,
                    num_samples: int | None = None, val_split: float = 0.2, test_split: float = 0.2,
                    normalize: str = "rms", seed: int = 0, frame_length: int = DEFAULT_FRAME_LENGTH) -> list[Path]:
    """Process every raw input below ``data_root`` into train/val(/test) files; see the module doc.

    Args:
        data_root: folder searched recursively for raw h5, SigMF and npy inputs.
        new_data_root: output root; the raw files' relative folders are kept.
        trim_length: samples per window.
        num_samples: max windows kept per raw file over all splits (None: all).
        val_split, test_split: fractions of frames (test_split 0: no test file).
        normalize: "rms" (unit complex power per window) or "none".
        seed: seeds the frame permutation.
        frame_length: samples per frame cut from a stream (SigMF, 1-D npy); h5 and 2-D npy keep theirs.

    Returns:
        The written paths, in processing order.
    """
    check_options(trim_length, num_samples, val_split, test_split, normalize, frame_length)
    data_root, new_data_root = Path(data_root), Path(new_data_root)
    written = []
    for source in find_raw_files(data_root):
        target_dir = new_data_root / source.parent.relative_to(data_root)
        written += process_file(source, target_dir, trim_length, num_samples, val_split, test_split, normalize, seed,
                                frame_length)
    return written
