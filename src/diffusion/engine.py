"""The batched multi-start reconstruction engine.

The plain method (:func:`src.diffusion.multistart.reconstruct`) runs one PLMS chain per start
point, each from its start down to 0: the chain from t = 990 and the chain from t = 500 both call
the network at t = 490, in separate calls. Here every start point of a batch advances together in ONE
descending pass over the inference timesteps: at each timestep all chains whose start has been
reached are stepped in the same network call (chunked under ``max_chains``), with a vectorised PLMS
update that keeps each chain's own history. Given the same noise it reproduces MONAI's
``PNDMScheduler`` (``skip_prk_steps=True``) chain by chain, quirks included (tested).

Modes:
    plms     the paper's sampler (pseudo linear multi-step, Liu et al. 2022).
    ddim     deterministic DDIM steps (Song et al. 2021, eta = 0) over the same timesteps.
    onestep  one network call per start point: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).
    path     no noise: x0's own deterministic DDIM path up through the start points (DDIM inversion,
             one network call per start point, each step taken with the last call's epsilon) and the
             one-step x0 prediction at each; the errors so carry no noise draw's variance.
"""
from __future__ import annotations

import torch
from monai.networks.schedulers import PNDMScheduler
from torch import nn

from src.runtime import autocast

MODES = ("plms", "ddim", "onestep", "path")
ONE_CALL_MODES = ("onestep", "path")  # one network call per start point


def default_max_chains(device: torch.device) -> int:
    """Signals per network call: a GPU wants large calls; on a CPU, past a few hundred signals the
    activations fall out of cache and throughput drops (benchmarks/bench_reconstruct.py)."""
    return 4096 if device.type == "cuda" else 256

# PLMS weights of (this call's output, the last three stored outputs) by a chain's step counter k,
# exactly as MONAI's PNDMScheduler.step_plms combines them; k = 1 is the Heun-like correction.
PLMS_WEIGHTS = torch.tensor([
    [1.0, 0.0, 0.0, 0.0],
    [0.5, 0.5, 0.0, 0.0],
    [1.5, -0.5, 0.0, 0.0],
    [23 / 12, -16 / 12, 5 / 12, 0.0],
    [55 / 24, -59 / 24, 37 / 24, -9 / 24],
], dtype=torch.float64)


def expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-chain values [A] shaped to broadcast against chain tensors [A, B, ...] (floats in like's dtype)."""
    values = values.reshape(-1, *([1] * (like.dim() - 1)))
    return values if values.dtype == torch.bool else values.to(like.dtype)


class ScheduleTables:
    """alpha_bar lookups built once per engine, on the signal's device."""

    def __init__(self, scheduler: PNDMScheduler, device: torch.device) -> None:
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float64)
        self.final = scheduler.final_alpha_cumprod.to(device=device, dtype=torch.float64)
        self.step_ratio = scheduler.num_train_timesteps // scheduler.num_inference_steps
        self.prediction_type = scheduler.prediction_type
        self.timesteps = [int(t) for t in scheduler.timesteps]

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """abar_t, with the final value for t < 0 (MONAI's set_alpha_to_one=False convention)."""
        return torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], self.final)

    def to_epsilon(self, output: torch.Tensor, sample: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "v_prediction":
            return expand(abar.sqrt(), sample) * output + expand((1 - abar).sqrt(), sample) * sample
        return output

    def ddim_step(self, sample: torch.Tensor, output: torch.Tensor, t: torch.Tensor,
                  t_prev: torch.Tensor) -> torch.Tensor:
        """x_{t_prev} from x_t (formula (9) of Liu et al. 2022 = DDIM with eta = 0)."""
        abar, abar_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        eps = self.to_epsilon(output, sample, abar)
        x0 = (sample - expand((1 - abar).sqrt(), sample) * eps) / expand(abar.sqrt(), sample)
        return expand(abar_prev.sqrt(), sample) * x0 + expand((1 - abar_prev).sqrt(), sample) * eps


def call_model(model: nn.Module, chains: torch.Tensor, t: torch.Tensor, max_chains: int) -> torch.Tensor:
    """The network on chains [A, B, C, *spatial] at per-chain timesteps t [A], in chunks of <= max_chains signals."""
    flat = chains.reshape(-1, *chains.shape[2:])
    flat_t = t.repeat_interleave(chains.shape[1])
    outputs = []
    for start in range(0, len(flat), max_chains):
        with autocast(flat.device):
            outputs.append(model(flat[start:start + max_chains], flat_t[start:start + max_chains]).float())
    return torch.cat(outputs).reshape(chains.shape)


@torch.inference_mode()
def reconstruct_batched(model: nn.Module, scheduler: PNDMScheduler, x0: torch.Tensor, starts: list[int],
                        noise: torch.Tensor | None, b_scale: float = 1.0, mode: str = "plms",
                        max_chains: int | None = None, tables: ScheduleTables | None = None) -> torch.Tensor:
    """Reconstruct ``x0`` from every start point in ``starts`` (ascending); returns [S, *x0.shape].

    ``x0`` is [B, C, L] (signals), [B, C, H, W] (images) or [B, C, H, W, D] (volumes); ``noise`` [S, *x0.shape]
    is the noise of each start point, as in the plain method (unused, and may be None, in ``path`` mode).
    """
    tables = tables or ScheduleTables(scheduler, x0.device)
    device = x0.device
    max_chains = max_chains or default_max_chains(device)
    start_t = torch.tensor(starts, device=device)
    if mode == "path":
        return _inversion_path(model, tables, x0.float() * b_scale, start_t, max_chains) / b_scale
    x = torch.stack([scheduler.add_noise(x0 * b_scale, n.to(device), torch.full((len(x0),), s, device=device))
                     for s, n in zip(starts, noise)]).float()
    if mode == "onestep":
        output = call_model(model, x, start_t, max_chains)
        return _predict_x0(tables, x, output, start_t) / b_scale
    history = torch.zeros((len(starts), 3, *x0.shape), device=device)  # last three stored outputs
    first_sample = torch.zeros_like(x)  # each chain's x at its first step (PLMS correction)
    ratio = tables.step_ratio
    for t in (t for t in tables.timesteps if t <= starts[-1]):
        active = int((start_t < t).sum())  # starts ascend: chains [active:] have begun
        chains = slice(active, None)
        t_now = torch.full((len(starts) - active,), t, device=device)
        output = call_model(model, x[chains], t_now, max_chains)
        if mode == "ddim":
            x[chains] = tables.ddim_step(x[chains], output, t_now, t_now - ratio)
            continue
        k = (start_t[chains] - t) // ratio
        weights = PLMS_WEIGHTS.to(device)[k.clamp(max=4)]
        stored = history[chains]
        combined = expand(weights[:, 0], output) * output + sum(
            expand(weights[:, i + 1], output) * stored[:, 2 - i] for i in range(3))
        correcting = k == 1
        sample = torch.where(expand(correcting, x[chains]), first_sample[chains], x[chains])
        t_from = torch.where(correcting, t_now + ratio, t_now)
        x[chains] = tables.ddim_step(sample, combined, t_from, t_from - ratio)
        first_sample[chains] = torch.where(expand(k == 0, output), sample, first_sample[chains])
        pushed = torch.cat([stored[:, 1:], output[:, None]], dim=1)
        history[chains] = torch.where(expand(correcting, pushed), stored, pushed)
    return x / b_scale


def _predict_x0(tables: ScheduleTables, x: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    abar = tables.alpha_bar(t)
    eps = tables.to_epsilon(output, x, abar)
    return (x - expand((1 - abar).sqrt(), x) * eps) / expand(abar.sqrt(), x)


def _inversion_path(model: nn.Module, tables: ScheduleTables, x0: torch.Tensor, starts: torch.Tensor,
                    max_chains: int) -> torch.Tensor:
    """x0's DDIM inversion through ``starts`` (ascending) and the x0 prediction at each: [S, *x0.shape].

    The first call treats x0 itself as the sample at the lowest start point (abar 0.98 at t = 10 with the
    default schedule); each later point is reached by a DDIM step upward from the last prediction with
    the last epsilon.
    """
    sample, eps, predictions = x0[None], None, []
    for index in range(len(starts)):
        t = starts[index:index + 1]
        abar = tables.alpha_bar(t)
        if index:  # a DDIM step up from the last point: its x0 prediction and its epsilon
            sample = expand(abar.sqrt(), sample) * predictions[-1][None] + expand((1 - abar).sqrt(), sample) * eps
        output = call_model(model, sample, t, max_chains)
        eps = tables.to_epsilon(output, sample, abar)
        predictions.append(_predict_x0(tables, sample, output, t)[0])
    return torch.stack(predictions)
