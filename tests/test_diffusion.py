import math

import numpy as np
import pytest
import torch

from conftest import OracleDenoiser
from src.diffusion.multistart import model_evaluations, reconstruct, sample_noise, start_points
from src.diffusion.schedulers import build_ddpm_scheduler, build_pndm_scheduler, scheduler_config, training_target
from src.errors import UserError
from src.ood.distances import reconstruction_errors


def config(**overrides):
    base = dict(beta_schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0195, prediction_type="epsilon",
                b_scale=1.0, snr_shift=1.0)
    return scheduler_config(**{**base, **overrides})


def closed_form_alpha_bar(beta_start=0.0015, beta_end=0.0195, steps=1000):
    betas = np.linspace(np.sqrt(beta_start), np.sqrt(beta_end), steps) ** 2
    return np.cumprod(1.0 - betas)


def test_add_noise_equals_closed_form():
    scheduler = build_ddpm_scheduler(config())
    x0, noise = torch.randn(4, 2, 16), torch.randn(4, 2, 16)
    t = torch.tensor([0, 10, 500, 999])
    abar = torch.tensor(closed_form_alpha_bar()[t.numpy()], dtype=torch.float32)[:, None, None]
    expected = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    assert torch.allclose(scheduler.add_noise(x0, noise, t), expected, atol=1e-5)


def test_velocity_target():
    scheduler = build_ddpm_scheduler(config(prediction_type="v_prediction"))
    x0, noise, t = torch.randn(2, 2, 8), torch.randn(2, 2, 8), torch.tensor([100, 700])
    abar = torch.tensor(closed_form_alpha_bar()[t.numpy()], dtype=torch.float32)[:, None, None]
    expected = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert torch.allclose(training_target(scheduler, x0, noise, t), expected, atol=1e-5)
    assert training_target(build_ddpm_scheduler(config()), x0, noise, t) is noise


def research_shifted_alphas_cumprod(alphas_cumprod: torch.Tensor, snr_shift: float) -> torch.Tensor:
    """The research code's reconstruct.py, verbatim in effect: target_snr = snr * snr_shift."""
    snr = alphas_cumprod / (1 - alphas_cumprod)
    target_snr = snr * snr_shift
    return 1 / (torch.pow(target_snr, -1) + 1)


@pytest.mark.parametrize("snr_shift", [0.25, 2.0])
def test_snr_shift_multiplies_the_snr_as_the_research_code_does(snr_shift):
    plain = build_pndm_scheduler(config(), 100).alphas_cumprod.double()
    shifted = build_pndm_scheduler(config(snr_shift=snr_shift), 100).alphas_cumprod.double()
    torch.testing.assert_close(shifted, research_shifted_alphas_cumprod(plain, snr_shift), rtol=1e-5, atol=1e-7)
    ddpm = build_ddpm_scheduler(config(beta_schedule="linear_beta", beta_start=0.0001, beta_end=0.02,
                                       snr_shift=4.0)).alphas_cumprod.double().numpy()
    linear = np.cumprod(1.0 - np.linspace(0.0001, 0.02, 1000))
    np.testing.assert_allclose((ddpm / (1 - ddpm)) / (linear / (1 - linear)), 4.0, rtol=2e-3)  # float32 abar near 1


@pytest.mark.parametrize("start, end", [(0.02, 0.01), (0.0, 0.02), (0.001, 1.0), (-0.1, 0.02)])
def test_a_schedule_that_makes_no_schedule_is_refused(start, end):
    with pytest.raises(UserError, match=r"--beta_start.*--beta_end.*noise schedule"):
        config(beta_start=start, beta_end=end)
    bad = {**config(), "beta_start": start, "beta_end": end}  # a config.json edited by hand
    with pytest.raises(UserError, match="noise schedule"):
        build_pndm_scheduler(bad, 100)


