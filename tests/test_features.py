"""Classical RF features against closed-form theory, and their Mahalanobis statistics."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from src.data.synthetic import Shaping, gray_qam_symbols, psk_symbols, rrc_modulate
from src.dsp import peak_frequency
from src.errors import UserError
from src.features import CYCLIC_NAMES, CYCLIC_ORDERS, FeatureStatistics, envelope_spectrum, feature_names, rf_features
from src.networks import build_model, load_trained, network_config
from src.trainers.features import window_features

CUMULANTS = slice(-4, None)  # |C20|/C21, |C40|/C21^2, |C41|/C21^2, C42/C21^2
ENVELOPE = slice(-8, -4)  # mean, std/mean, kurtosis, PAPR (dB)
CYCLIC = slice(-4, None)  # with cyclic=True: line strengths (dB) of z^2, z^4, z^8 and |z|^2


def iq(x: np.ndarray) -> torch.Tensor:
    """Complex windows [B, T] as signals [B, 2, T]."""
    return torch.from_numpy(np.stack([x.real, x.imag], axis=1)).float()


def psk(order: int, windows: int, symbols: int, seed: int = 0) -> np.ndarray:
    """Unit-power PSK symbols, one sample per symbol, at a random carrier phase per window."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (windows, 1))
    return np.exp(1j * (2 * np.pi * rng.integers(0, order, (windows, symbols)) / order + phase))


def qam16(windows: int, symbols: int, seed: int = 0) -> np.ndarray:
    """Square 16-QAM, levels {-3, -1, 1, 3} on I and Q, unit power (E|x|^2 = 10 before scaling)."""
    levels = np.random.default_rng(seed).choice([-3, -1, 1, 3], size=(2, windows, symbols))
    return (levels[0] + 1j * levels[1]) / np.sqrt(10)


