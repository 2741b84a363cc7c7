"""Tests of the SigMF and .npy raw inputs of signal_trim_and_unpack (tiny recordings)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import sigmf

from conftest import assert_one_line_error, run_cli
from src.data.prep import trim_and_unpack
from src.data.recordings import read_recording
from src.errors import UserError

FRAME, TRIM, N_FRAMES = 64, 32, 10
SPLITS = ("train", "val", "test")
RFOOD_EXTENSION = {"name": "rfood", "version": "1.0.0", "optional": True}


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        return {key: file[key][()] for key in file}


def random_stream(n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n_samples) + 1j * rng.standard_normal(n_samples)).astype(np.complex64)


def write_sigmf_bytes(folder: Path, name: str, data: bytes, datatype: str, label: str | None = None,
                      extra_global: dict | None = None) -> Path:
    """A .sigmf-data file holding ``data`` and its .sigmf-meta, written by the sigmf package."""
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / f"{name}.sigmf-data"
    data_path.write_bytes(data)
    recording = sigmf.SigMFFile(global_info={"core:datatype": datatype, "core:sample_rate": 1e6,
                                             **(extra_global or {})}, data_file=data_path)
    recording.add_capture(0)
    if label is not None:
        recording.add_annotation(0, length=8, metadata={"core:label": label})
    recording.tofile(folder / name)
    return folder / f"{name}.sigmf-meta"


def run_prep(data_root: Path, out: Path, *flags: str, check: bool = True):
    return run_cli("src/data/signal_trim_and_unpack.py", f"--data_root={data_root}", f"--new_data_root={out}",
                   f"--trim_length={TRIM}", f"--frame_length={FRAME}", *flags, check=check)


def assert_windows_are_frames(folder: Path, stem: str, frames: np.ndarray) -> bytes:
    """Each split's windows are the given frames cut into TRIM-sample windows; every frame used once."""
    seen = []
    for split in SPLITS:
        content = read_h5(folder / f"{stem}_{split}.h5")
        windows, frame_index = content["dataset"], content["frame_index"]
        assert len(windows) == len(frame_index) > 0
        for row, frame in enumerate(frame_index):
            position = np.sum(frame_index[:row] == frame)
            expected = frames[frame, position * TRIM:(position + 1) * TRIM]
            np.testing.assert_array_equal(windows[row, 0], expected.real.astype(np.float32))
            np.testing.assert_array_equal(windows[row, 1], expected.imag.astype(np.float32))
        seen += np.unique(frame_index).tolist()
    assert sorted(seen) == list(range(len(frames)))
    return content["sig_type"]


# ---------------------------------------------------------------------------------------------- SigMF

def test_sigmf_cf32_round_trip_cuts_the_stream_into_frames(tmp_path):
    stream = random_stream(N_FRAMES * FRAME + 17)  # the 17-sample tail is dropped
    recording = sigmf.fromarray(stream)
    recording.add_annotation(0, length=FRAME, metadata={"core:label": "Tone"})
    (tmp_path / "raw").mkdir()
    recording.tofile(tmp_path / "raw" / "capture")
    trim_and_unpack(tmp_path / "raw", tmp_path / "out", trim_length=TRIM, normalize="none", frame_length=FRAME)
    frames = stream[:N_FRAMES * FRAME].reshape(N_FRAMES, FRAME)
    assert assert_windows_are_frames(tmp_path / "out", "capture_raw_data", frames) == b"Tone"


def test_sigmf_ci16_round_trip_via_cli_is_scaled_and_named_after_the_file(tmp_path):
    pairs = np.random.default_rng(1).integers(-2000, 2000, (N_FRAMES * FRAME, 2)).astype("<i2")
    write_sigmf_bytes(tmp_path / "raw" / "site", "Burst_0001", pairs.tobytes(), "ci16_le")
    run_prep(tmp_path / "raw", tmp_path / "out", "--normalize=none")
    frames = ((pairs[:, 0] + 1j * pairs[:, 1]) / 2 ** 15).reshape(N_FRAMES, FRAME)
    assert assert_windows_are_frames(tmp_path / "out" / "site", "Burst_0001_raw_data", frames) == b"Burst"


