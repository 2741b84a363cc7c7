"""Multi-start reconstruction (Graham et al. 2023, section 3).

For each start point t: x_t = add_noise(b_scale * x_0, noise, t); denoise with PLMS (MONAI's
PNDMScheduler, ``skip_prk_steps=True``) through every inference timestep <= t down to 0; divide by
b_scale. Start points are ``reversed(timesteps)[1::inference_skip_factor]``: with 100 inference
steps over 1000 training steps, skip 1 gives 99 start points (t = 10 ... 990), skip 4 gives 25.
"""
from __future__ import annotations

import torch
from monai.networks.schedulers import PNDMScheduler
from torch import nn

from src.errors import UserError
from src.trainers.runtime import autocast


def start_points(scheduler: PNDMScheduler, inference_skip_factor: int) -> list[int]:
    """The noise levels t to reconstruct from, ascending."""
    steps = len(scheduler.timesteps)
    if not 0 < inference_skip_factor < steps:
        raise UserError(f"--inference_skip_factor must lie in 1..{steps - 1} for {steps} inference steps, "
                        f"got {inference_skip_factor}")
    return [int(t) for t in scheduler.timesteps.flip(0)[1::inference_skip_factor]]


def model_evaluations(scheduler: PNDMScheduler, starts: list[int]) -> int:
    """Network calls one signal costs: one per inference timestep <= t, summed over start points."""
    return sum(int((scheduler.timesteps <= t).sum()) for t in starts)


def sample_noise(indices: torch.Tensor, n_starts: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    """Noise [n_starts, B, C, L] drawn per sample from (seed, sample index) alone.

    A sample's noise so does not depend on the batch it lands in, its position, or how many processes
    share the work; the same index in different sets gets the same noise (common random numbers).
    """
    noise = [torch.randn((n_starts, *shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
             for i in indices]
    return torch.stack(noise, dim=1)


@torch.inference_mode()
def reconstruct(model: nn.Module, scheduler: PNDMScheduler, x0: torch.Tensor, starts: list[int],
                noise: torch.Tensor, b_scale: float = 1.0) -> torch.Tensor:
    """Reconstruct ``x0`` [B, C, L] from every start point; returns [n_starts, B, C, L].

    One PLMS pass per start point, batched over the signals: the plain method of the paper.
    """
    device = x0.device
    timesteps = scheduler.timesteps
    num_inference_steps = scheduler.num_inference_steps
    results = []
    for start, start_noise in zip(starts, noise):
        scheduler.set_timesteps(num_inference_steps)  # resets the PLMS history
        t = torch.full((x0.shape[0],), start, dtype=torch.long)
        sample = scheduler.add_noise(x0 * b_scale, start_noise.to(device), t.to(device))
        for step in timesteps[timesteps <= start]:
            with autocast(device):
                model_output = model(sample, step.to(device).expand(x0.shape[0])).float()
            sample, _ = scheduler.step(model_output, int(step), sample)
        results.append(sample / b_scale)
    return torch.stack(results)


PSD_SEGMENT = 64  # Welch segment length (samples) of the spectral error
PSD_FLOOR = 1e-6  # relative to the signal's mean PSD: keeps empty bins from dominating the dB distance


def welch_psd(signals: torch.Tensor, segment: int = PSD_SEGMENT) -> torch.Tensor:
    """Two-sided power spectral density of I + jQ: Hann-windowed segments, half overlap, averaged.

    ``signals`` [..., 2, T] -> [..., segment] (segment = min(segment, T)), unnormalised frequency order.
    """
    segment = min(segment, signals.shape[-1])
    iq = torch.complex(signals[..., 0, :].float(), signals[..., 1, :].float())
    pieces = iq.unfold(-1, segment, max(1, segment // 2))
    window = torch.hann_window(segment, periodic=False, device=signals.device) if segment > 1 else torch.ones(1)
    return torch.fft.fft(pieces * window, dim=-1).abs().pow(2).mean(dim=-2)


def log_spectral_distance(x0: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """RMS over frequency of the difference in dB between the Welch PSDs of signal and reconstruction."""
    reference = welch_psd(x0)[None]
    floor = PSD_FLOOR * reference.mean(dim=-1, keepdim=True)
    decibels = 10 * (torch.log10(welch_psd(reconstructions) + floor) - torch.log10(reference + floor))
    return decibels.pow(2).mean(dim=-1).sqrt()


def envelope(signals: torch.Tensor) -> torch.Tensor:
    """Instantaneous amplitude sqrt(I^2 + Q^2): [..., 2, T] -> [..., T]."""
    return signals.float().pow(2).sum(dim=-2).sqrt()


def reconstruction_errors(x0: torch.Tensor, reconstructions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-(start point, signal) errors [n_starts, B] in three views of an RF signal:

    - waveform: ``mse`` and ``mae`` over channels and samples;
    - envelope: ``env``, the mean squared error of the instantaneous amplitude (blind to phase, so it
      sees what the constellation's radius shows: a constant-envelope signal rebuilt with ripple);
    - spectrum: ``lsd``, the log-spectral distance in dB (:func:`log_spectral_distance`).
    """
    difference = reconstructions - x0[None]
    return {"mse": difference.pow(2).mean(dim=(-2, -1)), "mae": difference.abs().mean(dim=(-2, -1)),
            "env": (envelope(reconstructions) - envelope(x0)[None]).pow(2).mean(dim=-1),
            "lsd": log_spectral_distance(x0, reconstructions)}
