"""Classical RF features against closed-form theory, and their Mahalanobis statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.errors import UserError
from src.features import FeatureStatistics, feature_names, rf_features

CUMULANTS = slice(-4, None)  # |C20|/C21, |C40|/C21^2, |C41|/C21^2, C42/C21^2
ENVELOPE = slice(-8, -4)  # mean, std/mean, kurtosis, PAPR (dB)


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


def test_carrier_phase_leaves_every_feature_unchanged():
    x = qam16(3, 1024)
    rotated = x * np.exp(1j * np.array([[0.3], [1.9], [-2.5]]))
    np.testing.assert_allclose(rf_features(iq(rotated)), rf_features(iq(x)), rtol=1e-4, atol=1e-4)


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
def test_names_cover_every_column_once(segment):
    names = feature_names(segment)
    assert len(names) == rf_features(iq(gaussian(2, 256)), segment).shape[1] == segment + 8
    assert len(set(names)) == len(names)


def test_all_zero_window_gives_finite_features():
    assert torch.isfinite(rf_features(torch.zeros(1, 2, 64))).all()


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
