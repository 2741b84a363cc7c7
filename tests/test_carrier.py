"""Blind carrier recovery: the M-th power estimator against known offsets and phases, auto's choice, and
the one front end every stage applies alike (training, reconstruction, score.py's streamed windows)."""
from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch

from src.data.datasets import SignalDataset, recovered
from src.data.synthetic import Shaping, gray_qam_symbols, ofdm, psk_symbols, rrc_modulate, write_synthetic
from src.dsp import choose_carrier_order, estimate_carrier, noise_line_strengths, recover_carrier
from src.field.field_scoring import scored_iq
from tests.conftest import assert_one_line_error, run_cli

LENGTH = 1024


def bpsk_symbols(rng, shape):
    return rng.choice([-1.0, 1.0], size=shape).astype(complex)


SOURCES = {2: bpsk_symbols, 4: partial(gray_qam_symbols, bits_per_axis=1), 8: partial(psk_symbols, order=8)}


def as_windows(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack([x.real, x.imag], axis=1)).float()


def channel(rng, clean: np.ndarray, offset: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return clean * np.exp(1j * (2 * np.pi * offset * np.arange(clean.shape[1]) + phase))


def distance_to_constellation(recovered_: torch.Tensor, clean: np.ndarray, order: int) -> np.ndarray:
    """Per window, the largest sample error after the best of the M rotations by 2 pi k / M (the ambiguity)."""
    z = recovered_[:, 0].double().numpy() + 1j * recovered_[:, 1].double().numpy()
    return np.array([min(np.abs(z[i] - clean[i] * np.exp(2j * np.pi * k / order)).max() for k in range(order))
                     for i in range(len(z))])


@pytest.mark.parametrize("order, sps, share", [(4, 8, 1.0), (2, 8, 1.0), (8, 4, 0.9)])
def test_noiseless_constellations_come_back(order, sps, share):
    """QPSK with power4 and BPSK with power2: every window back on its constellation (up to the M-fold
    rotation) within 0.1 of unit amplitude. 8-PSK with power8: its z^8 carrier line competes with the
    symbol-rate lines of the eighth power of its pulse train, so some windows lock to one of those
    (measured: 2.5 % at 4 samples/symbol and 1024 samples, 20-35 % at 256); at least 90 % come back."""
    rng = np.random.default_rng(order)
    clean = rrc_modulate(rng, 40, LENGTH, SOURCES[order], Shaping(sps, 0.35))
    offset, phase = rng.uniform(-0.01, 0.01, (40, 1)), rng.uniform(0, 2 * np.pi, (40, 1))
    errors = distance_to_constellation(recover_carrier(as_windows(channel(rng, clean, offset, phase)), order),
                                       clean, order)
    assert np.mean(errors < 0.1) >= share, np.sort(errors)


def test_offset_and_phase_within_resolution():
    """The offset within 1e-4 cycles/sample (the FFT bin of z^4 is 1 / (4 * 1024 * 4) = 6e-5 of offset before
    interpolation); the phase modulo pi/2 within 0.05 rad."""
    rng = np.random.default_rng(1)
    clean = rrc_modulate(rng, 20, LENGTH, SOURCES[4], Shaping())
    offset, phase = rng.uniform(-0.02, 0.02, (20, 1)), rng.uniform(0, 2 * np.pi, (20, 1))
    found_offset, found_phase = estimate_carrier(as_windows(channel(rng, clean, offset, phase)), 4)
    assert np.abs(found_offset.numpy() - offset[:, 0]).max() < 1e-4
    wrapped = np.angle(np.exp(4j * (found_phase.numpy() - phase[:, 0]))) / 4  # modulo pi / 2
    assert np.abs(wrapped).max() < 0.05


def test_recovery_keeps_power_and_leaves_order_zero_alone():
    x = torch.randn(5, 2, 256)
    assert torch.allclose(recover_carrier(x, 4).pow(2).sum(dim=(1, 2)), x.pow(2).sum(dim=(1, 2)), rtol=1e-4)
    assert np.array_equal(recovered(x.numpy(), 0), x.numpy())


def noisy(rng, clean: np.ndarray, snr_db: float) -> np.ndarray:
    offset, phase = rng.uniform(-0.02, 0.02, (len(clean), 1)), rng.uniform(0, 2 * np.pi, (len(clean), 1))
    scale = np.sqrt(10 ** (-snr_db / 10) / 2)
    noise = (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)) * scale
    return channel(rng, clean, offset, phase) + noise


