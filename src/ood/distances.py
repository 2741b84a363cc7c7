"""How far a reconstruction lies from its signal: the per-(start point, signal) errors the scores read.

Four views of an RF signal [..., 2, T], each a column of the results files (``--metric`` picks them):

- ``mse``, ``mae``: the waveform, over channels and samples;
- ``env``: the mean squared error of the instantaneous amplitude (blind to phase, so it sees what
  the constellation's radius shows: a constant-envelope signal rebuilt with ripple);
- ``lsd``: the log-spectral distance, RMS over frequency of the dB difference between the Welch
  PSDs (:func:`src.dsp.welch_psd`) of signal and reconstruction.
"""
from __future__ import annotations

import torch

from src.dsp import envelope, welch_psd

DISTANCES = ("mse", "mae", "env", "lsd")
PSD_FLOOR = 1e-6  # relative to the signal's mean PSD: keeps empty bins from dominating the dB distance


def log_spectral_distance(x0: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """RMS over frequency of the difference in dB between the Welch PSDs of signal and reconstruction."""
    reference = welch_psd(x0)[None]
    floor = PSD_FLOOR * reference.mean(dim=-1, keepdim=True)
    decibels = 10 * (torch.log10(welch_psd(reconstructions) + floor) - torch.log10(reference + floor))
    return decibels.pow(2).mean(dim=-1).sqrt()


def reconstruction_errors(x0: torch.Tensor, reconstructions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors [n_starts, B] of reconstructions [n_starts, B, 2, T] of signals ``x0`` [B, 2, T], per view."""
    difference = reconstructions - x0[None]
    return {"mse": difference.pow(2).mean(dim=(-2, -1)), "mae": difference.abs().mean(dim=(-2, -1)),
            "env": (envelope(reconstructions) - envelope(x0)[None]).pow(2).mean(dim=-1),
            "lsd": log_spectral_distance(x0, reconstructions)}