@pytest.mark.parametrize("datatype, component, scale", [
    ("cf32_le", "<f4", 1.0), ("cf32_be", ">f4", 1.0), ("cf64_le", "<f8", 1.0), ("ci8", "i1", 2.0 ** -7),
    ("ci16_le", "<i2", 2.0 ** -15), ("ci16_be", ">i2", 2.0 ** -15), ("ci32_le", "<i4", 2.0 ** -31),
])
def test_sigmf_datatypes_read_as_scaled_complex(tmp_path, datatype, component, scale):
    pairs = np.random.default_rng(2).integers(-100, 100, (3 * FRAME, 2))
    meta = write_sigmf_bytes(tmp_path, "X", pairs.astype(component).tobytes(), datatype)
    frames, _, stem = read_recording(meta, FRAME)
    expected = ((pairs[:, 0] + 1j * pairs[:, 1]) * scale).reshape(3, FRAME)
    np.testing.assert_allclose(frames, expected, rtol=1e-6)
    assert stem == "X_raw_data"


def test_sigmf_sig_type_key_wins_over_the_annotation_label(tmp_path):
    meta = write_sigmf_bytes(tmp_path, "X", random_stream(3 * FRAME).tobytes(), "cf32_le", label="Label",
                             extra_global={"rfood:sig_type": "QPSK", "core:extensions": [RFOOD_EXTENSION]})
    assert read_recording(meta, FRAME)[1] == b"QPSK"


# ---------------------------------------------------------------------------------------------- npy

def test_npy_inputs_give_the_same_windows_as_h5(tmp_path):
    frames = random_stream(N_FRAMES * FRAME, seed=3).reshape(N_FRAMES, FRAME)
    (tmp_path / "h5").mkdir()
    with h5py.File(tmp_path / "h5" / "Tone_raw_data.h5", "w") as file:
        file["dataset"] = frames
    inputs = {"npy2d": frames, "npy1d": frames.reshape(-1),
              "pairs": np.stack([frames.real, frames.imag], axis=-1)}
    for folder, array in inputs.items():
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "Tone.npy", array)
    outputs = {}
    for folder in ["h5", *inputs]:
        trim_and_unpack(tmp_path / folder, tmp_path / "out" / folder, trim_length=TRIM, frame_length=FRAME, seed=5)
        outputs[folder] = {split: read_h5(tmp_path / "out" / folder / f"Tone_raw_data_{split}.h5") for split in SPLITS}
    for folder in inputs:
        for split in SPLITS:
            for key in ("dataset", "frame_index", "sig_type"):
                np.testing.assert_array_equal(outputs[folder][split][key], outputs["h5"][split][key])


def test_inputs_writing_the_same_files_are_refused(tmp_path):
    np.save(tmp_path / "Tone.npy", random_stream(3 * FRAME))
    with h5py.File(tmp_path / "Tone_raw_data.h5", "w") as file:
        file["dataset"] = random_stream(3 * FRAME).reshape(3, FRAME)
    with pytest.raises(UserError, match=r"Tone.npy and \S*Tone_raw_data.h5 would both be written as Tone_raw_data_"):
        trim_and_unpack(tmp_path, tmp_path / "out", trim_length=TRIM, frame_length=FRAME)


# ---------------------------------------------------------------------------------------------- bad inputs

# Each bad recording (a real-valued, truncated, short, checksum-failing or unreadable SigMF recording, one whose
# data file is missing, a real, short or object .npy) is a case of tests/test_bad_input.py.

def test_an_empty_root_names_all_accepted_kinds(tmp_path):
    (tmp_path / "raw").mkdir()
    result = run_prep(tmp_path / "raw", tmp_path / "out", check=False)
    assert_one_line_error(result, "_raw_data.h5", ".sigmf-meta", ".npy")
