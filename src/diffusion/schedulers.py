"""MONAI DDPM (training) and PNDM/PLMS (reconstruction) schedulers built from a run's config.

Every schedule choice, the SNR shift included, is a constructor argument: the shift is a named
MONAI noise schedule (``snr_shifted``) rather than a patch applied to a built scheduler. As in the
research code, ``snr_shift`` multiplies the schedule's signal-to-noise ratio at every t (values
above 1 make every t less noisy).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from monai.networks.schedulers import DDPMScheduler, NoiseSchedules, PNDMScheduler

from src.errors import UserError

NUM_TRAIN_TIMESTEPS = 1000
SCHEDULE_KEYS = ("beta_schedule", "beta_start", "beta_end", "prediction_type", "b_scale", "snr_shift")


@NoiseSchedules.add_def("snr_shifted", "A named beta schedule with its SNR multiplied by snr_shift at every t")
def _snr_shifted(num_train_timesteps: int, base: str, snr_shift: float, **base_args):
    """SNR'(t) = SNR(t) * snr_shift, SNR = abar / (1 - abar): the research code's shift (cf. Hoogeboom
    et al. 2023, "simple diffusion", who shift by the inverse factor for larger images)."""
    betas = NoiseSchedules[base](num_train_timesteps, **base_args)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    snr = alphas_cumprod / (1.0 - alphas_cumprod) * snr_shift
    shifted_cumprod = snr / (1.0 + snr)
    alphas = shifted_cumprod / torch.cat([torch.ones(1), shifted_cumprod[:-1]])
    return 1.0 - alphas, alphas, shifted_cumprod


@dataclass(frozen=True)
class NoiseSchedule:
    """The noise-schedule flags (:func:`add_scheduler_args`): the defaults are training's; a later stage's None
    leaves one as the run's config.json (:data:`FROM_CONFIG`)."""

    beta_schedule: str | None = "scaled_linear_beta"
    beta_start: float | None = 0.0015
    beta_end: float | None = 0.0195
    prediction_type: str | None = "epsilon"
    b_scale: float | None = 1.0
    snr_shift: float | None = 1.0


FROM_CONFIG = NoiseSchedule(*(None,) * len(SCHEDULE_KEYS))


def add_scheduler_args(parser: argparse.ArgumentParser, training: bool) -> None:
    """Noise-schedule flags. Training sets them; later stages default to None = "from config.json"."""
    defaults = NoiseSchedule()

    def option(name, help_text, **kwargs):
        value = getattr(defaults, name.removeprefix("--"))
        suffix = f" (default: {value})" if training else " (default: from the run's config.json)"
        parser.add_argument(name, default=value if training else None, help=help_text + suffix, **kwargs)

    option("--beta_schedule", "MONAI noise schedule", choices=["linear_beta", "scaled_linear_beta"])
    option("--beta_start", "first beta", type=float)
    option("--beta_end", "last beta", type=float)
    option("--prediction_type", "what the network predicts", choices=["epsilon", "v_prediction"])
    option("--b_scale", "signals are multiplied by this before noising and divided after", type=float)
    option("--snr_shift", "multiply the schedule's signal-to-noise ratio at every t by this, as the research code "
           "does (1 = no shift; > 1: less noise at every t)", type=float)


def scheduler_config(beta_schedule: str, beta_start: float, beta_end: float, prediction_type: str,
                     b_scale: float, snr_shift: float) -> dict:
    """The ``scheduler`` section of config.json; refuses values that make no noise schedule."""
    check_schedule(dict(beta_start=beta_start, beta_end=beta_end, b_scale=b_scale, snr_shift=snr_shift))
    return dict(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=beta_schedule, beta_start=beta_start,
                beta_end=beta_end, prediction_type=prediction_type, b_scale=b_scale, snr_shift=snr_shift)


def check_schedule(config: dict) -> None:
    """One line for schedule flags (or a config.json) that make no schedule: 0 < beta_start <= beta_end < 1."""
    start, end = config["beta_start"], config["beta_end"]
    if not 0.0 < start <= end < 1.0:
        raise UserError(f"--beta_start={start} and --beta_end={end} make no noise schedule; betas must satisfy "
                        "0 < beta_start <= beta_end < 1 (e.g. 0.0015 and 0.0195)")
    for key in ("b_scale", "snr_shift"):
        if not config[key] > 0:
            raise UserError(f"--{key}={config[key]} makes no noise schedule; it must be positive (1 = no change)")


def _schedule_kwargs(config: dict) -> dict:
    check_schedule(config)
    base = dict(beta_start=config["beta_start"], beta_end=config["beta_end"])
    if config["snr_shift"] == 1.0:
        return dict(schedule=config["beta_schedule"], **base)
    return dict(schedule="snr_shifted", base=config["beta_schedule"], snr_shift=config["snr_shift"], **base)


def build_ddpm_scheduler(config: dict) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config["num_train_timesteps"],
                         prediction_type=config["prediction_type"], **_schedule_kwargs(config))


def build_pndm_scheduler(config: dict, num_inference_steps: int) -> PNDMScheduler:
    """PLMS sampling as in the paper: PNDM with ``skip_prk_steps=True``."""
    scheduler = PNDMScheduler(num_train_timesteps=config["num_train_timesteps"], skip_prk_steps=True,
                              prediction_type=config["prediction_type"], **_schedule_kwargs(config))
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


def training_target(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """What the network learns to predict: the noise, or the velocity (Salimans & Ho 2022)."""
    if scheduler.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    return noise
