"""Read long recordings window by window in bounded memory, for scoring.

:func:`open_recording` accepts the raw inputs of :mod:`src.data.recordings` (SigMF, ``.npy``,
RF Challenge ``*_raw_data.h5``), opened and checked by that module's openers, but never loads the
whole file: :meth:`Recording.windows` yields chunks of windows and reads only the samples each chunk
needs.

Sample numbering: a stream (SigMF, 1-D npy) counts samples from 0. A frame source (2-D npy, h5, shape
[frames, L]) numbers frame ``f`` position ``p`` as ``f * L + p``, as if its frames were laid end to
end; windows still never straddle two frames.

Samples equal those of :func:`src.data.recordings.read_recording` (as complex64): SigMF integers are
scaled by the ``sigmf`` package itself (each component divided by 2**(bits - 1)).

Example::

    with open_recording(Path("capture.sigmf-meta")) as recording:
        for offsets, windows in recording.windows(window=1024, hop=512):
            ...  # offsets int64 [n], windows complex64 [n, 1024]
"""
from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from src.data.recordings import (
    ACCEPTED_KINDS,
    NPY_SUFFIX,
    RAW_SUFFIX,
    SIGMF_META_SUFFIX,
    RecordingTooShort,
    load_npy,
    npy_as_complex,
    open_raw_h5,
    open_sigmf,
)
from src.errors import UserError

log = logging.getLogger("rfood")
DEFAULT_CHUNK_WINDOWS = 256  # windows per chunk: 256 windows of 1024 samples are 2 MiB of complex64

Chunk = tuple[np.ndarray, np.ndarray]  # (offsets int64 [n], windows complex64 [n, window])


def window_count(length: int, window: int, hop: int) -> int:
    """How many windows of ``window`` samples, ``hop`` apart, fit in ``length`` samples (tail dropped)."""
    return 0 if length < window else (length - window) // hop + 1