def gaussian(windows: int, samples: int, seed: int = 0) -> np.ndarray:
    """Circular complex Gaussian noise of unit power."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((windows, samples)) + 1j * rng.standard_normal((windows, samples))) / np.sqrt(2)


def bpsk(windows: int, symbols: int, seed: int = 0) -> np.ndarray:
    """Unit-power BPSK at a random carrier phase per window: the one case here with C20 != 0."""
    rng = np.random.default_rng(seed)
    return (2 * rng.integers(0, 2, (windows, symbols)) - 1) * np.exp(1j * rng.uniform(0, 2 * np.pi, (windows, 1)))


SIGNALS = {"BPSK": bpsk, "QPSK": lambda w, n: psk(4, w, n), "8PSK": lambda w, n: psk(8, w, n),
           "16QAM": qam16, "noise": gaussian}


# Expected |C20|/C21, |C40|/C21^2, |C41|/C21^2, C42/C21^2 (Swami & Sadler 2000, Table 1). For 16-QAM:
# E x^4 = 2 E a^4 - 6 (E a^2)^2 = 82 - 150 = -68 and E|x|^4 = 132, over (E|x|^2)^2 = 100.
# Tolerance: 4 standard errors sqrt(v / samples) of one window's estimate, v the largest variance of
# an averaged term (about 4 for PSK and QAM: E|x|^4 (|x|^2 - 3)^2 in C41; E|x|^8 = 4! = 24 for noise).
# Per window, not per mean over windows: a magnitude of a zero estimate is biased by about one error.
@pytest.mark.parametrize("name, expected, variance", [
    ("BPSK", [1, 2, 2, -2], 4),
    ("QPSK", [0, 1, 0, -1], 4),
    ("8PSK", [0, 0, 0, -1], 4),
    ("16QAM", [0, 0.68, 0, -0.68], 4),
    ("noise", [0, 0, 0, 0], 24),
])
def test_cumulants_match_theory(name, expected, variance):
    samples = 65536
    cumulants = rf_features(iq(SIGNALS[name](2, samples)))[:, CUMULANTS].numpy()
    np.testing.assert_allclose(cumulants.mean(axis=0), expected, atol=4 * np.sqrt(variance / samples))


@pytest.mark.parametrize("cyclic", [False, True])
def test_carrier_phase_leaves_every_feature_unchanged(cyclic):
    x = qam16(3, 1024)
    rotated = x * np.exp(1j * np.array([[0.3], [1.9], [-2.5]]))
    np.testing.assert_allclose(rf_features(iq(rotated), cyclic=cyclic), rf_features(iq(x), cyclic=cyclic),
                               rtol=1e-4, atol=1e-4)


def test_cumulant_features_ignore_gain_and_a_dc_offset():
    x = bpsk(2, 1024)
    moved = 3 * x + (0.5 - 0.2j)
    np.testing.assert_allclose(rf_features(iq(moved))[:, CUMULANTS], rf_features(iq(x))[:, CUMULANTS], atol=1e-5)


def test_constant_envelope_has_no_spread_and_no_peak():
    envelope = rf_features(iq(psk(8, 2, 256)))[:, ENVELOPE].numpy()
    np.testing.assert_allclose(envelope[:, 0], 1.0, atol=1e-6)  # mean |x|
    np.testing.assert_allclose(envelope[:, 1], 0.0, atol=1e-6)  # std/mean
    np.testing.assert_allclose(envelope[:, 3], 0.0, atol=1e-5)  # PAPR in dB


def test_gaussian_envelope_is_rayleigh():
    envelope = rf_features(iq(gaussian(4, 65536)))[:, ENVELOPE].numpy().mean(axis=0)
    # Rayleigh with E a^2 = 1: mean sqrt(pi)/2, cv sqrt(4/pi - 1), kurtosis 3 + 0.2451 (excess).
    rayleigh = [np.sqrt(np.pi) / 2, np.sqrt(4 / np.pi - 1), 3 - (6 * np.pi**2 - 24 * np.pi + 16) / (4 - np.pi)**2]
    # Tolerance: 4 standard errors over the 4 * 65536 samples, sqrt(24 / n) for a near-Gaussian kurtosis.
    np.testing.assert_allclose(envelope[:3], rayleigh, atol=4 * np.sqrt(24 / (4 * 65536)))


@pytest.mark.parametrize("cycles, segment", [(5, 32), (-3, 32), (12, 64)])
def test_tone_puts_the_psd_peak_at_its_bin(cycles, segment):
    n = np.arange(256)
    tone = np.exp(2j * np.pi * cycles / segment * n + 0.7j)[None]
    features = rf_features(iq(tone), psd_segment=segment)
    assert int(features[0, :segment].argmax()) == cycles % segment  # FFT order: negative bins on top
    assert feature_names(segment)[cycles % segment] == f"psd_db_f{cycles / segment:+.4f}"


@pytest.mark.parametrize("segment", [16, 32, 64])
@pytest.mark.parametrize("cyclic", [False, True])
def test_names_cover_every_column_once(segment, cyclic):
    names = feature_names(segment, cyclic)
    assert len(names) == rf_features(iq(gaussian(2, 256)), segment, cyclic).shape[1] == segment + 8 + 4 * cyclic
    assert len(set(names)) == len(names)
    assert (names[CYCLIC] == CYCLIC_NAMES) == cyclic


@pytest.mark.parametrize("cyclic", [False, True])
def test_all_zero_window_gives_finite_features(cyclic):
    assert torch.isfinite(rf_features(torch.zeros(1, 2, 64), cyclic=cyclic)).all()


@pytest.mark.parametrize("signals, segment, fragment", [
    (torch.zeros(4, 3, 64), 32, "[windows, 2, samples]"),
    (torch.zeros(2, 64), 32, "[windows, 2, samples]"),
    (torch.zeros(4, 2, 16), 32, "psd_segment=32"),
])
def test_bad_signals_raise_one_clear_line(signals, segment, fragment):
    with pytest.raises(UserError) as error:
        rf_features(signals, segment)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def correlated_features(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 3))
    return np.c_[base, base[:, 0] + 0.1 * rng.standard_normal(n)] * [1.0, 5.0, 0.01, 1.0] + [0, 10, -3, 0]


def test_training_mean_is_at_distance_zero_and_a_shift_is_not():
    train = correlated_features(400)
    stats = FeatureStatistics.fit(train)
    shifted = train.mean(axis=0) + [0, 0, 0.05, 0]  # five training stds on the third feature
    distances = stats.distance(np.stack([train.mean(axis=0), shifted]))
    assert distances[0] == pytest.approx(0, abs=1e-12)
    assert distances[1] > 10


def test_small_scale_features_count_as_much_as_large_ones():
    rng = np.random.default_rng(1)
    scales = np.array([1e-3, 1.0, 10.0, 100.0])
    stats = FeatureStatistics.fit(rng.standard_normal((2000, 4)) * scales)
    # Independent features: three stds along any one of them is a squared distance of about 9.
    distances = stats.distance(3 * np.diag(scales))
    np.testing.assert_allclose(distances, 9, rtol=0.2)


def test_state_survives_a_weights_only_checkpoint(tmp_path):
    train, test = correlated_features(300), correlated_features(20, seed=1)
    stats = FeatureStatistics.fit(torch.from_numpy(train))
    torch.save({"feature_statistics": stats.state()}, tmp_path / "stats.pt")
    loaded = torch.load(tmp_path / "stats.pt", weights_only=True)["feature_statistics"]
    np.testing.assert_array_equal(FeatureStatistics.from_state(loaded).distance(test), stats.distance(test))


@pytest.mark.parametrize("train, fragment", [
    (np.zeros((1, 4)), "at least 2 windows"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN or infinite"),
    (np.zeros(5), "2-D array"),
])
def test_bad_training_features_raise_one_clear_line(train, fragment):
    with pytest.raises(UserError) as error:
        FeatureStatistics.fit(train)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_distance_refuses_features_of_another_width():
    stats = FeatureStatistics.fit(correlated_features(50))
    with pytest.raises(UserError, match="same psd_segment"):
        stats.distance(np.zeros((2, 5)))


def test_features_tell_16qam_from_qpsk_trained_windows():
    train = rf_features(iq(psk(4, 200, 256, seed=0)))
    stats = FeatureStatistics.fit(train)
    held_out = stats.distance(rf_features(iq(psk(4, 50, 256, seed=1))))
    qam = stats.distance(rf_features(iq(qam16(50, 256, seed=2))))
    assert qam.min() > held_out.max()


# --------------------------------------------------------------------------------------------------
# Cyclic features: spectral lines of z^M and of the power |z|^2
# --------------------------------------------------------------------------------------------------

LINE_WINDOWS, LINE_SAMPLES = 32, 2048  # medians over 32 windows: 8-PSK's z^8 line is weak in 256 samples
SYMBOLS = {"BPSK": lambda rng, shape: rng.choice([-1.0, 1.0], size=shape).astype(complex),
           "QPSK": partial(gray_qam_symbols, bits_per_axis=1), "8PSK": partial(psk_symbols, order=8)}


def rrc(name: str, seed: int = 0) -> np.ndarray:
    """Noiseless RRC-shaped windows (8 samples/symbol), each at a random carrier offset (|f| < 0.01) and phase."""
    rng = np.random.default_rng(seed)
    x = rrc_modulate(rng, LINE_WINDOWS, LINE_SAMPLES, SYMBOLS[name], Shaping(sps=8))
    offset, phase = rng.uniform(-0.01, 0.01, (LINE_WINDOWS, 1)), rng.uniform(0, 2 * np.pi, (LINE_WINDOWS, 1))
    return x * np.exp(1j * (2 * np.pi * offset * np.arange(LINE_SAMPLES) + phase))


def median_lines(x: np.ndarray) -> np.ndarray:
    """Median over the windows of the line strengths (dB) of z^2, z^4, z^8 and |z|^2."""
    return np.median(rf_features(iq(x), cyclic=True)[:, CYCLIC].numpy(), axis=0)


@pytest.fixture(scope="module")
def noise_lines() -> np.ndarray:
    """White Gaussian noise's median line strengths: the level a window without a line reaches."""
    return median_lines(gaussian(LINE_WINDOWS, LINE_SAMPLES, seed=1))


