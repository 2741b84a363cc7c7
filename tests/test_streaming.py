"""Tests of src.data.streaming: chunked windows equal whole-file windows, in bounded reads (tiny files)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
import sigmf

from src.data.recordings import RecordingTooShort, read_recording
from src.data.streaming import open_recording, window_count
from src.errors import UserError

N_SAMPLES, FRAMES, FRAME = 300, 5, 60
CHUNKS = (1, 7, 1000)  # one window a chunk, a size that does not divide the count, everything at once
SHAPES = ((16, 16), (16, 8), (10, 13), (20, 10))  # (window, hop): back to back, overlapping, skipping,
# and frames of 60 tiled exactly by windows of 20 every 10 (runs read across frame boundaries)


def random_stream(n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n_samples) + 1j * rng.standard_normal(n_samples)).astype(np.complex64)


def expected_windows(frames: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and windows cut by plain slicing of the whole array [frames, L] (a stream is one frame)."""
    offsets, windows = [], []
    for frame, row in enumerate(frames):
        for start in range(0, len(row) - window + 1, hop):
            offsets.append(frame * frames.shape[1] + start)
            windows.append(row[start:start + window])
    return np.array(offsets, np.int64), np.array(windows, np.complex64)


def collect(path: Path, window: int, hop: int, chunk_windows: int) -> tuple[np.ndarray, np.ndarray]:
    with open_recording(path) as recording:
        chunks = list(recording.windows(window, hop, chunk_windows))
    assert all(len(offsets) <= chunk_windows for offsets, _ in chunks)
    assert all(windows.dtype == np.complex64 and offsets.dtype == np.int64 for offsets, windows in chunks)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def assert_streams_like(path: Path, frames: np.ndarray) -> None:
    for window, hop in SHAPES:
        want_offsets, want_windows = expected_windows(frames, window, hop)
        for chunk_windows in CHUNKS:
            offsets, windows = collect(path, window, hop, chunk_windows)
            np.testing.assert_array_equal(offsets, want_offsets)
            np.testing.assert_array_equal(windows, want_windows)


def write_sigmf(folder: Path, name: str, data: bytes, datatype: str, **extra) -> Path:
    data_path = folder / f"{name}.sigmf-data"
    data_path.write_bytes(data)
    recording = sigmf.SigMFFile(global_info={"core:datatype": datatype, "core:sample_rate": 2e6, **extra},
                                data_file=data_path)
    recording.add_capture(0, metadata={"core:datetime": "2024-05-01T12:30:00.250Z"})
    recording.tofile(folder / name)
    return folder / f"{name}.sigmf-meta"


def write_h5(path: Path, frames: np.ndarray) -> Path:
    with h5py.File(path, "w") as file:
        file["dataset"] = frames
    return path


# --------------------------------------------------------------------------------------------------
# Same windows as a whole-file read, for every format and chunk size
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("datatype", ["cf32_le", "cf64_be", "ci16_le", "ci16_be", "ci32_le", "ci8", "cu8"])
def test_sigmf_windows_equal_whole_file_read(tmp_path, datatype):
    rng = np.random.default_rng(1)
    info = sigmf.sigmffile.dtype_info(datatype)
    if info["is_fixedpoint"]:
        limits = np.iinfo(info["component_dtype"])
        data = rng.integers(limits.min, limits.max, 2 * N_SAMPLES, endpoint=True).astype(info["component_dtype"])
    else:
        data = random_stream(N_SAMPLES).view(np.float32).astype(info["component_dtype"])
    meta = write_sigmf(tmp_path, "rec", data.tobytes(), datatype)
    whole = read_recording(meta, N_SAMPLES)[0]  # the whole-file read, as one frame
    assert_streams_like(meta, whole)
    with open_recording(meta) as recording:
        assert recording.n_samples == N_SAMPLES and recording.frame_length is None


def test_npy_stream_frames_and_pairs_equal_slicing(tmp_path):
    stream = random_stream(N_SAMPLES)
    np.save(tmp_path / "stream.npy", stream)
    assert_streams_like(tmp_path / "stream.npy", stream[None])
    frames = stream.reshape(FRAMES, FRAME)
    np.save(tmp_path / "frames.npy", frames.astype(np.complex128))
    assert_streams_like(tmp_path / "frames.npy", frames)
    pairs = np.stack([frames.real, frames.imag], axis=-1)
    np.save(tmp_path / "pairs.npy", pairs)
    assert_streams_like(tmp_path / "pairs.npy", frames)
    np.save(tmp_path / "stream_pairs.npy", pairs.reshape(-1, 2))
    assert_streams_like(tmp_path / "stream_pairs.npy", stream[None])


def test_h5_frames_equal_slicing_and_read_recording(tmp_path):
    frames = random_stream(N_SAMPLES).reshape(FRAMES, FRAME)
    path = write_h5(tmp_path / "Tone_raw_data.h5", frames)
    assert_streams_like(path, frames)
    np.testing.assert_array_equal(read_recording(path)[0], frames)
    with open_recording(path) as recording:
        assert (recording.n_samples, recording.frame_length) == (N_SAMPLES, FRAME)


# --------------------------------------------------------------------------------------------------
# Offsets: overlap, skip, frames
# --------------------------------------------------------------------------------------------------

def test_half_hop_overlaps_and_long_hop_skips(tmp_path):
    stream = np.arange(40, dtype=np.complex64)
    np.save(tmp_path / "ramp.npy", stream)
    offsets, windows = collect(tmp_path / "ramp.npy", 8, 4, 3)
    np.testing.assert_array_equal(offsets, np.arange(0, 33, 4))
    np.testing.assert_array_equal(windows[1, :4], windows[0, 4:])  # the second window overlaps the first by half
    offsets, windows = collect(tmp_path / "ramp.npy", 8, 12, 2)
    np.testing.assert_array_equal(offsets, [0, 12, 24])
    np.testing.assert_array_equal(windows.real[:, 0], [0, 12, 24])
    assert window_count(40, 8, 12) == 3 and window_count(7, 8, 1) == 0


