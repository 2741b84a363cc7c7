"""Find and read raw IQ inputs of three kinds, each as complex frames [N_frames, L] plus a signal name.

Kinds (found recursively below a data root):

- ``*_raw_data.h5``: RF Challenge layout, ``dataset`` = complex [N_frames, L], optional ``sig_type``
  and optional ``snr_db`` [N_frames] (each frame's SNR in dB, see :func:`read_frame_snrs`).
  Output stem: the file stem (``QPSK_raw_data``).
- ``*.sigmf-meta`` with its ``.sigmf-data``: one complex recording (cf32/cf64/ci8/ci16/ci32, little or
  big endian, signed or unsigned), read with the ``sigmf`` package. All captures are used as one
  stream in file order. Integer samples come back as sigmf scales them (``autoscale``): each
  component divided by 2**(bits - 1), so full scale maps to [-1, 1) (unsigned ones are centred
  first); float samples are kept. All arrive as complex64. Real (``r*``) datatypes, several channels,
  a missing or corrupt dataset (checksum mismatch, partial sample) are refused.
  Signal name: global ``rfood:sig_type``, else the first annotation's ``core:label``, else the
  display name (file stem before its first underscore).
- ``*.npy``: complex array, 2-D [N_frames, L] (frames as given) or 1-D (one stream); a real array
  [..., 2] of I/Q pairs is accepted too (no scaling). Loaded without pickle. Signal name: the display
  name.

A stream (SigMF, 1-D npy) is cut into consecutive frames of ``frame_length`` samples, the tail
dropped, so the by-frame split keeps neighbouring samples together. SigMF and npy inputs get the
output stem ``<stem>_raw_data`` (kept as is when the stem already ends in ``_raw_data``), so processed
files are ``<stem>_raw_data_train.h5`` etc. like those of h5 inputs.

Each kind is opened and checked in one place, :func:`open_raw_h5`, :func:`open_sigmf` and
:func:`load_npy`, which the whole-file reads here (prep) and the windowed reads of
:mod:`src.data.streaming` (score.py) share, so a bad file gets the same message from every stage.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np

from src.data.datasets import display_name
from src.errors import CORRUPT_FILE_ERRORS, UserError

RAW_SUFFIX = "_raw_data.h5"
SIGMF_META_SUFFIX = ".sigmf-meta"
NPY_SUFFIX = ".npy"
SUFFIXES = (RAW_SUFFIX, SIGMF_META_SUFFIX, NPY_SUFFIX)
ACCEPTED_KINDS = f"*{RAW_SUFFIX}, *{SIGMF_META_SUFFIX} (with its .sigmf-data) or *{NPY_SUFFIX}"
DEFAULT_FRAME_LENGTH = 40960  # samples per frame of the RF Challenge InterferenceSet
REPLACE_FILE = "replace or remove the file"  # what to do about an h5 file that cannot be read
SIG_TYPE_KEY = "rfood:sig_type"


# --------------------------------------------------------------------------------------------------
# Finding
# --------------------------------------------------------------------------------------------------

def output_stem(path: Path) -> str:
    """Stem of the processed files: ``<stem>`` for h5, ``<stem>_raw_data`` for SigMF and npy."""
    if path.name.endswith(RAW_SUFFIX):
        return path.stem
    stem = path.name[:-len(SIGMF_META_SUFFIX if path.name.endswith(SIGMF_META_SUFFIX) else NPY_SUFFIX)]
    return stem if stem.endswith("_raw_data") else f"{stem}_raw_data"


def find_raw_files(data_root: Path) -> list[Path]:
    """Every raw input below ``data_root``, sorted; refuses two inputs that would write the same files."""
    if not data_root.is_dir():
        raise UserError(f"--data_root {data_root} is not a folder; point it at the folder holding the raw files")
    files = sorted(path for suffix in SUFFIXES for path in data_root.rglob(f"*{suffix}") if path.is_file())
    if not files:
        raise UserError(f"--data_root {data_root} holds no {ACCEPTED_KINDS} files; point it at the raw data "
                        "(e.g. the output of python -m src.data.synthetic --out DIR)")
    check_unique_outputs(files)
    return files


def check_unique_outputs(files: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for path in files:
        target = path.parent / output_stem(path)
        if target in seen:
            raise UserError(f"{seen[target]} and {path} would both be written as {output_stem(path)}_*.h5; "
                            "rename or move one of them")
        seen[target] = path


def read_recording(path: Path, frame_length: int = DEFAULT_FRAME_LENGTH) -> tuple[np.ndarray, bytes, str]:
    """One raw input as (complex frames [N_frames, L], sig_type bytes, output stem)."""
    if path.name.endswith(SIGMF_META_SUFFIX):
        frames, sig_type = read_sigmf(path, frame_length)
    elif path.name.endswith(NPY_SUFFIX):
        frames, sig_type = read_npy(path, frame_length)
    else:
        frames, sig_type = read_raw(path)
    return frames, sig_type, output_stem(path)


class RecordingTooShort(UserError):
    """A stream shorter than one frame; callers that choose the frame length themselves reword it."""


def cut_frames(path: Path, stream: np.ndarray, frame_length: int) -> np.ndarray:
    """Consecutive frames [N, frame_length] of a 1-D stream; the tail is dropped."""
    n_frames = len(stream) // frame_length
    if n_frames == 0:
        raise RecordingTooShort(f"{path} holds {len(stream)} samples, shorter than one frame of --frame_length "
                        f"{frame_length}; lower --frame_length or use a longer recording")
    return stream[:n_frames * frame_length].reshape(n_frames, frame_length)


# --------------------------------------------------------------------------------------------------
# RF Challenge h5
# --------------------------------------------------------------------------------------------------

def decode_sig_type(value: object, fallback: str) -> bytes:
    """``sig_type`` as bytes, whether stored as bytes, str or a one-element array."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return fallback.encode()