# z^M wipes off the modulation of a constellation with M-fold symmetry (s^M constant), leaving a line.
# Measured, medians in dB above noise's (9 to 10, 9 to 10, 7.7 to 8.5 dB), worst pairing of seeds 0-15
# for signal and noise: BPSK z^2, z^4, z^8 at least +17.9, +17.5, +15.3; QPSK z^4, z^8 at least +13.9,
# +9.8 and z^2 at most -0.3; 8-PSK z^8 at least +7.7 and z^2, z^4 at most +0.05 (a band-limited z^M
# has fewer bins to peak in than white noise). So: a line stands > 6 dB above noise, its absence < 2 dB.
@pytest.mark.parametrize("name, lines, no_lines", [("BPSK", [2, 4, 8], []), ("QPSK", [4, 8], [2]),
                                                   ("8PSK", [8], [2, 4])])
def test_power_lines_follow_the_constellation_symmetry(name, lines, no_lines, noise_lines):
    above = dict(zip(CYCLIC_ORDERS, (median_lines(rrc(name)) - noise_lines)[:3].round(2)))
    assert all(above[order] > 6 for order in lines) and all(above[order] < 2 for order in no_lines), above


def test_power_of_rrc_qpsk_has_a_line_at_the_symbol_rate(noise_lines):
    x = rrc("QPSK")
    # Measured: every window's peak within 0.06 padded bins of 1/8; the median at least 9.4 dB above noise's
    # (seeds 0-15; noise's median 9 to 9.7 dB).
    frequency = peak_frequency(envelope_spectrum(iq(x))).numpy()
    np.testing.assert_allclose(np.abs(frequency), 1 / 8, atol=1 / (4 * LINE_SAMPLES))  # one padded bin
    assert median_lines(x)[3] - noise_lines[3] > 6


