"""A 1D diffusion UNet for IQ signals [B, 2, L].

The layout follows Ho et al. (2020) and Dhariwal & Nichol (2021): sinusoidal timestep embedding,
residual blocks conditioned on it, group norm, self-attention at chosen resolutions, skip
connections between matching levels. Any length works: the input is zero-padded to a multiple of
the total down-sampling factor and the output cropped back, so output shape == input shape.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, [B] -> [B, dim] (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


def zero_init(module: nn.Module) -> nn.Module:
    """Start a residual branch at zero so each block begins as the identity."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the time embedding added between (scale-free, as in DDPM)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv1d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv1d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the time axis, as a residual branch."""

    def __init__(self, channels: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One function, two ways, each where it was measured fastest (one thread, the small UNet's middle level: 64
        channels over 64 positions; docs/benchmarks.md). PyTorch's attention is fastest on q, k, v with contiguous
        channels, which :meth:`time_major` gives: in fp32 25 against 35 ms at batch 256 without gradients (the
        channel-major views before), 15 against 23 ms a training step at batch 64. Under CPU bf16 autocast
        :meth:`by_matmul` beats it: 12-17 against 18-22 ms, and 10 against 16-18 ms a step."""
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return self.by_matmul(x)
        return self.time_major(x)

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Attention on [B, L, C] rows: the 1x1 convolutions as matmuls, q, k and v with contiguous channels."""
        batch, channels, length = x.shape
        rows = self.norm(x).transpose(1, 2)  # [B, L, C]
        qkv = F.linear(rows, self.qkv.weight.squeeze(-1), self.qkv.bias)
        q, k, v = qkv.reshape(batch, length, 3, self.heads, channels // self.heads).unbind(2)  # [B, L, heads, C/heads]
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = F.linear(h.transpose(1, 2).reshape(batch, length, channels), self.proj.weight.squeeze(-1), self.proj.bias)
        return x + out.transpose(1, 2)

    def by_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """Attention written out on the channel-major [B, heads, C/heads, L] views: softmax(q^T k / sqrt(d)), then v
        weighted by it."""
        batch, channels, length = x.shape
        heads = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, length)
        q, k, v = heads.unbind(1)  # [B, heads, C/heads, L]
        weights = torch.softmax((q.transpose(-1, -2) @ k) * (channels // self.heads) ** -0.5, dim=-1)  # [B, h, L, L]
        return x + self.proj((v @ weights.transpose(-1, -2)).reshape(batch, channels, length))


class Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(self, channels_in: Sequence[int], out_ch: int, emb_dim: int, groups: int, dropout: float,
                 attention: bool, head_channels: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c, out_ch, emb_dim, groups, dropout) for c in channels_in)
        self.attentions = nn.ModuleList(
            SelfAttention(out_ch, groups, head_channels) if attention else nn.Identity() for _ in channels_in)


class UNet1D(nn.Module):
    """Time-conditioned 1D UNet predicting noise (or velocity) for signals [B, in_channels, L].

    Args:
        in_channels / out_channels: signal channels (2 for I/Q).
        channels: feature width per level; each level after the first halves the length.
        attention_levels: one bool per level: self-attention after each residual block there.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        norm_num_groups: GroupNorm groups; must divide every width.
        num_head_channels: channels per attention head.
        dropout: dropout inside residual blocks.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 2, channels: Sequence[int] = (32, 64, 128),
                 attention_levels: Sequence[bool] = (False, False, True), num_res_blocks: int = 1,
                 norm_num_groups: int = 8, num_head_channels: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if len(attention_levels) != len(channels):
            raise ValueError("attention_levels needs one entry per level of channels")
        if any(width % norm_num_groups for width in channels):
            raise ValueError(f"every width in {tuple(channels)} must be divisible by norm_num_groups={norm_num_groups}")
        self.downsampling = 2 ** (len(channels) - 1)
        emb_dim = 4 * channels[0]
        self.base_channels = channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv1d(in_channels, channels[0], 3, padding=1)
        common = dict(emb_dim=emb_dim, groups=norm_num_groups, dropout=dropout, head_channels=num_head_channels)

        self.down, self.downsamplers, skips, width = nn.ModuleList(), nn.ModuleList(), [channels[0]], channels[0]
        for level, (out_ch, attention) in enumerate(zip(channels, attention_levels)):
            inputs = [width] + [out_ch] * (num_res_blocks - 1)
            self.down.append(Level(inputs, out_ch, attention=attention, **common))
            width = out_ch
            skips += [out_ch] * num_res_blocks
            if level < len(channels) - 1:
                self.downsamplers.append(nn.Conv1d(width, width, 3, stride=2, padding=1))
                skips.append(width)

        self.mid = Level([width, width], width, attention=True, **common)

        self.up, self.upsamplers = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(channels))):
            out_ch = channels[level]
            inputs = []
            for _ in range(num_res_blocks + 1):
                inputs.append(width + skips.pop())
                width = out_ch
            self.up.append(Level(inputs, out_ch, attention=attention_levels[level], **common))
            if level > 0:
                self.upsamplers.append(nn.Conv1d(width, width, 3, padding=1))

        self.out = nn.Sequential(nn.GroupNorm(norm_num_groups, width), nn.SiLU(),
                                 zero_init(nn.Conv1d(width, out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        x = F.pad(x, (0, -length % self.downsampling))
        emb = self.time_mlp(timestep_embedding(timesteps.expand(x.shape[0]), self.base_channels))

        h = self.conv_in(x)
        skips = [h]
        for index, level in enumerate(self.down):
            for block, attention in zip(level.blocks, level.attentions):
                h = attention(block(h, emb))
                skips.append(h)
            if index < len(self.downsamplers):
                h = self.downsamplers[index](h)
                skips.append(h)

        for block, attention in zip(self.mid.blocks, self.mid.attentions):
            h = attention(block(h, emb))

        for index, level in enumerate(self.up):
            for block, attention in zip(level.blocks, level.attentions):
                h = attention(block(torch.cat([h, skips.pop()], dim=1), emb))
            if index < len(self.upsamplers):
                h = self.upsamplers[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))

        return self.out(h)[..., :length]
