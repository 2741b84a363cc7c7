"""Processed signal files (float32 [N, 2, L] in h5 ``dataset``) as PyTorch datasets.

Each window keeps a stable id ``<file stem>:<index>`` that travels into the results files, so any
score can be traced back to the window it came from, and the id of the frame it was cut from
(``<file stem>:frame<k>``, from prep's ``frame_index``): windows of one frame share its carrier
offset, phase and noise, so frames, not windows, are the independent units of error bars. Where
prep recorded each window's SNR (``snr_db``, from synthetic data), :attr:`SignalDataset.snr_db`
lists it; else it is None.

With ``carrier_order`` M (2, 4 or 8) every window comes with its carrier offset and phase removed
blindly by the M-th power estimator (:func:`src.dsp.recover_carrier`), whichever stage reads it.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from src.dsp import recover_carrier
from src.errors import CORRUPT_FILE_ERRORS, UserError


def display_name(path: str | Path) -> str:
    """A signal file's name as shown in tables: its stem before the first underscore."""
    return Path(path).name.split("_")[0]


def _check_processed(path: Path, data) -> None:
    if data.ndim != 3 or data.shape[1] != 2:
        raise UserError(f"{path}: `dataset` has shape {tuple(data.shape)}, expected [N, 2, L] (I and Q channels); "
                        "run src/data/signal_trim_and_unpack.py on the raw files first")
    if data.shape[0] == 0 or data.shape[2] == 0:
        raise UserError(f"{path}: `dataset` is empty; prepare it again with more frames")


def _check_finite(path: Path, array: np.ndarray, offset: int = 0) -> None:
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        first = offset + int(np.argmin(finite))
        raise UserError(f"{path}: window {first} holds NaN or Inf values; clean or drop it and prepare the file again")


def read_frame_index(handle: h5py.File, length: int) -> np.ndarray | None:
    """The first ``length`` entries of a processed file's ``frame_index``, or None if it has none."""
    entry = handle.get("frame_index")
    if not isinstance(entry, h5py.Dataset) or entry.ndim != 1 or entry.shape[0] < length:
        return None
    return np.asarray(entry[:length])


def read_snr_db(path: Path, handle: h5py.File, length: int) -> list[float] | None:
    """The first ``length`` entries of a processed file's ``snr_db`` (each window's SNR in dB), or None."""
    entry = handle.get("snr_db")
    if entry is None:
        return None
    if not isinstance(entry, h5py.Dataset) or entry.ndim != 1 or entry.shape[0] < length:
        raise UserError(f"{path}: `snr_db` has shape {getattr(entry, 'shape', None)}, expected one value per window; "
                        "prepare the file again")
    return [float(value) for value in entry[:length]]


class SignalDataset(Dataset):
    """Windows of one processed h5 file.

    Args:
        path: processed h5 file.
        first_n: keep only the first ``first_n`` windows (None: all).
        cache: read the file into RAM once (True) or read each window when asked (False).
        carrier_order: remove each window's carrier offset and phase with this power (0: leave them).
    """

    def __init__(self, path: str | Path, first_n: int | None = None, cache: bool = True,
                 carrier_order: int = 0) -> None:
        self.path = Path(path)
        self.carrier_order = carrier_order
        if first_n is not None and first_n <= 0:
            raise UserError(f"--first_n must be positive, got {first_n}")
        if not self.path.is_file():
            raise UserError(f"signal file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as handle:
                if "dataset" not in handle or not isinstance(handle["dataset"], h5py.Dataset):
                    raise UserError(f"{self.path} has no `dataset` entry; is it a processed signal file?")
                data = handle["dataset"]
                _check_processed(self.path, data)
                self.length = data.shape[0] if first_n is None else min(first_n, data.shape[0])
                self.signal_length = int(data.shape[2])
                self.channels = 2  # I and Q
                self._cache = np.asarray(data[: self.length], dtype=np.float32) if cache else None
                frames = read_frame_index(handle, self.length)
                self.snr_db = read_snr_db(self.path, handle, self.length)  # None where the file records no SNR
        except CORRUPT_FILE_ERRORS as err:
            raise UserError(f"cannot read {self.path} as HDF5 ({err}); check the path") from err
        if self._cache is not None:
            _check_finite(self.path, self._cache)
            self._cache = recovered(self._cache, carrier_order)
        self._handle = None
        self.name = display_name(self.path)
        self.ids = [f"{self.path.stem}:{index}" for index in range(self.length)]
        self.units = self.ids if frames is None else [f"{self.path.stem}:frame{int(k)}" for k in frames]

    def __len__(self) -> int:
        return self.length

    def _read(self, index: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[index]
        if self._handle is None:  # opened lazily, once per worker process
            self._handle = h5py.File(self.path, "r")
        window = np.asarray(self._handle["dataset"][index], dtype=np.float32)
        _check_finite(self.path, window[None], offset=index)
        return recovered(window[None], self.carrier_order)[0]

    def __getitem__(self, index: int) -> dict:
        return {"signal": torch.from_numpy(self._read(index)), "index": index}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None  # h5py handles do not cross process boundaries
        return state


RECOVERY_BATCH = 4096  # windows per batched carrier-recovery call when a file is cached


def recovered(windows: np.ndarray, carrier_order: int) -> np.ndarray:
    """float32 windows [N, 2, T] with their carriers removed by the ``carrier_order``-th power (0: as they are)."""
    if not carrier_order:
        return windows
    return np.concatenate([recover_carrier(torch.from_numpy(windows[start:start + RECOVERY_BATCH]), carrier_order)
                           .numpy() for start in range(0, len(windows), RECOVERY_BATCH)])


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0,
                sampler=None, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffling depends only on ``seed`` (and the sampler's epoch)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      num_workers=num_workers, generator=generator, drop_last=drop_last,
                      persistent_workers=num_workers > 0)
