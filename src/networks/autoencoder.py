"""The plain autoencoder baseline: MONAI's convolutional AutoEncoder, run in 1D, with a bottleneck.

Its reconstruction error is the classic OOD score that the diffusion models are compared with.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoEncoder
from torch import nn


class SignalAutoEncoder(nn.Module):
    """Strided residual conv encoder/decoder; any length in, same length out.

    Args:
        in_channels: signal channels (2 for I/Q).
        channels: widths of the down-sampling levels, each halving the length.
        latent_channels: width of the last level, the bottleneck: a signal [2, L] is squeezed into
            [latent_channels, L / 2^(levels)], 16 / latent_channels times fewer numbers for 3 levels.
        num_res_units: residual units per level.
    """

    def __init__(self, in_channels: int = 2, channels: Sequence[int] = (32, 64), latent_channels: int = 4,
                 num_res_units: int = 1) -> None:
        super().__init__()
        widths = (*channels, latent_channels)
        # Pad to twice the down-sampling: the bottleneck keeps >= 2 samples, which instance norm needs.
        self.pad_multiple = 2 ** (len(widths) + 1)
        self.net = AutoEncoder(spatial_dims=1, in_channels=in_channels, out_channels=in_channels, channels=widths,
                               strides=(2,) * len(widths), num_res_units=num_res_units)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct ``x``; ``timesteps`` is accepted and ignored so every model shares one call."""
        length = x.shape[-1]
        return self.net(F.pad(x, (0, -length % self.pad_multiple)))[..., :length]