@pytest.mark.parametrize("name, order", [("BPSK", 2), ("QPSK", 4), ("OFDM", 0), ("noise", 0)])
def test_auto_picks_the_power_whose_line_stands_out(name, order):
    rng = np.random.default_rng(7)
    if name == "OFDM":
        clean = ofdm(rng, 64, 256)
    elif name == "noise":
        clean = (rng.standard_normal((64, 256)) + 1j * rng.standard_normal((64, 256))) / np.sqrt(2)
    else:
        clean = rrc_modulate(rng, 64, 256, SOURCES[order], Shaping())
    chosen, strengths, reference = choose_carrier_order(as_windows(noisy(rng, clean, 20.0)))
    assert chosen == order, (strengths, reference)


def test_noise_reference_is_the_level_of_no_line():
    """Complex Gaussian noise of 256 samples: the largest of ~200 independent exponential bins against the
    neighbourhood mean, about ln(200) + 0.58 = 5.9 (7.7 dB) before the 4x padding's correlated bins add a little."""
    levels = noise_line_strengths(256)
    assert ((levels > 6.0) & (levels < 9.5)).all(), levels


# ---------------------------------------------------------------------------------------------- the stages

@pytest.fixture(scope="module")
def signals(tmp_path_factory):
    """QPSK and OFDM at 20 dB with carrier offsets up to 0.02, prepared into 256-sample windows."""
    root = tmp_path_factory.mktemp("carrier")
    write_synthetic(root / "raw", ["QPSK", "OFDM"], n_frames=12, frame_length=1024, snr_db=20.0, seed=5, cfo_max=0.02)
    run_cli("src/data/signal_trim_and_unpack.py", f"--data_root={root / 'raw'}", f"--new_data_root={root / 'p'}",
            "--trim_length=256", "--val_split=0.25", "--test_split=0.25", check=False)
    processed = root / "p" / "interferenceset_frame"
    return root, {f"{name}_{split}": processed / f"{name}_raw_data_{split}.h5"
                  for name in ("QPSK", "OFDM") for split in ("train", "val", "test")}


