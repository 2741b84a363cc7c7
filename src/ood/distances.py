"""How far a reconstruction lies from its signal: the per-(start point, signal) errors the scores read.

Images and volumes [..., C, *spatial] get ``mse``, ``mae`` and ``ssim`` (1 - the structural
similarity of Wang et al. 2004, MONAI's ``SSIMMetric`` on intensities in [0, 1]). A perceptual
(LPIPS) error, as the research code used, needs pretrained network weights, which this toolkit does
not download; it is left out rather than faked.

Four views of an RF signal [..., 2, T], each a column of the results files (``--metric`` picks them):

- ``mse``, ``mae``: the waveform, over channels and samples;
- ``env``: the mean squared error of the instantaneous amplitude (blind to phase, so it sees what
  the constellation's radius shows: a constant-envelope signal rebuilt with ripple);
- ``lsd``: the log-spectral distance, RMS over frequency of the dB difference between the Welch
  PSDs (:func:`src.dsp.welch_psd`) of signal and reconstruction.
"""
from __future__ import annotations

import torch
from monai.metrics import SSIMMetric

from src.dsp import envelope, welch_psd

SIGNAL_DISTANCES = ("mse", "mae", "env", "lsd")
IMAGE_DISTANCES = ("mse", "mae", "ssim")
DISTANCES = ("mse", "mae", "env", "lsd", "ssim")
SSIM_WINDOW = 7  # Gaussian window (pixels), at most the smallest image side
PSD_FLOOR = 1e-6  # relative to the signal's mean PSD: keeps empty bins from dominating the dB distance


def spectral_difference(x0: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Per frequency bin, the dB difference reconstruction - signal of their Welch PSDs: [n_starts, B, bins].

    Negative where the signal holds power its reconstruction lacks (an interferer the model does not
    rebuild), positive where the reconstruction adds power. Bins in :func:`src.dsp.welch_psd`'s FFT order.
    """
    reference = welch_psd(x0)[None]
    floor = PSD_FLOOR * reference.mean(dim=-1, keepdim=True)
    return 10 * (torch.log10(welch_psd(reconstructions) + floor) - torch.log10(reference + floor))


def log_spectral_distance(x0: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """RMS over frequency of the difference in dB between the Welch PSDs of signal and reconstruction."""
    return spectral_difference(x0, reconstructions).pow(2).mean(dim=-1).sqrt()


def structural_error(x0: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """1 - SSIM [n_starts, B] of images ``x0`` [B, C, *spatial] and reconstructions [n_starts, B, C, *spatial].

    One start point at a time: SSIM's intermediate maps are several times the images' size, and all start
    points of a batch of volumes at once would need tens of GB.
    """
    spatial_dims = x0.dim() - 2
    window = min(SSIM_WINDOW, *x0.shape[2:])
    window -= 1 - window % 2  # odd
    metric = SSIMMetric(spatial_dims=spatial_dims, data_range=1.0, win_size=window)
    reference = x0.float()
    similarity = [metric(reconstruction.float().clamp(0.0, 1.0), reference).reshape(len(x0))
                  for reconstruction in reconstructions]
    return 1.0 - torch.stack(similarity)


def reconstruction_errors(x0: torch.Tensor, reconstructions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors [n_starts, B] of reconstructions [n_starts, B, C, ...] of ``x0`` [B, C, ...], per view:
    :data:`SIGNAL_DISTANCES` for signals [B, 2, T], :data:`IMAGE_DISTANCES` for images and volumes."""
    difference = reconstructions - x0[None]
    if x0.dim() > 3:
        spatial = tuple(range(2, difference.dim()))
        return {"mse": difference.pow(2).mean(dim=spatial), "mae": difference.abs().mean(dim=spatial),
                "ssim": structural_error(x0, reconstructions)}
    return {"mse": difference.pow(2).mean(dim=(-2, -1)), "mae": difference.abs().mean(dim=(-2, -1)),
            "env": (envelope(reconstructions) - envelope(x0)[None]).pow(2).mean(dim=-1),
            "lsd": log_spectral_distance(x0, reconstructions)}
