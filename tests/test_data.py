"""Tests of the synthetic RF generator and the raw -> processed preparation (tiny sizes).

Both through their command lines: tests/test_cli.py (the pipeline fixture, file layout checked there); their bad
inputs through the command line: tests/test_bad_input.py.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from src.data import synthetic
from src.data.prep import trim_and_unpack
from src.data.synthetic import FAMILIES, gray_pam_levels, rrc_taps, write_synthetic
from src.errors import UserError

RAW = "interferenceset_frame"


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        return {**{key: file[key][()] for key in file}, "attrs": dict(file.attrs)}


def write_h5(path: Path, **datasets: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        for key, value in datasets.items():
            file.create_dataset(key, data=value)
    return path


def rrc_formula(t: np.ndarray, rolloff: float) -> np.ndarray:
    """The general RRC expression (T = 1), written out independently of the module."""
    b = rolloff
    numerator = np.sin(np.pi * t * (1 - b)) + 4 * b * t * np.cos(np.pi * t * (1 + b))
    return numerator / (np.pi * t * (1 - (4 * b * t) ** 2))


def c42(x: np.ndarray) -> float:
    """Normalised fourth-order cumulant C42: -1 for QPSK, -0.68 for square 16-QAM (scale and phase free)."""
    power = np.mean(np.abs(x) ** 2)
    return float((np.mean(np.abs(x) ** 4) - np.abs(np.mean(x ** 2)) ** 2 - 2 * power ** 2) / power ** 2)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    write_synthetic(root, ["QPSK", "Chirp"], n_frames=10, frame_length=1000, seed=3)
    return root


# ---------------------------------------------------------------------------------------------- physics

def test_rrc_taps_are_symmetric_unit_energy_and_nyquist():
    sps = 8
    taps = rrc_taps(sps, 0.35, 8)
    assert len(taps) == 8 * sps + 1
    np.testing.assert_allclose(taps, taps[::-1], atol=1e-12)
    assert np.sum(taps ** 2) == pytest.approx(1.0)
    raised_cosine = np.convolve(taps, taps)
    centre = len(taps) - 1
    assert raised_cosine[centre] == pytest.approx(1.0)
    at_symbols = raised_cosine[centre + sps::sps]
    assert np.max(np.abs(at_symbols)) < 0.02  # zero ISI up to the truncation of an 8-symbol span
    assert abs(raised_cosine[centre + sps // 2]) > 0.3  # but not zero between symbols


@pytest.mark.parametrize("rolloff", [0.25, 0.35, 0.5])  # 0.25 and 0.5 put taps on t = +-1/(4b)
def test_rrc_taps_match_formula_including_singular_points(rolloff):
    sps, span = 8, 6
    t = (np.arange(span * sps + 1) - span * sps / 2) / sps
    expected = rrc_formula(t + 1e-7, rolloff)  # just beside the removable singularities
    expected /= np.sqrt(np.sum(expected ** 2))
    np.testing.assert_allclose(rrc_taps(sps, rolloff, span), expected, atol=1e-5)


def test_gray_pam_levels_follow_the_gray_table():
    table = {(0, 0): -3, (0, 1): -1, (1, 1): 1, (1, 0): 3}
    bits = np.array(list(table))
    np.testing.assert_array_equal(gray_pam_levels(bits), list(table.values()))
    np.testing.assert_array_equal(gray_pam_levels(np.array([[0], [1]])), [-1, 1])


def test_qpsk_and_qam16_differ_in_fourth_order_cumulant():
    """Matched-filter each clean frame, sample at the best symbol phase, compare C42 with theory."""
    taps = rrc_taps(synthetic.SPS, synthetic.ROLLOFF, synthetic.SPAN)
    for name, expected in [("QPSK", -1.0), ("QAM16", -0.68)]:
        frames = FAMILIES[name](np.random.default_rng(5), 4, 2048)
        for frame in frames:
            matched = np.convolve(frame, taps, mode="valid")
            phases = [matched[k::synthetic.SPS] for k in range(synthetic.SPS)]
            symbols = max(phases, key=lambda samples: np.mean(np.abs(samples) ** 2))
            assert c42(symbols) == pytest.approx(expected, abs=0.08), name


def test_ofdm_has_a_cyclic_prefix():
    frame = FAMILIES["OFDM"](np.random.default_rng(1), 1, 800)[0]
    prefix_starts = [start for start in range(80)
                     if all(np.allclose(frame[s:s + 16], frame[s + 64:s + 80]) for s in range(start, 800 - 80, 80))]
    assert len(prefix_starts) == 1


def test_chirp_is_constant_envelope_within_its_sweep():
    frames = FAMILIES["Chirp"](np.random.default_rng(2), 8, 2048)
    np.testing.assert_allclose(np.abs(frames), 1.0)
    frequency = np.angle(frames[:, 1:] * np.conj(frames[:, :-1])) / (2 * np.pi)
    span = frequency.max(axis=1) - frequency.min(axis=1)
    assert np.all(span >= 0.2 * 0.99) and np.all(span <= 0.8)


def test_gmsk_turns_the_phase_by_a_quarter_cycle_per_symbol():
    frames = FAMILIES["GMSK"](np.random.default_rng(3), 4, 4096)
    np.testing.assert_allclose(np.abs(frames), 1.0)
    step = np.angle(frames[:, 8:] * np.conj(frames[:, :-8]))  # phase change over one symbol (8 samples)
    # A run of equal symbols turns the phase by exactly pi/2; the Gaussian pulse only smooths the turns.
    assert np.abs(step).max() <= np.pi / 2 + 1e-6
    assert np.mean(np.isclose(np.abs(step), np.pi / 2, atol=1e-3)) > 0.05


def test_fm_is_a_narrowband_constant_envelope_carrier():
    frames = FAMILIES["FM"](np.random.default_rng(4), 8, 4096)
    np.testing.assert_allclose(np.abs(frames), 1.0)
    frequency = np.angle(frames[:, 1:] * np.conj(frames[:, :-1])) / (2 * np.pi)
    deviation = frequency - frequency.mean(axis=1, keepdims=True)
    assert np.abs(frequency.mean(axis=1)).max() <= 0.05 + 1e-3
    assert np.abs(deviation).max() <= 2.0 * 0.005 + 1e-6  # beta * f_m at most


@pytest.mark.parametrize("name", list(FAMILIES))
def test_families_have_unit_power_and_no_underscore(name):
    assert "_" not in name
    frames = FAMILIES[name](np.random.default_rng(0), 8, 4096)
    assert frames.shape == (8, 4096)
    assert np.mean(np.abs(frames) ** 2) == pytest.approx(1.0, abs=0.03)


# ---------------------------------------------------------------------------------------------- raw files

def test_write_synthetic_layout(tmp_path):
    paths = write_synthetic(tmp_path, n_frames=3, frame_length=256)
    assert paths == [tmp_path / RAW / f"{name}_raw_data.h5" for name in FAMILIES]
    for name, path in zip(FAMILIES, paths):
        content = read_h5(path)
        assert content["dataset"].dtype == np.complex64
        assert content["dataset"].shape == (3, 256)
        assert content["sig_type"] == name.encode()


def test_write_synthetic_is_deterministic_per_seed_and_family(tmp_path):
    def dataset_bytes(root: Path, name: str) -> bytes:
        return read_h5(root / RAW / f"{name}_raw_data.h5")["dataset"].tobytes()

    write_synthetic(tmp_path / "a", n_frames=2, frame_length=512, seed=7)
    write_synthetic(tmp_path / "b", n_frames=2, frame_length=512, seed=7)
    write_synthetic(tmp_path / "c", n_frames=2, frame_length=512, seed=8)
    write_synthetic(tmp_path / "d", ["QAM16"], n_frames=2, frame_length=512, seed=7)
    for name in FAMILIES:
        assert dataset_bytes(tmp_path / "a", name) == dataset_bytes(tmp_path / "b", name)
        assert dataset_bytes(tmp_path / "a", name) != dataset_bytes(tmp_path / "c", name)
    assert dataset_bytes(tmp_path / "a", "QAM16") == dataset_bytes(tmp_path / "d", "QAM16")


@pytest.mark.parametrize("snr_db", [3.0, 20.0])
def test_measured_power_is_signal_plus_noise(tmp_path, snr_db):
    paths = write_synthetic(tmp_path, n_frames=16, frame_length=4096, snr_db=snr_db)
    expected = 1.0 + 10 ** (-snr_db / 10)
    for path in paths:
        power = np.mean(np.abs(read_h5(path)["dataset"].astype(np.complex128)) ** 2)
        assert power == pytest.approx(expected, rel=0.03), path.name


def test_unknown_family_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="QPSK"):
        write_synthetic(tmp_path, ["BPSK"], n_frames=1, frame_length=16)


# ---------------------------------------------------------------------------------------------- trim/unpack

def test_windows_are_the_raw_samples_split_into_channels(raw_root, tmp_path):
    written = trim_and_unpack(raw_root, tmp_path, trim_length=300, normalize="none")
    raw = read_h5(raw_root / RAW / "QPSK_raw_data.h5")["dataset"]
    for split in ["train", "val", "test"]:
        content = read_h5(tmp_path / RAW / f"QPSK_raw_data_{split}.h5")
        windows, frames = content["dataset"], content["frame_index"]
        assert windows.dtype == np.float32 and windows.shape == (len(frames), 2, 300)
        assert frames.dtype == np.int64
        for row, frame in enumerate(frames):
            position = np.sum(frames[:row] == frame)  # windows of a frame are stored in order
            expected = raw[frame, position * 300:(position + 1) * 300]
            np.testing.assert_array_equal(windows[row, 0], expected.real)
            np.testing.assert_array_equal(windows[row, 1], expected.imag)
    assert len(written) == 6


def test_split_is_by_frame_and_covers_every_frame(raw_root, tmp_path):
    trim_and_unpack(raw_root, tmp_path, trim_length=300, val_split=0.2, test_split=0.2)
    frame_sets = {split: set(read_h5(tmp_path / RAW / f"Chirp_raw_data_{split}.h5")["frame_index"].tolist())
                  for split in ["train", "val", "test"]}
    assert {split: len(frames) for split, frames in frame_sets.items()} == {"train": 6, "val": 2, "test": 2}
    assert set.union(*frame_sets.values()) == set(range(10))
    assert sum(len(frames) for frames in frame_sets.values()) == 10  # so pairwise disjoint
    train_frames = read_h5(tmp_path / RAW / "Chirp_raw_data_train.h5")["frame_index"]
    assert np.all(np.diff(train_frames) >= 0)  # windows ordered by frame
    counts = np.bincount(train_frames)
    assert set(counts[counts > 0]) == {3}  # floor(1000 / 300) windows per frame


def test_rms_normalisation_gives_unit_power_per_window(raw_root, tmp_path):
    trim_and_unpack(raw_root, tmp_path / "rms", trim_length=250, normalize="rms")
    trim_and_unpack(raw_root, tmp_path / "none", trim_length=250, normalize="none")
    scaled = read_h5(tmp_path / "rms" / RAW / "QPSK_raw_data_train.h5")["dataset"].astype(np.float64)
    plain = read_h5(tmp_path / "none" / RAW / "QPSK_raw_data_train.h5")["dataset"].astype(np.float64)
    np.testing.assert_allclose(np.mean(scaled[:, 0] ** 2 + scaled[:, 1] ** 2, axis=1), 1.0, rtol=1e-5)
    gain = np.sqrt(np.mean(plain[:, 0] ** 2 + plain[:, 1] ** 2, axis=1))
    np.testing.assert_allclose(scaled, plain / gain[:, None, None], rtol=1e-5, atol=1e-6)


def test_sig_type_and_attributes_are_kept(raw_root, tmp_path):
    trim_and_unpack(raw_root, tmp_path, trim_length=500, seed=4)
    content = read_h5(tmp_path / RAW / "Chirp_raw_data_val.h5")
    assert content["sig_type"] == b"Chirp"
    attrs = content["attrs"]
    assert attrs["split"] == "val" and attrs["trim_length"] == 500 and attrs["seed"] == 4
    assert attrs["normalize"] == "rms" and attrs["source_file"].endswith("Chirp_raw_data.h5")


def test_missing_sig_type_falls_back_to_the_name_and_subfolders_are_kept(tmp_path):
    frames = (np.ones((4, 64)) + 1j * np.arange(64)).astype(np.complex64)
    write_h5(tmp_path / "raw" / "a" / "b" / "Tone_raw_data.h5", dataset=frames)
    trim_and_unpack(tmp_path / "raw", tmp_path / "out", trim_length=32, test_split=0)
    assert sorted(p.name for p in (tmp_path / "out" / "a" / "b").iterdir()) == [
        "Tone_raw_data_train.h5", "Tone_raw_data_val.h5"]
    assert read_h5(tmp_path / "out" / "a" / "b" / "Tone_raw_data_val.h5")["sig_type"] == b"Tone"


def test_split_is_deterministic_for_a_seed(raw_root, tmp_path):
    def val_frames(seed: int, folder: str) -> list[int]:
        trim_and_unpack(raw_root, tmp_path / folder, trim_length=500, seed=seed)
        return read_h5(tmp_path / folder / RAW / "QPSK_raw_data_val.h5")["frame_index"].tolist()

    assert val_frames(0, "a") == val_frames(0, "b")
    assert val_frames(0, "a") != val_frames(1, "c")


def test_num_samples_caps_windows_in_proportion_keeping_the_first(raw_root, tmp_path):
    trim_and_unpack(raw_root, tmp_path / "all", trim_length=100, normalize="none")
    trim_and_unpack(raw_root, tmp_path / "cap", trim_length=100, normalize="none", num_samples=20)
    sizes = {}
    for split in ["train", "val", "test"]:
        full = read_h5(tmp_path / "all" / RAW / f"QPSK_raw_data_{split}.h5")["dataset"]
        capped = read_h5(tmp_path / "cap" / RAW / f"QPSK_raw_data_{split}.h5")["dataset"]
        np.testing.assert_array_equal(capped, full[:len(capped)])
        sizes[split] = len(capped)
    assert sizes == {"train": 12, "val": 4, "test": 4}  # 60/20/20 windows, capped to 20 in all


@pytest.mark.parametrize("kwargs, message", [
    ({"num_samples": 0}, "--num_samples"),
    ({"test_split": 0.5, "val_split": 0.5}, "below 1"),
    ({"normalize": "peak"}, "--normalize"),
])
def test_bad_options_are_user_errors(raw_root, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        trim_and_unpack(raw_root, tmp_path, trim_length=100, **kwargs)


def test_bad_frames_are_user_errors(tmp_path):
    """All-zero frames and too few frames to split; a NaN frame, an unreadable file and the other bad raw inputs
    through the command line: tests/test_bad_input.py."""
    write_h5(tmp_path / "zero" / "Bad_raw_data.h5", dataset=np.zeros((5, 64), dtype=np.complex64))
    with pytest.raises(UserError, match="all zeros"):
        trim_and_unpack(tmp_path / "zero", tmp_path / "out", trim_length=32)
    write_h5(tmp_path / "few" / "Bad_raw_data.h5", dataset=np.ones((2, 64), dtype=np.complex64))
    with pytest.raises(UserError, match="needs at least 3"):
        trim_and_unpack(tmp_path / "few", tmp_path / "out", trim_length=32)