def test_start_points_and_costs_match_the_seed_table():
    scheduler = build_pndm_scheduler(config(), 100)
    counts = {skip: len(start_points(scheduler, skip)) for skip in (1, 2, 3, 4, 5, 8, 16, 32, 64)}
    # Seed README: 100 50 34 25 20 13 7 4 2 reconstructions "for max_t=1000"; t=0 is not a start point here.
    assert counts == {1: 99, 2: 50, 3: 33, 4: 25, 5: 20, 8: 13, 16: 7, 32: 4, 64: 2}
    assert start_points(scheduler, 16) == [10, 170, 330, 490, 650, 810, 970]
    assert model_evaluations(scheduler, start_points(scheduler, 16)) == sum(t // 10 + 1 for t in range(10, 971, 160))
    assert model_evaluations(scheduler, start_points(scheduler, 1)) == sum(k + 1 for k in range(1, 100))
    with pytest.raises(UserError):
        start_points(scheduler, 0)
    with pytest.raises(UserError):
        start_points(scheduler, 100)


def test_noise_depends_on_sample_index_not_batch():
    together = sample_noise(torch.tensor([3, 4, 5]), 2, (2, 8), seed=1)
    alone = sample_noise(torch.tensor([4]), 2, (2, 8), seed=1)
    assert together.shape == (2, 3, 2, 8)
    assert torch.equal(together[:, 1], alone[:, 0])
    assert not torch.equal(together[:, 0], together[:, 1])


def test_plms_with_an_ideal_denoiser_returns_the_signal():
    scheduler = build_pndm_scheduler(config(), 100)
    x0 = torch.randn(3, 2, 32)
    starts = start_points(scheduler, 8)
    noise = sample_noise(torch.arange(3), len(starts), (2, 32), seed=0)
    recon = reconstruct(OracleDenoiser(x0, scheduler.alphas_cumprod), scheduler, x0, starts, noise)
    mse = (recon - x0).pow(2).mean(dim=(1, 2, 3))
    # PLMS ends at alpha_bar[0] (MONAI's set_alpha_to_one=False), leaving noise of variance ~1 - alpha_bar[0].
    assert (mse < 3 * (1 - scheduler.alphas_cumprod[0])).all(), mse
    noisy_mse = (noise[-1] * (1 - scheduler.alphas_cumprod[starts[-1]]).sqrt()).pow(2).mean()
    assert noisy_mse > 100 * mse.max()


def test_envelope_error_sees_amplitude_and_ignores_phase():
    rng = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 64, generator=rng)
    angle = torch.tensor(0.7)
    rotated = torch.stack([x0[:, 0] * angle.cos() - x0[:, 1] * angle.sin(),
                           x0[:, 0] * angle.sin() + x0[:, 1] * angle.cos()], dim=1)
    errors = reconstruction_errors(x0, torch.stack([rotated, 2 * x0]))
    torch.testing.assert_close(errors["env"][0], torch.zeros(3), atol=1e-5, rtol=0)
    assert (errors["mse"][0] > 0.1).all()
    amplitude = x0.pow(2).sum(dim=1).sqrt()
    torch.testing.assert_close(errors["env"][1], amplitude.pow(2).mean(dim=-1))  # (2a - a)^2


def test_log_spectral_distance_is_the_gain_in_db_and_zero_for_a_copy():
    x0 = torch.randn(2, 2, 256, generator=torch.Generator().manual_seed(1))
    conjugate_rotation = torch.stack([-x0[:, 1], x0[:, 0]], dim=1)  # times j: the same spectrum
    errors = reconstruction_errors(x0, torch.stack([x0, 2 * x0, conjugate_rotation, x0 + 1.0]))
    torch.testing.assert_close(errors["lsd"][0], torch.zeros(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(errors["lsd"][1], torch.full((2,), 20 * math.log10(2)), atol=1e-3, rtol=0)
    torch.testing.assert_close(errors["lsd"][2], torch.zeros(2), atol=1e-4, rtol=0)
    assert (errors["mse"][2] > 1.0).all()
    assert (errors["lsd"][3] > 1.0).all()  # a DC offset piles power into one bin
