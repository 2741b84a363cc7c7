"""Multi-start reconstruction (Graham et al. 2023, section 3): start points, noise, the plain loop.

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
from src.runtime import autocast


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


def sample_noise(indices: torch.Tensor, n_starts: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise [n_starts, B, *shape] drawn per sample from (seed, sample index) alone; ``shape`` is one sample's
    ([C, L] for signals, [C, *spatial] for images and volumes).

    A sample's noise so does not depend on the batch it lands in, its position, or how many processes
    share the work; the same index in different sets gets the same noise (common random numbers).
    """
    noise = [torch.randn((n_starts, *shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
             for i in indices]
    return torch.stack(noise, dim=1)


@torch.inference_mode()
def reconstruct(model: nn.Module, scheduler: PNDMScheduler, x0: torch.Tensor, starts: list[int],
                noise: torch.Tensor, b_scale: float = 1.0, reset_history: bool = True) -> torch.Tensor:
    """Reconstruct ``x0`` [B, C, *spatial] from every start point; returns [n_starts, B, C, *spatial].

    One PLMS pass per start point, batched over the signals: the plain method of the paper. Each
    chain starts with an empty PLMS history; ``reset_history=False`` reproduces the research code's
    loop instead, where one scheduler runs every chain in turn and its history (``ets``, ``counter``)
    carries over from each chain into the next.
    """
    device = x0.device
    timesteps = scheduler.timesteps
    num_inference_steps = scheduler.num_inference_steps
    results = []
    scheduler.set_timesteps(num_inference_steps)
    for start, start_noise in zip(starts, noise):
        if reset_history:
            scheduler.set_timesteps(num_inference_steps)  # resets the PLMS history
        t = torch.full((x0.shape[0],), start, dtype=torch.long)
        sample = scheduler.add_noise(x0 * b_scale, start_noise.to(device), t.to(device))
        for step in timesteps[timesteps <= start]:
            with autocast(device):
                model_output = model(sample, step.to(device).expand(x0.shape[0])).float()
            sample, _ = scheduler.step(model_output, int(step), sample)
        results.append(sample / b_scale)
    return torch.stack(results)
