"""Signal and codebook figures, and the TensorBoard figures and scalars every trainer logs at evaluation."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAMILY_LEARNING_RATE, OracleDenoiser
from src.diffusion.latent import SignalSpace
from src.diffusion.schedulers import build_ddpm_scheduler, scheduler_config
from src.figures import codebook_figure, power_spectral_density, signal_figure
from src.trainers.ddpm import DiffusionTrainer

LEARNING_RATE = FAMILY_LEARNING_RATE
IMAGES = {"unet": {"denoised_from_t250"}, "ldm": {"denoised_from_t250"}, "autoencoder": {"reconstruction"},
          "vqvae": {"reconstruction", "codebook_counts"}, "autoencoder_no_figures": set()}


def tones(batch: int, length: int = 64, frequency: float = 0.125) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float32)
    phase = torch.linspace(0, 3, batch)[:, None]
    return torch.stack([torch.cos(2 * np.pi * frequency * n + phase), torch.sin(2 * np.pi * frequency * n + phase)], 1)


@pytest.mark.parametrize("batch, rows", [(1, 1), (2, 2), (6, 4)])
def test_signal_figure_has_three_panels_per_signal_up_to_four(batch, rows):
    x = tones(batch)
    figure = signal_figure(x, x + 0.1, "title")
    assert len(figure.axes) == 3 * rows
    assert [axis.get_title() for axis in figure.axes[:3]] == ["I/Q over time", "power spectral density",
                                                                "constellation"]
    time_axis = figure.axes[0]
    assert [line.get_linestyle() for line in time_axis.get_lines()] == ["-", "--", "-", "--"]
    assert figure.get_suptitle() == "title"


def test_signal_figure_refuses_mismatched_or_non_iq_signals():
    with pytest.raises(ValueError, match="differ"):
        signal_figure(tones(2), tones(3))
    with pytest.raises(ValueError, match=r"\[B, 2, T\]"):
        signal_figure(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8))


def test_psd_peaks_at_the_tone_frequency_with_negative_frequencies_first():
    frequency, psd = power_spectral_density(tones(1, length=512, frequency=-0.125)[0].numpy())
    assert frequency[0] == -0.5 and np.all(np.diff(frequency) > 0)
    assert frequency[np.argmax(psd)] == pytest.approx(-0.125)
    assert psd.max() - np.median(psd) > 40


def test_codebook_figure_draws_one_bar_per_code_and_counts_the_used_ones():
    counts = torch.tensor([5, 0, 3, 0, 1, 0, 0, 2])
    figure = codebook_figure(counts)
    (axis,) = figure.axes
    assert [bar.get_height() for bar in axis.patches] == counts.tolist()
    assert "4/8 codes used" in axis.get_title()


def test_ddpm_figure_denoises_from_t250_back_to_the_signals_with_an_ideal_model():
    """With the true noise as prediction, the PLMS path from t = 250 (b_scale 2) returns the signals."""
    x = tones(2, length=32)
    scheduler = scheduler_config("scaled_linear_beta", 0.0015, 0.0195, "epsilon", b_scale=2.0, snr_shift=1.0)
    trainer = DiffusionTrainer.__new__(DiffusionTrainer)  # only what figures() reads
    trainer.config, trainer.space, trainer.b_scale, trainer.epoch = {"kind": "ddpm", "scheduler": scheduler}, \
        SignalSpace(), 2.0, 3
    trainer.settings = SimpleNamespace(precision="fp32")
    alphas_cumprod = build_ddpm_scheduler(scheduler).alphas_cumprod
    trainer.model, trainer.ema = OracleDenoiser(2.0 * x, alphas_cumprod), None
    (tag, figure), = trainer.figures(x).items()
    assert tag == "denoised_from_t250" and "t=250" in figure.get_suptitle()
    for row, signal in enumerate(x):
        original_i, denoised_i, original_q, denoised_q = (line.get_ydata() for line in figure.axes[3 * row].lines)
        assert np.allclose(original_i, signal[0]) and np.allclose(original_q, signal[1])
        mse = np.mean((np.stack([denoised_i, denoised_q]) - signal.numpy()) ** 2)
        # PLMS stops at alpha_bar[0], not 1 (see test_diffusion): noise of variance ~(1 - alpha_bar[0]) / b_scale^2
        assert mse < 3 * (1 - alphas_cumprod[0].item()) / 4, mse


@pytest.fixture(scope="module")
def runs(family_runs):
    return family_runs


def events(runs, name: str, split: str) -> EventAccumulator:
    return EventAccumulator(str(runs / name / split), size_guidance={"images": 0, "scalars": 0}).Reload()


@pytest.mark.parametrize("name", list(IMAGES))
def test_each_evaluation_logs_the_figures_of_the_run(runs, name):
    val = events(runs, name, "val")
    assert set(val.Tags()["images"]) == IMAGES[name]
    for tag in IMAGES[name]:
        images = val.Images(tag)
        assert [image.step for image in images] == [2, 4]  # two quick-test batches per epoch, two evaluations
        assert all(image.width > 100 and image.height > 100 for image in images)
        assert images[0].encoded_image_string.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", list(IMAGES))
def test_loss_and_learning_rate_scalars_are_logged(runs, name):
    train, val = events(runs, name, "train"), events(runs, name, "val")
    assert {"loss", "learning_rate"} <= set(train.Tags()["scalars"])
    assert "loss" in val.Tags()["scalars"]
    expected = [LEARNING_RATE] * 2  # the autoencoders train at a constant rate by default
    if name in ("unet", "ldm"):  # train_ddpm.py warms up linearly over 100 steps: steps 2 and 4 of 2 epochs of 2
        expected = [LEARNING_RATE * 2 / 100, LEARNING_RATE * 4 / 100]
    assert [event.value for event in train.Scalars("learning_rate")] == pytest.approx(expected)


def test_vqvae_logs_the_fraction_of_codes_used_over_the_validation_set(runs):
    val = events(runs, "vqvae", "val")
    fractions = [event.value for event in val.Scalars("codebook_fraction_used")]
    assert len(fractions) == 2 and all(0 < fraction <= 1 for fraction in fractions)
    assert all(fraction * 16 == pytest.approx(round(fraction * 16)) for fraction in fractions)  # k of 16 codes
    assert "codebook_fraction_used" not in events(runs, "autoencoder", "val").Tags()["scalars"]
