"""Tests of the synthetic generator's SNR ranges, RRC knobs, near-OOD QPSK variants and QAM neighbours (tiny sizes).

Expected values come from the physics (raised-cosine spectra, IQ-imbalance and Wiener phase-noise
formulas, the constellations' cumulants), written out here independently of the module.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pytest

from src.data.synthetic import (
    BASE_SHAPING,
    FAMILIES,
    Shaping,
    apply_impairments,
    apsk16_symbols,
    cross_qam32_symbols,
    family_seed,
    gray_qam_symbols,
    psk_symbols,
    rrc_taps,
    write_synthetic,
)
from src.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
RAW = "interferenceset_frame"
NEW_FAMILIES = ["PSK8", "QPSKro20", "QPSKsr", "QPSKpn", "QPSKiq", "QPSKcw"]
QAM_NEIGHBOURS = ["QAM32", "QAM64", "APSK16", "PSK16"]

# sha256 of `dataset` from write_synthetic(n_frames=3, frame_length=512, seed=11) with default flags,
# recorded before SNR ranges, --sps/--rolloff and the QPSK variants existed: pins the pre-existing streams.
PINNED_DEFAULT = {
    "QPSK": "b2428f5fe623befe897ef8d2dd4dfb24599abbcf87d1e16c7cd0bcf254daea0b",
    "QAM16": "3d8ff0b68adabd6cadb80b36afcad563cdf986bc84e35450c6148cd5272b18bf",
    "OFDM": "a95be1d08c901723762fb590a3aaa8ea38517291c40f8970dbf9a5d4802cd314",
    "Chirp": "8e0ea7c64acdf8d5f0c767b5a8a1242beceaeb4adf7b31c28cc5b5d4c41b8331",
    "GMSK": "7cf54b4d3ad21e961e7c88c5c48eaccd4e538ce9bfa800f2f4efdf840c120fc7",
    "FM": "dbabb5d538983259ca46effb5ed15a3ca9267ad8e1273781263964eb6bed94d4",
}
# The same, pre-existing too, for n_frames=2, frame_length=300, seed=5, snr_db=7.5, cfo_max=0.
PINNED_QPSK_SNR_7_5_NO_CFO = "ef1686c72f8849c3aad49a2ae6c6942932eb0cadd85db5cfd50da7d144e64adf"


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        return {**{key: file[key][()] for key in file}, "attrs": dict(file.attrs)}


def dataset_sha256(path: Path) -> str:
    return hashlib.sha256(read_h5(path)["dataset"].tobytes()).hexdigest()


def clean(name: str, n_frames: int, frame_length: int, seed: int = 0, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    return FAMILIES[name](np.random.default_rng(seed), n_frames, frame_length, shaping)


def run_synthetic_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src.data.synthetic", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def welch_psd(frames: np.ndarray, segment: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed, half-overlapping averaged periodogram; (frequencies, psd), both sorted by frequency."""
    pieces = np.lib.stride_tricks.sliding_window_view(frames, segment, axis=-1)[..., ::segment // 2, :]
    power = np.mean(np.abs(np.fft.fft(pieces * np.hanning(segment), axis=-1)) ** 2, axis=(0, 1))
    return np.fft.fftshift(np.fft.fftfreq(segment)), np.fft.fftshift(power)


def occupied_bandwidth(frequencies: np.ndarray, psd: np.ndarray, fraction: float = 0.99) -> float:
    """Width of the band holding ``fraction`` of the power, (1 - fraction) / 2 left out on each side."""
    cumulative = np.cumsum(psd) / np.sum(psd)
    tail = (1 - fraction) / 2
    return float(frequencies[np.searchsorted(cumulative, 1 - tail)] - frequencies[np.searchsorted(cumulative, tail)])


def raised_cosine_bandwidth(sps: int, rolloff: float, fraction: float = 0.99) -> float:
    """99 % bandwidth of the raised-cosine spectrum (the PSD of RRC-shaped random symbols), in cycles/sample."""
    frequencies = np.linspace(-0.5, 0.5, 200_001)
    flat_edge, band_edge = (1 - rolloff) / (2 * sps), (1 + rolloff) / (2 * sps)
    distance = np.abs(frequencies)
    transition = 0.5 * (1 + np.cos(np.pi * sps / rolloff * (distance - flat_edge)))
    spectrum = np.where(distance <= flat_edge, 1.0, np.where(distance <= band_edge, transition, 0.0))
    return occupied_bandwidth(frequencies, spectrum, fraction)


def measured_bandwidth(name: str, shaping: Shaping = BASE_SHAPING) -> float:
    return occupied_bandwidth(*welch_psd(clean(name, 8, 4096, shaping=shaping)))


# ---------------------------------------------------------------------------------------------- unchanged streams

def test_default_cli_files_keep_the_pre_existing_streams(tmp_path):
    done = run_synthetic_cli("--out", str(tmp_path), "--n_frames", "3", "--frame_length", "512", "--seed", "11",
                             "--families", "QPSK,FM")
    assert done.returncode == 0, done.stderr
    for name in ["QPSK", "FM"]:
        assert dataset_sha256(tmp_path / RAW / f"{name}_raw_data.h5") == PINNED_DEFAULT[name], name


def test_pre_existing_families_are_byte_identical(tmp_path):
    paths = write_synthetic(tmp_path / "a", list(PINNED_DEFAULT), n_frames=3, frame_length=512, seed=11)
    assert {path.name.split("_")[0]: dataset_sha256(path) for path in paths} == PINNED_DEFAULT
    [path] = write_synthetic(tmp_path / "b", ["QPSK"], n_frames=2, frame_length=300, seed=5, snr_db=7.5, cfo_max=0.0)
    assert dataset_sha256(path) == PINNED_QPSK_SNR_7_5_NO_CFO


# ---------------------------------------------------------------------------------------------- SNR

def test_single_snr_is_recorded_per_frame_and_as_attribute(tmp_path):
    [path] = write_synthetic(tmp_path, ["FM"], n_frames=4, frame_length=64, snr_db=12.5, sps=8, rolloff=0.35)
    content = read_h5(path)
    assert content["snr_db"].dtype == np.float32
    np.testing.assert_array_equal(content["snr_db"], np.full(4, 12.5, dtype=np.float32))
    assert content["attrs"]["snr_db"] == 12.5
    assert (content["attrs"]["sps"], content["attrs"]["rolloff"]) == (8, 0.35)


def test_apply_impairments_gives_each_frame_its_own_noise_power():
    snrs = np.array([0.0, 10.0, 20.0])
    noise = apply_impairments(np.random.default_rng(0), np.zeros((3, 16384), dtype=complex), snrs, cfo_max=0.0)
    np.testing.assert_allclose(np.mean(np.abs(noise) ** 2, axis=1), 10 ** (-snrs / 10), rtol=0.04)


def test_snr_range_draws_each_frame_and_leaves_the_signal_alone(tmp_path):
    """The noiseless (SNR = inf) file of the same seed is the signal; the difference is the noise alone."""
    lo, hi = -5.0, 5.0
    [ranged] = write_synthetic(tmp_path / "range", ["QPSK"], n_frames=8, frame_length=8192, snr_db=(lo, hi), seed=2)
    [noiseless] = write_synthetic(tmp_path / "clean", ["QPSK"], n_frames=8, frame_length=8192, snr_db=np.inf, seed=2)
    content = read_h5(ranged)
    recorded = content["snr_db"]
    assert recorded.dtype == np.float32 and recorded.shape == (8,)
    assert np.all((recorded >= lo) & (recorded <= hi)) and np.ptp(recorded) > 2.0
    np.testing.assert_array_equal(content["attrs"]["snr_db"], [lo, hi])
    noise = content["dataset"].astype(complex) - read_h5(noiseless)["dataset"].astype(complex)
    measured = -10 * np.log10(np.mean(np.abs(noise) ** 2, axis=1))
    np.testing.assert_allclose(measured, recorded, atol=0.25)


@pytest.mark.parametrize("bad", ["20:0", "a:b", "1:2:3"])
def test_bad_snr_range_is_one_argparse_error(tmp_path, bad):
    done = run_synthetic_cli("--out", str(tmp_path), "--n_frames", "1", "--frame_length", "16", f"--snr_db={bad}")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error:") and "--snr_db" in done.stderr
    assert not (tmp_path / RAW).exists()


def test_write_synthetic_refuses_bad_snr_and_shaping(tmp_path):
    for kwargs, match in [({"snr_db": (3.0, 1.0)}, "LO <= HI"), ({"snr_db": float("nan")}, "nan"),
                          ({"sps": 1}, "--sps"), ({"rolloff": 0.0}, "--rolloff")]:
        with pytest.raises(UserError, match=match):
            write_synthetic(tmp_path, ["QPSK"], n_frames=1, frame_length=16, **kwargs)


# ---------------------------------------------------------------------------------------------- the variants

@pytest.mark.parametrize("name", NEW_FAMILIES)
def test_variants_have_unit_power_and_no_underscore(name):
    assert "_" not in name and list(FAMILIES)[:6] == list(PINNED_DEFAULT)
    assert np.mean(np.abs(clean(name, 8, 4096)) ** 2) == pytest.approx(1.0, abs=0.03)


def best_symbol_samples(frame: np.ndarray, sps: int = 8, rolloff: float = 0.35) -> np.ndarray:
    """Matched-filter a noiseless frame and keep the sample phase of highest power: the symbols."""
    matched = np.convolve(frame, rrc_taps(sps, rolloff, 8), mode="valid")
    return max((matched[k::sps] for k in range(sps)), key=lambda samples: np.mean(np.abs(samples) ** 2))


@pytest.mark.parametrize("name, n_phases", [("PSK8", 8), ("QPSK", 4)])
def test_psk8_has_eight_equal_phases_where_qpsk_has_four(name, n_phases):
    symbols = np.concatenate([best_symbol_samples(frame) for frame in clean(name, 4, 4096, seed=6)])
    step = 2 * np.pi / 8
    nearest = np.round(np.angle(symbols) / step)
    assert np.max(np.abs(np.angle(symbols) - nearest * step)) < 0.1  # all on the 8-PSK grid (ISI only)
    share = np.bincount(nearest.astype(int) % 8, minlength=8) / len(symbols)
    assert np.sum(share > 0.08) == n_phases  # 8-PSK uses all 8 (1/8 each), QPSK only the odd 4
    assert np.std(np.abs(symbols)) / np.mean(np.abs(symbols)) < 0.05  # constant symbol energy


def test_rolloff20_narrows_the_spectrum_edge_as_the_raised_cosine_says():
    base, narrow = measured_bandwidth("QPSK"), measured_bandwidth("QPSKro20")
    assert base == pytest.approx(raised_cosine_bandwidth(8, 0.35), rel=0.02)
    assert narrow == pytest.approx(raised_cosine_bandwidth(8, 0.20), rel=0.02)
    assert narrow < 0.95 * base


def test_lower_symbol_rate_shrinks_the_spectrum_to_four_fifths():
    assert measured_bandwidth("QPSKsr") / measured_bandwidth("QPSK") == pytest.approx(8 / 10, abs=0.02)


def test_variants_follow_the_base_shaping():
    """--sps 4: QPSK widens to the sps-4 raised cosine, QPSKsr to sps 5 (5/4 of the base), QPSKro20 keeps 0.20."""
    base = Shaping(sps=4, rolloff=0.5)
    assert measured_bandwidth("QPSK", base) == pytest.approx(raised_cosine_bandwidth(4, 0.5), rel=0.02)
    assert measured_bandwidth("QPSKsr", base) == pytest.approx(raised_cosine_bandwidth(5, 0.5), rel=0.02)
    assert measured_bandwidth("QPSKro20", base) == pytest.approx(raised_cosine_bandwidth(4, 0.2), rel=0.02)


def normalised_c20(frames: np.ndarray) -> float:
    """|E[x^2]| / E|x|^2: 0 for a circular signal such as QPSK, the image strength under IQ imbalance."""
    return float(np.abs(np.mean(frames ** 2)) / np.mean(np.abs(frames) ** 2))


def test_iq_imbalance_makes_the_signal_improper():
    """y = I + j g (Q cos t - I sin t) with E[I^2] = E[Q^2], E[IQ] = 0 gives
    |C20| / C21 = |1 - g^2 - 2 j g sin t| / (1 + g^2)."""
    gain, skew = 10 ** (1.0 / 20), np.deg2rad(5.0)
    expected = abs(1 - gain ** 2 - 2j * gain * np.sin(skew)) / (1 + gain ** 2)  # 0.144
    assert normalised_c20(clean("QPSKiq", 64, 8192, seed=1)) == pytest.approx(expected, abs=0.015)
    assert normalised_c20(clean("QPSK", 64, 8192, seed=1)) < 0.015


def fourth_power_line(frames: np.ndarray) -> float:
    """Mean over frames of |frame mean of x^4|^2: the power of the QPSK carrier line that x^4 recovers."""
    return float(np.mean(np.abs(np.mean(frames ** 4, axis=1)) ** 2))


def test_phase_noise_keeps_power_and_spectrum_but_spreads_the_fourth_power_line():
    """x^4 turns the Wiener phase (step std s) into one of step std 4 s; over N samples the line keeps the
    coherent fraction (1 / N) (1 + r) / (1 - r), r = exp(-8 s^2), of its power (0.024 for s = 0.05, N = 4096)."""
    base, noisy = clean("QPSK", 16, 4096, seed=4), clean("QPSKpn", 16, 4096, seed=4)
    assert np.mean(np.abs(noisy) ** 2) == pytest.approx(np.mean(np.abs(base) ** 2), rel=0.02)
    assert occupied_bandwidth(*welch_psd(noisy)) == pytest.approx(occupied_bandwidth(*welch_psd(base)), rel=0.03)
    r = np.exp(-8 * 0.05 ** 2)
    coherent = (1 + r) / (1 - r) / 4096
    assert fourth_power_line(noisy) / fourth_power_line(base) == pytest.approx(coherent, rel=0.5)


def tone_search(frame: np.ndarray, zero_pad: int = 4) -> tuple[float, float, float]:
    """(peak frequency, peak power as a tone's power, peak over median in-band periodogram) of a Hann periodogram."""
    window = np.hanning(len(frame))
    spectrum = np.abs(np.fft.fft(frame * window, zero_pad * len(frame))) ** 2
    frequencies = np.fft.fftfreq(len(spectrum))
    in_band = np.abs(frequencies) <= (1 - 0.35) / 16
    peak = np.argmax(np.where(in_band, spectrum, 0.0))
    return frequencies[peak], spectrum[peak] / np.sum(window) ** 2, spectrum[peak] / np.median(spectrum[in_band])


def test_tone_stands_out_15_db_below_the_qpsk():
    """The QPSK's own DFT at the tone frequency adds to the peak with random phase (+-1.3 dB per 16384-sample
    frame), so the tone's power is averaged over frames before comparing it with -15 dB."""
    found = [tone_search(frame) for frame in clean("QPSKcw", 8, 16384, seed=8)]
    assert all(abs(frequency) <= (1 - 0.35) / 16 and contrast > 20 for frequency, _, contrast in found)
    power = np.mean([power for _, power, _ in found])
    assert 10 * np.log10(power / (1 - power)) == pytest.approx(-15.0, abs=1.0)
    assert all(tone_search(frame)[2] < 20 for frame in clean("QPSK", 8, 16384, seed=8))


# ---------------------------------------------------------------------------------------------- QAM neighbours

SYMBOL_SOURCES = {
    "QAM16": partial(gray_qam_symbols, bits_per_axis=2),  # the in-distribution constellation, as a control
    "QAM32": cross_qam32_symbols,
    "QAM64": partial(gray_qam_symbols, bits_per_axis=3),
    "APSK16": apsk16_symbols,
    "PSK16": partial(psk_symbols, order=16),
}

# Closed-form (C40 / C21^2, C42 / C21^2), by hand from each definition. For a zero-mean s with E s^2 = 0 (true
# of all five: x^2 - y^2 and xy cancel over each constellation's symmetries) C40 = E s^4 and
# C42 = E|s|^4 - 2 (E|s|^2)^2. Square QAMs use the level sums over one axis; s^4 = x^4 - 6 x^2 y^2 + y^4
# + 4 j x y (x^2 - y^2), whose imaginary part sums to zero.
#   16-QAM, levels +-1, +-3 (4 per axis, 16 points): sum x^2 = 20, sum x^4 = 164.
#     E|s|^2 = 2 * 20 / 4 = 10, E|s|^4 = (2*4*164 + 2*20^2) / 16 = 132, E s^4 = (2*4*164 - 6*20^2) / 16 = -68:
#     C40 = -68 / 100 = -0.68, C42 = 132 / 100 - 2 = -0.68.
#   32-QAM cross: the 6x6 grid of +-1, +-3, +-5 (sum x^2 = 70, sum x^4 = 1414 over the 6 levels) minus its
#     4 corners (+-5, +-5), each with |s|^2 = 50, |s|^4 = 2500 and s^4 = (5 + 5j)^4 = (50j)^2 = -2500:
#     sum |s|^2 = 2*6*70 - 4*50 = 640                          -> E|s|^2 = 640 / 32 = 20,
#     sum |s|^4 = 2*6*1414 + 2*70^2 - 4*2500 = 16768           -> E|s|^4 = 16768 / 32 = 524,
#     sum s^4  = 2*6*1414 - 6*70^2 - 4*(-2500) = -2432         -> E s^4 = -2432 / 32 = -76:
#     C40 = -76 / 400 = -0.19, C42 = 524 / 400 - 2 = -0.69 (C40 is not -0.69: the cross loses the
#     corners, whose s^4 is the most negative).
#   64-QAM, levels +-1 .. +-7 (8 per axis, 64 points): sum x^2 = 168, sum x^4 = 6216.
#     E|s|^2 = 2 * 168 / 8 = 42, E|s|^4 = (2*8*6216 + 2*168^2) / 64 = 2436, E s^4 = (2*8*6216 - 6*168^2) / 64
#     = -1092: C40 = -1092 / 42^2 = -13/21, C42 = 2436 / 42^2 - 2 = 29/21 - 2 = -13/21 (-0.6190476).
#   16-APSK, 4 + 12 points, r2 = 2.57 r1 and (4 r1^2 + 12 r2^2) / 16 = 1: the inner points pi/4 + k pi/2
#     have s^4 = r1^4 e^{j pi} = -r1^4, the outer points' fourth powers r2^4 e^{j (pi/3 + 2 pi k / 3)} sum to
#     zero, so E s^4 = -4 r1^4 / 16 and E|s|^4 = (4 r1^4 + 12 r2^4) / 16.
#   16-PSK: s^4 = e^{j pi k / 2} is uniform on 4 points, E s^4 = 0; |s| = 1: C40 = 0, C42 = 1 - 2 = -1.
APSK_GAMMA = 2.57
APSK_R1_SQUARED = 16 / (4 + 12 * APSK_GAMMA ** 2)  # 0.19217
EXPECTED_CUMULANTS = {
    "QAM16": (-0.68, -0.68),
    "QAM32": (-76 / 400, 524 / 400 - 2),
    "QAM64": (-13 / 21, -13 / 21),
    "APSK16": (-4 * APSK_R1_SQUARED ** 2 / 16,  # -0.00923
               (4 * APSK_R1_SQUARED ** 2 + 12 * (APSK_GAMMA ** 2 * APSK_R1_SQUARED) ** 2) / 16 - 2),  # -0.78246
    "PSK16": (0.0, -1.0),
}
N_SYMBOLS = 200_000
# Sampling error: the mean of s^4 over N symbols has std sqrt((E|s|^8 - |E s^4|^2) / N), below
# sqrt(4 / 200000) = 0.0045 for all five (E|s|^8 at unit power is at most 3.96, 64-QAM's); C42's is
# smaller (30 seeds: std 0.0014-0.0027 for C40, at most 0.0011 for C42). 0.02 is over 4 of the bound's
# standard errors, and still splits 64-QAM (-0.619) from the in-distribution 16-QAM (-0.68).
CUMULANT_TOLERANCE = 0.02


def normalised_cumulants(symbols: np.ndarray) -> tuple[complex, float]:
    """Sample (C40 / C21^2, C42 / C21^2): C40 = M40 - 3 M20^2, C42 = M42 - |M20|^2 - 2 M21^2 (zero-mean symbols)."""
    m20, m21 = np.mean(symbols ** 2), np.mean(np.abs(symbols) ** 2)
    m40, m42 = np.mean(symbols ** 4), np.mean(np.abs(symbols) ** 4)
    return (m40 - 3 * m20 ** 2) / m21 ** 2, float((m42 - abs(m20) ** 2 - 2 * m21 ** 2) / m21 ** 2)


@pytest.mark.parametrize("name", list(EXPECTED_CUMULANTS))
def test_constellation_cumulants_match_the_closed_form(name):
    symbols = SYMBOL_SOURCES[name](np.random.default_rng(21), (N_SYMBOLS,))
    c40, c42 = normalised_cumulants(symbols)
    expected_c40, expected_c42 = EXPECTED_CUMULANTS[name]
    assert np.mean(np.abs(symbols) ** 2) == pytest.approx(1.0, abs=0.01)  # unit power (std 0.0014 at most)
    assert abs(c40 - expected_c40) < CUMULANT_TOLERANCE  # complex: the imaginary part is 0 too
    assert c42 == pytest.approx(expected_c42, abs=CUMULANT_TOLERANCE)


def test_psk16_eighth_power_vanishes_and_sixteenth_is_one():
    """s = e^{2 pi j k / 16}: s^8 = (-1)^k averages to 0 (so C80 = M80 = 0 as M20 = M40 = M60 = 0, where 8-PSK
    has C80 = 1); s^16 = 1 exactly. The sample mean of s^8 has std 1 / sqrt(N) = 0.0022."""
    symbols = SYMBOL_SOURCES["PSK16"](np.random.default_rng(22), (N_SYMBOLS,))
    assert abs(np.mean(symbols ** 8)) < 0.01
    np.testing.assert_allclose(symbols ** 16, 1.0, atol=1e-9)


@pytest.mark.parametrize("name, n_points", [("QAM32", 32), ("QAM64", 64), ("APSK16", 16), ("PSK16", 16)])
def test_constellation_has_its_number_of_points(name, n_points):
    symbols = SYMBOL_SOURCES[name](np.random.default_rng(23), (20_000,))  # 313 draws per point at 64
    assert len(np.unique(np.round(symbols, 9))) == n_points


def test_cross_qam32_is_the_odd_grid_without_corners_and_apsk16_two_rings():
    grid = SYMBOL_SOURCES["QAM32"](np.random.default_rng(24), (20_000,)) * np.sqrt(20)  # mean power 20, above
    levels = np.concatenate([grid.real, grid.imag])
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert set(np.round(levels).astype(int)) == {-5, -3, -1, 1, 3, 5}
    assert not np.any((np.abs(grid.real) > 4) & (np.abs(grid.imag) > 4))  # no (+-5, +-5) corner
    apsk = np.unique(np.round(SYMBOL_SOURCES["APSK16"](np.random.default_rng(25), (20_000,)), 9))
    radii, counts = np.unique(np.round(np.abs(apsk), 9), return_counts=True)
    assert list(counts) == [4, 12] and radii[1] / radii[0] == pytest.approx(APSK_GAMMA)
    inner_angles = np.sort(np.angle(apsk[np.abs(apsk) < radii[1] - 1e-6]) % (2 * np.pi))
    np.testing.assert_allclose(inner_angles, np.pi / 4 + np.arange(4) * np.pi / 2)
    outer_angles = np.sort(np.angle(apsk[np.abs(apsk) > radii[0] + 1e-6]) % (2 * np.pi))
    np.testing.assert_allclose(outer_angles, np.pi / 12 + np.arange(12) * np.pi / 6)


def test_qam_neighbours_are_appended_so_the_old_seeds_stay():
    """Seeds derive from the position in FAMILIES: the 12 earlier names keep theirs."""
    old = list(PINNED_DEFAULT) + NEW_FAMILIES
    assert list(FAMILIES) == old + QAM_NEIGHBOURS
    for position, name in enumerate(old):
        expected = np.random.SeedSequence([0, position]).generate_state(4)
        np.testing.assert_array_equal(family_seed(0, name).generate_state(4), expected)


@pytest.mark.parametrize("name", QAM_NEIGHBOURS)
def test_qam_neighbours_have_unit_power_and_follow_the_base_shaping(name):
    """Unit power (16 x 4096 samples, 8192 symbols: std of the mean power below 0.007 for 64-QAM's
    E|s|^4 - 1 = 0.38) and the raised-cosine spectrum of --sps 4 --rolloff 0.5."""
    assert "_" not in name
    assert np.mean(np.abs(clean(name, 16, 4096)) ** 2) == pytest.approx(1.0, abs=0.03)
    base = Shaping(sps=4, rolloff=0.5)
    assert measured_bandwidth(name, base) == pytest.approx(raised_cosine_bandwidth(4, 0.5), rel=0.02)


def test_write_synthetic_writes_the_qam_neighbours_at_unit_power(tmp_path):
    paths = write_synthetic(tmp_path, QAM_NEIGHBOURS, n_frames=8, frame_length=4096, snr_db=np.inf, seed=3)
    for name, path in zip(QAM_NEIGHBOURS, paths):
        content = read_h5(path)
        assert path.name == f"{name}_raw_data.h5" and content["sig_type"] == name.encode()
        assert np.mean(np.abs(content["dataset"]) ** 2) == pytest.approx(1.0, abs=0.04)