def fit_features(root, files, family: str, mode: str | None, name: str, check: bool = True):
    """train_features.py on ``family``'s files (``mode`` None: no --carrier_recovery flag); its result and config's
    data section."""
    result = run_cli("train_features.py", f"--output_dir={root / 'runs'}", f"--model_name={name}",
                     f"--training_h5file={files[family + '_train']}", f"--validation_h5file={files[family + '_val']}",
                     *([f"--carrier_recovery={mode}"] if mode else []), check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result, json.loads((root / "runs" / name / "config.json").read_text())["data"]


def test_auto_is_recorded_and_logged_and_off_for_ofdm(signals):
    root, files = signals
    result, data = fit_features(root, files, "QPSK", "auto", "qpsk_auto")
    assert (data["carrier_recovery"], data["carrier_order"]) == ("auto", 4)
    assert set(data["carrier_line_strengths_db"]) == {"z^2", "z^4", "z^8"}
    log = (root / "runs" / "qpsk_auto" / "log.txt").read_text()
    assert "carrier recovery auto: power4" in log and "z^4" in log
    _, data = fit_features(root, files, "OFDM", "auto", "ofdm_auto")
    assert data["carrier_order"] == 0


def test_a_new_run_on_signals_defaults_to_auto_and_a_resumed_run_keeps_its_own(signals):
    root, files = signals
    _, data = fit_features(root, files, "QPSK", None, "qpsk_default")
    assert (data["carrier_recovery"], data["carrier_order"]) == ("auto", 4)
    result, _ = fit_features(root, files, "QPSK", "off", "qpsk_default", check=False)
    assert_one_line_error(result, "--carrier_recovery=off", "trained with --carrier_recovery=auto (auto chose power4)")
    # a run made before the default changed (its config records no front end) goes on without one
    _, data = fit_features(root, files, "QPSK", "off", "qpsk_before")
    assert "carrier_recovery" not in data
    checkpoint = root / "runs" / "qpsk_before" / "checkpoint.pth"
    before = torch.load(checkpoint, weights_only=True)["model"]
    _, data = fit_features(root, files, "QPSK", None, "qpsk_before")
    after = torch.load(checkpoint, weights_only=True)["model"]
    assert "carrier_recovery" not in data
    assert all(torch.equal(before[key], after[key]) for key in before)  # refitted on the same, unrecovered windows
    recovered_fit = torch.load(root / "runs" / "qpsk_default" / "checkpoint.pth", weights_only=True)["model"]
    assert not all(torch.equal(before[key], recovered_fit[key]) for key in before)  # which recovery would change
    assert_one_line_error(fit_features(root, files, "QPSK", "power4", "qpsk_before", check=False)[0],
                          "--carrier_recovery=power4", "trained with --carrier_recovery=off")


def test_later_stages_refuse_a_contradicting_front_end(signals):
    root, files = signals
    fit_features(root, files, "QPSK", "power4", "qpsk_power4")
    sets = [f"--output_dir={root / 'runs'}", "--model_name=qpsk_power4", f"--validation_h5file={files['QPSK_val']}",
            f"--in_ids={files['QPSK_test']}", f"--out_ids={files['OFDM_test']}"]
    assert_one_line_error(run_cli("reconstruct.py", *sets, "--carrier_recovery=off", check=False),
                          "--carrier_recovery=off", "trained with --carrier_recovery=power4")
    assert run_cli("reconstruct.py", *sets, "--carrier_recovery=power4", check=False).returncode == 0
    assert_one_line_error(run_cli("score.py", f"--output_dir={root / 'runs'}", "--model_name=qpsk_power4",
                                  f"--input={files['OFDM_test']}", "--carrier_recovery=power8", check=False),
                          "--carrier_recovery=power8")


def test_images_refuse_the_flag(tmp_path):
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=x", "--spatial_dimension=2",
                     f"--training_h5file={tmp_path / 'a.csv'}", f"--validation_h5file={tmp_path / 'a.csv'}",
                     "--carrier_recovery=power4", check=False)
    assert_one_line_error(result, "--carrier_recovery=power4", "RF signals only")


def test_streamed_windows_are_recovered_as_the_dataset_reads_them(signals):
    """score.py's raw-recording path (rms-normalised, then recovered) gives the windows a run's processed files
    give through SignalDataset with the same order."""
    root, files = signals
    rng = np.random.default_rng(3)
    raw = noisy(rng, rrc_modulate(rng, 6, 256, SOURCES[4], Shaping()), 20.0).astype(np.complex64)
    streamed = scored_iq(root / "x", np.arange(6) * 256, raw, "rms", carrier_order=4)
    iq = np.stack([raw.real, raw.imag], axis=1).astype(np.float32)
    iq /= np.sqrt((iq ** 2).sum(axis=1).mean(axis=-1))[:, None, None]
    from tests.conftest import write_processed
    path = write_processed(root / "streamed_raw_data_test.h5", iq, "QPSK")
    read = np.stack([SignalDataset(path, carrier_order=4)[i]["signal"].numpy() for i in range(6)])
    lazy = np.stack([SignalDataset(path, cache=False, carrier_order=4)[i]["signal"].numpy() for i in range(6)])
    np.testing.assert_allclose(streamed, read, atol=1e-5)
    np.testing.assert_allclose(lazy, read, atol=1e-5)
    assert np.abs(read - iq).max() > 0.1  # the recovery did run