def test_a_slow_fade_does_not_pass_for_the_symbol_rate_line():
    rng = np.random.default_rng(3)
    cycles, phase = rng.uniform(0.3, 0.8, (LINE_WINDOWS, 1)), rng.uniform(0, 2 * np.pi, (LINE_WINDOWS, 1))
    fade = 1 + 0.2 * np.cos(2 * np.pi * cycles * np.arange(LINE_SAMPLES) / LINE_SAMPLES + phase)
    # Measured: every window still peaks at 1/8; without the guard around DC only 12 of the 32 do.
    frequency = peak_frequency(envelope_spectrum(iq(rrc("QPSK") * fade))).numpy()
    np.testing.assert_allclose(np.abs(frequency), 1 / 8, atol=1 / (4 * LINE_SAMPLES))


def test_constant_envelope_has_no_power_line(noise_lines):
    rng = np.random.default_rng(2)
    cycles = rng.uniform(-0.3, 0.3, (LINE_WINDOWS, 1))
    tone = np.exp(1j * (2 * np.pi * cycles * np.arange(LINE_SAMPLES) + rng.uniform(0, 2 * np.pi, (LINE_WINDOWS, 1))))
    # |z|^2 is 1 up to float32 rounding, whose spectrum is white: measured 8.9 to 9.7 dB, noise's 9 to 9.7 dB.
    assert abs(median_lines(tone)[3] - noise_lines[3]) < 2


OLD_NETWORK = {"model_type": "features", "in_channels": 2, "psd_segment": 32}  # runs fitted before cyclic features


def test_runs_fitted_before_the_cyclic_features_load_and_score_as_before(tmp_path):
    train, test = iq(psk(4, 200, 256)), iq(qam16(20, 256, seed=2))
    fitted = build_model(OLD_NETWORK).fit(rf_features(train))
    assert not fitted.cyclic and len(fitted.mean) == 32 + 8
    torch.save({"model": fitted.state_dict()}, tmp_path / "checkpoint.pth")
    loaded = load_trained(OLD_NETWORK, tmp_path / "checkpoint.pth", torch.device("cpu"))
    expected = FeatureStatistics.fit(rf_features(train)).distance(rf_features(test))
    np.testing.assert_allclose(loaded(test).numpy(), expected, rtol=1e-9)


def test_new_runs_fit_the_cyclic_features_too():
    model = build_model(network_config("features"))
    signals = iq(psk(4, 6, 256))
    features = window_features(model, [{"signal": window} for window in signals], batch_size=4)
    assert model.cyclic and features.shape[1] == len(model.mean) == 32 + 8 + 4
    np.testing.assert_allclose(features[:, :-4], rf_features(signals), rtol=1e-12)
