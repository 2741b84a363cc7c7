"""A DiffWave-style WaveNet denoiser for IQ signals [B, 2, L] (Kong et al. 2021, "DiffWave").

Gated, dilated residual layers with skip connections; the diffusion step enters EVERY layer through
its own projection of a shared step embedding (the research fork passed t to a WaveNet that ignored
it, which makes a poor denoiser). Layer outputs follow DiffWave: ``(x + residual) / sqrt(2)`` and
skips summed and scaled by 1 / sqrt(layers); the output layer starts at zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from src.networks.unet import timestep_embedding, zero_init

EMBED_DIM = 128


class ResidualLayer(nn.Module):
    """Dilated conv on x + step projection, tanh/sigmoid gate, split into residual and skip."""

    def __init__(self, channels: int, dilation: int, embed_dim: int) -> None:
        super().__init__()
        self.step_projection = nn.Linear(embed_dim, channels)
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, filtered = self.dilated_conv(x + self.step_projection(step)[:, :, None]).chunk(2, dim=1)
        residual, skip = self.output_projection(torch.sigmoid(gate) * torch.tanh(filtered)).chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class WaveNet1D(nn.Module):
    """Time-conditioned WaveNet predicting noise (or velocity) for signals [B, in_channels, L].

    Args:
        in_channels / out_channels: signal channels (2 for I/Q).
        residual_layers: number of gated residual layers.
        residual_channels: width of every layer.
        dilation_cycle_length: dilations run 1, 2, ..., 2^(cycle-1) and repeat.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 2, residual_layers: int = 18,
                 residual_channels: int = 64, dilation_cycle_length: int = 6) -> None:
        super().__init__()
        self.input_projection = nn.Conv1d(in_channels, residual_channels, 1)
        self.step_mlp = nn.Sequential(nn.Linear(EMBED_DIM, 4 * EMBED_DIM), nn.SiLU(),
                                      nn.Linear(4 * EMBED_DIM, 4 * EMBED_DIM), nn.SiLU())
        self.layers = nn.ModuleList(
            ResidualLayer(residual_channels, 2 ** (i % dilation_cycle_length), 4 * EMBED_DIM)
            for i in range(residual_layers))
        self.skip_projection = nn.Conv1d(residual_channels, residual_channels, 1)
        self.output_projection = zero_init(nn.Conv1d(residual_channels, out_channels, 1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        step = self.step_mlp(timestep_embedding(timesteps.expand(x.shape[0]), EMBED_DIM))
        h = F.relu(self.input_projection(x))
        skips = 0.0
        for layer in self.layers:
            h, skip = layer(h, step)
            skips = skips + skip
        h = F.relu(self.skip_projection(skips / math.sqrt(len(self.layers))))
        return self.output_projection(h)