def test_windows_never_straddle_frames(tmp_path):
    frames = np.arange(3 * 10, dtype=np.complex64).reshape(3, 10)
    np.save(tmp_path / "frames.npy", frames)
    offsets, windows = collect(tmp_path / "frames.npy", 4, 3, 4)
    np.testing.assert_array_equal(offsets, [0, 3, 6, 10, 13, 16, 20, 23, 26])
    assert (windows.real // 10 == (offsets // 10)[:, None]).all()  # every sample from the window's own frame


def test_sigmf_sample_rate_and_start_time(tmp_path):
    meta = write_sigmf(tmp_path, "rec", random_stream(64).tobytes(), "cf32_le")
    with open_recording(meta) as recording:
        assert recording.sample_rate == 2e6
        assert recording.start_time == datetime(2024, 5, 1, 12, 30, 0, 250000, tzinfo=timezone.utc)
    np.save(tmp_path / "plain.npy", random_stream(64))
    with open_recording(tmp_path / "plain.npy") as recording:
        assert recording.sample_rate is None and recording.start_time is None


# --------------------------------------------------------------------------------------------------
# Bounded memory
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window, hop", SHAPES)
def test_reads_stay_within_a_chunk(tmp_path, monkeypatch, window, hop):
    frames = random_stream(N_SAMPLES).reshape(FRAMES, FRAME)
    chunk_windows = 3
    for path in (write_h5(tmp_path / "x_raw_data.h5", frames), tmp_path / "stream.npy"):
        np.save(tmp_path / "stream.npy", frames.reshape(-1))
        with open_recording(path) as recording:
            sizes = []
            whole_read = recording.read

            def counting_read(start, count, whole_read=whole_read, sizes=sizes):
                sizes.append(count)
                return whole_read(start, count)

            monkeypatch.setattr(recording, "read", counting_read)
            n_chunks = sum(1 for _ in recording.windows(window, hop, chunk_windows))
        assert n_chunks > 1 and max(sizes) <= chunk_windows * window
        if hop > window:
            assert max(sizes) == window  # skipped samples are never read


def test_npy_is_memory_mapped(tmp_path, monkeypatch):
    np.save(tmp_path / "stream.npy", random_stream(N_SAMPLES))
    modes = []
    real_load = np.load

    def spying_load(*args, **kwargs):
        modes.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spying_load)
    with open_recording(tmp_path / "stream.npy") as recording:
        next(recording.windows(16, 16))
    assert modes == ["r"]


# --------------------------------------------------------------------------------------------------
# Bad input: one clear line naming the file
# --------------------------------------------------------------------------------------------------

def assert_user_error(path: Path, call, *fragments: str, kind: type = UserError) -> None:
    with pytest.raises(kind) as caught:
        call()
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_window_hop_and_short_recordings(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, random_stream(20))
    with open_recording(path) as recording:
        assert_user_error(path, lambda: recording.windows(16, 0), "hop")
        assert_user_error(path, lambda: recording.windows(0, 4), "window")
        assert_user_error(path, lambda: recording.windows(16, 4, chunk_windows=0), "chunk_windows")
        assert_user_error(path, lambda: recording.windows(32, 4), "shorter than one window",
                          kind=RecordingTooShort)
    frames_path = write_h5(tmp_path / "f_raw_data.h5", random_stream(40).reshape(4, 10))
    with open_recording(frames_path) as recording:
        assert_user_error(frames_path, lambda: recording.windows(16, 16), "frames of 10 samples")


def test_bad_sigmf_inputs(tmp_path):
    real = write_sigmf(tmp_path, "real", np.zeros(8, np.float32).tobytes(), "rf32_le")
    assert_user_error(real, lambda: open_recording(real), "real-valued")
    two = write_sigmf(tmp_path, "two", random_stream(8).tobytes(), "cf32_le", **{"core:num_channels": 2})
    assert_user_error(two, lambda: open_recording(two), "2 channels")
    missing = write_sigmf(tmp_path, "missing", random_stream(8).tobytes(), "cf32_le")
    (tmp_path / "missing.sigmf-data").unlink()
    assert_user_error(missing, lambda: open_recording(missing), "missing")


def test_bad_npy_h5_and_suffix(tmp_path):
    np.save(tmp_path / "cube.npy", random_stream(8).reshape(2, 2, 2))
    assert_user_error(tmp_path / "cube.npy", lambda: open_recording(tmp_path / "cube.npy"), "shape")
    np.save(tmp_path / "real.npy", np.zeros((4, 3)))
    assert_user_error(tmp_path / "real.npy", lambda: open_recording(tmp_path / "real.npy"), "not complex")
    real_h5 = write_h5(tmp_path / "r_raw_data.h5", np.zeros((2, 8), np.float32))
    assert_user_error(real_h5, lambda: open_recording(real_h5), "not complex")
    assert_user_error(tmp_path / "x.wav", lambda: open_recording(tmp_path / "x.wav"), "not a recording")


def test_nan_samples_are_refused_with_their_offset(tmp_path):
    stream = random_stream(64)
    stream[37] = np.nan
    np.save(tmp_path / "nan.npy", stream)
    with open_recording(tmp_path / "nan.npy") as recording:
        assert_user_error(tmp_path / "nan.npy", lambda: list(recording.windows(16, 16)), "sample 37")
