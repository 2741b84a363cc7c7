"""The blind per-window SNR estimate (src.dsp.blind_snr_db) against the generator's SNR."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.prep import normalize_rms
from src.data.synthetic import FAMILIES, apply_impairments
from src.dsp import SNR_RANGE_DB, blind_snr_db

WINDOW, FRAMES, FRAME_LENGTH = 256, 4, 2048  # 4 frames x 8 windows = the 32 windows whose median is judged
TESTED = ("QPSK", "QAM16", "OFDM", "GMSK", "FM", "Chirp", "PSK8")
SNRS = (0, 5, 10, 15, 20)
TOLERANCE_DB = 1.5


def prepared_windows(family: str, snr_db: float, seed: int = 0) -> torch.Tensor:
    """4 frames of ``family`` through the generator's channel (carrier offset up to 0.01 cycles/sample, phase, AWGN
    at ``snr_db``), cut into 256-sample windows and scaled to unit power as prep does: [32, 2, 256]."""
    rng = np.random.default_rng([seed, list(FAMILIES).index(family), int(snr_db)])
    frames = apply_impairments(rng, FAMILIES[family](rng, FRAMES, FRAME_LENGTH), float(snr_db), 0.01)
    windows = frames.reshape(-1, WINDOW)
    iq = np.stack([windows.real, windows.imag], axis=1).astype(np.float32)
    return torch.from_numpy(normalize_rms("test", iq, np.repeat(np.arange(FRAMES), FRAME_LENGTH // WINDOW)))


@pytest.mark.parametrize("family", TESTED)
def test_median_over_32_windows_is_within_1p5_db_of_the_generator_snr(family):
    errors = {snr: blind_snr_db(prepared_windows(family, snr)).numpy() - snr for snr in SNRS}
    for snr, error in errors.items():
        assert error.shape == (FRAMES * FRAME_LENGTH // WINDOW,)
        if family == "OFDM" and snr == 20:
            # the documented limit: rectangular-symbol OFDM leaks ~20 dB under its in-band level into its guard
            # band, which the estimator cannot tell from noise, so at 20 dB it reads about 2 dB low
            assert -3.0 < np.median(error) < -1.0, (snr, np.median(error))
            continue
        assert abs(np.median(error)) <= TOLERANCE_DB, (family, snr, np.median(error))
    # single windows spread more; at 10 dB 80 % of them lie within +-2 dB (measured +-1.6 dB at most)
    assert np.mean(np.abs(errors[10]) <= 2.0) >= 0.8, np.sort(errors[10])


def test_the_estimate_tracks_snr_changes_and_ignores_the_window_scale():
    low, high = (np.median(blind_snr_db(prepared_windows("QPSK", snr, seed=3)).numpy()) for snr in (2, 14))
    assert 10.5 <= high - low <= 13.5, (low, high)
    windows = prepared_windows("GMSK", 10, seed=4)
    np.testing.assert_allclose(blind_snr_db(1000.0 * windows).numpy(), blind_snr_db(windows).numpy(), atol=1e-6)


def test_noise_alone_and_silence_read_as_no_signal():
    """A window of white noise fills the whole band: it is all "noise floor", so it reads far below 0 dB (the
    limit of any spectral estimator: a signal filling the band would read the same). An all-zero window reads the
    lower clip instead of NaN, so results files never hold NaN."""
    noise = torch.randn((64, 2, WINDOW), generator=torch.Generator().manual_seed(5))
    assert np.median(blind_snr_db(noise).numpy()) < -5.0
    silent = blind_snr_db(torch.zeros((2, 2, WINDOW)))
    assert torch.equal(silent, torch.full((2,), SNR_RANGE_DB[0], dtype=torch.float64))


def test_short_windows_and_batch_shapes():
    windows = prepared_windows("QPSK", 10)[:, :, :48]  # the tests' tiny runs use 48-sample windows
    estimates = blind_snr_db(windows.reshape(4, 8, 2, 48))
    assert estimates.shape == (4, 8) and torch.isfinite(estimates).all()