def read_raw(path: Path) -> tuple[np.ndarray, bytes]:
    """Read and check one raw h5 file: complex frames [N_frames, L] and its ``sig_type`` as bytes."""
    file, dataset = open_raw_h5(path)
    with file:
        try:
            frames = dataset[()]
            sig_type = decode_sig_type(file["sig_type"][()], display_name(path)) if "sig_type" in file \
                else display_name(path).encode()
        except CORRUPT_FILE_ERRORS as err:
            raise unreadable_h5(path, err) from err
    check_finite(path, frames)
    return frames, sig_type


def open_raw_h5(path: Path) -> tuple[h5py.File, h5py.Dataset]:
    """A raw h5 file, open, and its checked ``dataset`` (complex [N_frames, L]); the caller closes the file."""
    try:
        file = h5py.File(path, "r")
    except CORRUPT_FILE_ERRORS as err:
        raise unreadable_h5(path, err) from err
    try:
        return file, checked_h5_dataset(path, file)
    except UserError:
        file.close()
        raise
    except CORRUPT_FILE_ERRORS as err:
        file.close()
        raise unreadable_h5(path, err) from err


def checked_h5_dataset(path: Path, file: h5py.File) -> h5py.Dataset:
    dataset = file.get("dataset")
    if not isinstance(dataset, h5py.Dataset):
        raise UserError(f"{path} has no 'dataset' array; raw files need 'dataset' = complex [N_frames, L]")
    if dataset.dtype.kind != "c":
        raise UserError(f"{path}: 'dataset' is {dataset.dtype}, not complex; raw files need complex IQ "
                        "[N_frames, L] (convert I/Q pairs to complex first)")
    if dataset.ndim != 2:
        raise UserError(f"{path}: 'dataset' has shape {dataset.shape}, expected rank 2 [N_frames, L]")
    return dataset


def is_raw_h5(path: Path, unreadable_hint: str = REPLACE_FILE) -> bool:
    """Whether an h5 file's ``dataset`` is complex (a raw recording) rather than real (processed windows)."""
    try:
        with h5py.File(path, "r") as file:
            dataset = file.get("dataset")
            return isinstance(dataset, h5py.Dataset) and dataset.dtype.kind == "c"
    except CORRUPT_FILE_ERRORS as err:
        raise unreadable_h5(path, err, unreadable_hint) from err


def unreadable_h5(path: Path, err: Exception, hint: str = REPLACE_FILE) -> UserError:
    return UserError(f"cannot read {path} as HDF5 ({err}); {hint}")


def check_finite(path: Path, frames: np.ndarray) -> None:
    """Refuse frames [N_frames, L] holding NaN or Inf (the openers have checked type and shape)."""
    bad_frames = np.flatnonzero(~np.isfinite(frames).all(axis=1))
    if bad_frames.size:
        raise UserError(f"{path}: frame {bad_frames[0]} holds NaN or Inf ({bad_frames.size} bad frames); "
                        "clean or drop those frames")


def read_frame_snrs(path: Path, n_frames: int) -> np.ndarray | None:
    """Each frame's SNR in dB from a raw h5's optional ``snr_db`` [N_frames] (src.data.synthetic writes it).

    None for SigMF and npy inputs and for h5 files without it; a ``snr_db`` that is not one finite
    number per frame is refused.
    """
    if not path.name.endswith(RAW_SUFFIX):
        return None
    try:
        with h5py.File(path, "r") as file:
            entry = file.get("snr_db")
            snrs = None if entry is None else np.asarray(entry[()], dtype=np.float64)
    except CORRUPT_FILE_ERRORS as err:
        raise UserError(f"cannot read 'snr_db' of {path} ({err}); fix or delete it") from err
    if snrs is not None and (snrs.shape != (n_frames,) or not np.isfinite(snrs).all()):
        raise UserError(f"{path}: 'snr_db' has shape {snrs.shape} (or non-finite values), expected one finite SNR in "
                        f"dB per frame [{n_frames}]; fix or delete it")
    return snrs