@dataclass(eq=False)
class Recording:
    """One open recording: its size, timing metadata and a reader of sample ranges.

    ``frame_length`` is None for a stream and L for a frame source [frames, L]. ``sample_rate``
    (Hz) and ``start_time`` (first capture's ``core:datetime``) come from SigMF metadata, else None.
    Use it as a context manager (or call :meth:`close`) to release the file.
    """

    path: Path
    n_samples: int
    frame_length: int | None
    sample_rate: float | None
    start_time: datetime | None
    reader: Callable[[int, int], np.ndarray] = field(repr=False)
    closer: Callable[[], None] = field(default=lambda: None, repr=False)

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release the underlying file."""
        self.closer()

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples ``[start, start + count)`` in the recording's numbering, complex64 [count].

        For a frame source the range may run across frames (laid end to end).
        """
        samples = np.asarray(self.reader(start, count)).astype(np.complex64, copy=False)
        if not np.isfinite(samples).all():
            bad = start + int(np.flatnonzero(~np.isfinite(samples))[0])
            raise UserError(f"{self.path}: sample {bad} is NaN or Inf; clean or cut that part of the recording")
        return samples

    def windows_per_frame(self, window: int, hop: int) -> int:
        """Windows in one frame (a stream counts as one frame); checks ``window`` and ``hop`` first."""
        check_window_and_hop(self.path, window, hop)
        span = self.frame_length or self.n_samples
        per_frame = window_count(span, window, hop)
        if per_frame == 0 or self.n_samples == 0:
            raise too_short(self.path, self.n_samples, span, window, self.frame_length is not None)
        return per_frame

    def n_windows(self, window: int, hop: int) -> int:
        """How many windows :meth:`windows` yields in all (e.g. a progress total)."""
        per_frame = self.windows_per_frame(window, hop)
        return per_frame * (self.n_samples // (self.frame_length or self.n_samples))

    def window_offsets(self, window: int, hop: int, first: int, stop: int) -> np.ndarray:
        """First sample of windows ``first`` to ``stop - 1`` (counted over the whole recording), int64."""
        per_frame = self.windows_per_frame(window, hop)
        index = np.arange(first, stop, dtype=np.int64)
        frame, position = np.divmod(index, per_frame)
        return frame * (self.frame_length or 0) + position * hop

    def windows(self, window: int, hop: int, chunk_windows: int = DEFAULT_CHUNK_WINDOWS) -> Iterator[Chunk]:
        """Chunks ``(offsets int64 [n], windows complex64 [n, window])`` of at most ``chunk_windows``.

        Windows start ``hop`` samples apart (hop < window overlaps, hop > window skips); a tail
        shorter than a window is dropped, in each frame of a frame source. Each chunk reads only
        the samples its windows cover, so memory stays near ``chunk_windows * window`` samples.
        Bad ``window``/``hop`` or a recording shorter than one window raise here, before iterating.
        """
        if chunk_windows <= 0:
            raise UserError(f"{self.path}: chunk_windows is {chunk_windows}; use a positive number of windows")
        total = self.n_windows(window, hop)
        return (self.read_chunk(self.window_offsets(window, hop, first, min(first + chunk_windows, total)), window)
                for first in range(0, total, chunk_windows))

    def read_chunk(self, offsets: np.ndarray, window: int) -> Chunk:
        """The windows starting at ``offsets``, read as few contiguous runs as possible."""
        windows = np.empty((len(offsets), window), np.complex64)
        for first, stop in contiguous_runs(offsets, window):
            base = int(offsets[first])
            samples = self.read(base, int(offsets[stop - 1]) + window - base)
            view = np.lib.stride_tricks.sliding_window_view(samples, window)
            windows[first:stop] = view[offsets[first:stop] - base]
        return offsets, windows


def contiguous_runs(offsets: np.ndarray, window: int) -> list[tuple[int, int]]:
    """``(first, stop)`` index ranges of windows that touch or overlap, so each run is one read.

    A gap (hop > window, or a frame's dropped tail) starts a new run, so no skipped samples are read.
    """
    breaks = np.flatnonzero(offsets[1:] > offsets[:-1] + window) + 1
    edges = [0, *breaks.tolist(), len(offsets)]
    return list(zip(edges[:-1], edges[1:]))


def check_window_and_hop(path: Path, window: int, hop: int) -> None:
    if window <= 0:
        raise UserError(f"{path}: window is {window} samples; use a positive window length")
    if hop <= 0:
        raise UserError(f"{path}: hop is {hop} samples; use a positive hop (hop = window for back-to-back windows)")


def too_short(path: Path, n_samples: int, span: int, window: int, is_frames: bool) -> RecordingTooShort:
    what = "no samples" if n_samples == 0 else f"frames of {span} samples" if is_frames else f"{span} samples"
    return RecordingTooShort(f"{path} holds {what}, shorter than one window of {window}; "
                             "use a shorter window or a longer recording")


# --------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------

def open_recording(path: Path, any_h5_name: bool = False) -> Recording:
    """Open a ``.sigmf-meta`` (with its ``.sigmf-data``), ``.npy`` or ``*_raw_data.h5`` for windowed reads;
    with ``any_h5_name``, any other file as a raw h5 (score.py's complex h5 inputs, whatever their name)."""
    path = Path(path)
    if path.name.endswith(SIGMF_META_SUFFIX):
        return open_sigmf_recording(path)
    if path.name.endswith(NPY_SUFFIX):
        return open_npy_recording(path)
    if path.name.endswith(RAW_SUFFIX) or any_h5_name:
        return open_h5_recording(path)
    raise UserError(f"{path} is not a recording this tool reads; pass {ACCEPTED_KINDS}")


def read_flat(array, start: int, count: int) -> np.ndarray:
    """Samples ``[start, start + count)`` of a frame array [frames, L, ...] laid end to end.

    Works on numpy arrays, memmaps and h5py datasets; reads at most three slices, none outside the range.
    """
    frame_length = array.shape[1]
    first, head = divmod(start, frame_length)
    last, tail = divmod(start + count, frame_length)
    if first == last:
        return np.asarray(array[first, head:tail])
    rest = array.shape[2:]
    parts = [np.asarray(array[first, head:])]
    if last > first + 1:
        parts.append(np.asarray(array[first + 1:last]).reshape(-1, *rest))
    if tail:
        parts.append(np.asarray(array[last, :tail]))
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------------
# SigMF
# --------------------------------------------------------------------------------------------------

def open_sigmf_recording(path: Path) -> Recording:
    """A SigMF recording read with ``SigMFFile.read_samples(start_index, count)`` (seek + read of that range).

    Opening checks the dataset as :mod:`src.data.recordings` does (datatype, channels, checksum).
    """
    sigmf_file = open_sigmf(path)

    def reader(start: int, count: int) -> np.ndarray:
        return sigmf_file.read_samples(start_index=start, count=count)

    try:
        sample_rate = optional_float(sigmf_file.get_global_field("core:sample_rate"))
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: core:sample_rate is not a number ({err}); fix or re-export it") from err
    return Recording(path=path, n_samples=int(sigmf_file.sample_count), frame_length=None,
                     sample_rate=sample_rate, start_time=sigmf_start_time(path, sigmf_file), reader=reader)


def optional_float(value: object) -> float | None:
    return None if value is None else float(value)


def sigmf_start_time(path: Path, sigmf_file) -> datetime | None:
    """The first capture's ``core:datetime`` (ISO 8601, e.g. 2024-05-01T12:00:00.5Z), or None."""
    captures = sigmf_file.get_captures()
    text = captures[0].get("core:datetime") if captures else None
    if text is None:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        log.warning("%s: core:datetime %r is not ISO 8601; start time unknown", path, text)
        return None


# --------------------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------------------

def open_npy_recording(path: Path) -> Recording:
    """A ``.npy`` memory-mapped: complex [n] or [frames, L], or real I/Q pairs [n, 2] or [frames, L, 2]."""
    array = load_npy(path, mmap=True)
    pairs = not np.iscomplexobj(array)
    sample_dims = array.ndim - (1 if pairs else 0)
    frame_length = array.shape[1] if sample_dims == 2 else None
    n_samples = int(np.prod(array.shape[:sample_dims]))

    def reader(start: int, count: int) -> np.ndarray:
        samples = np.array(read_flat(array, start, count) if frame_length else array[start:start + count])
        release_mapped_pages(array)  # after the copy above
        return npy_as_complex(samples)

    return Recording(path=path, n_samples=n_samples, frame_length=frame_length, sample_rate=None,
                     start_time=None, reader=reader)


def release_mapped_pages(array: np.ndarray) -> None:
    """Unmap the file pages earlier reads touched (they stay in the OS page cache, so rereads are cheap).

    Touched pages of a memory map count in the process's resident memory until unmapped, so without
    this a scan of the whole file would grow the resident set by the file's size.
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


# --------------------------------------------------------------------------------------------------
# RF Challenge h5
# --------------------------------------------------------------------------------------------------

def open_h5_recording(path: Path) -> Recording:
    """An RF Challenge ``*_raw_data.h5``: complex ``dataset`` [frames, L], read slice by slice."""
    file, dataset = open_raw_h5(path)
    return Recording(path=path, n_samples=int(dataset.shape[0] * dataset.shape[1]), frame_length=dataset.shape[1],
                     sample_rate=None, start_time=None,
                     reader=lambda start, count: read_flat(dataset, start, count), closer=file.close)