# --------------------------------------------------------------------------------------------------
# SigMF
# --------------------------------------------------------------------------------------------------

def read_sigmf(path: Path, frame_length: int) -> tuple[np.ndarray, bytes]:
    """Frames and signal name of one ``.sigmf-meta`` + ``.sigmf-data`` recording."""
    recording = open_sigmf(path)
    stream = recording.read_samples() if recording.sample_count else np.zeros(0, np.complex64)
    frames = cut_frames(path, stream, frame_length)
    check_finite(path, frames)
    return frames, sigmf_sig_type(path, recording)


def open_sigmf(path: Path):
    """The checked ``SigMFFile``: complex, one channel, with an intact dataset; else a UserError."""
    try:
        from sigmf import error, sigmffile
    except ImportError as err:
        raise UserError(f"reading {path} needs the sigmf package; pip install 'sigmf>=1.2'") from err
    data_path = path.with_name(path.name[:-len(SIGMF_META_SUFFIX)] + ".sigmf-data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # sigmf warns on a partial sample or a short dataset
            metadata = json.loads(path.read_text())
            check_sigmf_datatype(path, metadata.get("global", {}).get("core:datatype"), sigmffile.dtype_info)
            if not data_path.is_file() and "core:dataset" not in metadata["global"]:
                raise UserError(f"{path}: its dataset {data_path.name} is missing; put it beside the metadata file")
            recording = sigmffile.fromfile(path)
    except (error.SigMFError, *CORRUPT_FILE_ERRORS, AttributeError, ArithmeticError, UserWarning) as err:
        raise UserError(f"cannot read {path} as a SigMF recording ({err}); fix or re-export it") from err
    channels = recording.get_global_field("core:num_channels", 1)
    if channels != 1:
        raise UserError(f"{path} has {channels} channels; only single-channel recordings are supported, "
                        "split the channels into separate recordings")
    return recording


def check_sigmf_datatype(path: Path, datatype: object, dtype_info) -> None:
    if not isinstance(datatype, str):
        raise UserError(f"{path}: global 'core:datatype' is missing; SigMF metadata must name the sample type")
    if not dtype_info(datatype)["is_complex"]:
        raise UserError(f"{path}: datatype {datatype} is real-valued; IQ recordings need a complex datatype "
                        "(cf32_le, ci16_le, ...)")


def sigmf_sig_type(path: Path, recording) -> bytes:
    """Global ``rfood:sig_type``, else the first annotation's ``core:label``, else the display name."""
    name = recording.get_global_field(SIG_TYPE_KEY)
    if not name:
        labels = [note.get("core:label") for note in recording.get_annotations() if note.get("core:label")]
        name = labels[0] if labels else display_name(output_stem(path))
    return str(name).encode()


# --------------------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------------------

def read_npy(path: Path, frame_length: int) -> tuple[np.ndarray, bytes]:
    """Frames of a complex ``.npy`` (2-D frames or 1-D stream; real [..., 2] I/Q pairs accepted)."""
    array = npy_as_complex(load_npy(path))
    frames = cut_frames(path, array, frame_length) if array.ndim == 1 else array
    check_finite(path, frames)
    return frames, display_name(output_stem(path)).encode()


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` loaded without pickle (memory-mapped with ``mmap``), checked to hold complex [n] or
    [N_frames, L], or real I/Q pairs [n, 2] or [N_frames, L, 2]."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read {path} as a NumPy array ({err}); save it with np.save as a plain "
                        "complex array") from err
    pairs = not np.iscomplexobj(array)
    if pairs and not (array.dtype.kind in "fiu" and array.ndim in (2, 3) and array.shape[-1] == 2):
        raise UserError(f"{path} holds {array.dtype} {array.shape}, not complex IQ; save a complex array "
                        "(e.g. I + 1j * Q) or real I/Q pairs in a last axis of 2")
    if not pairs and array.ndim not in (1, 2):
        raise UserError(f"{path} has shape {array.shape}; expected complex [N_frames, L] or a 1-D stream")
    return array


def npy_as_complex(array: np.ndarray) -> np.ndarray:
    """Real I/Q pairs [..., 2] (as :func:`load_npy` checks them) as complex samples; a complex array as it is."""
    if np.iscomplexobj(array):
        return array
    pairs = array.astype(np.result_type(array.dtype, np.float32))
    return pairs[..., 0] + 1j * pairs[..., 1]
