"""A 1D VQ-VAE for IQ signals [B, 2, L]: the first stage of a latent diffusion model.

The encoder maps a signal to a shorter sequence of ``embedding_dim``-dimensional vectors; each is
replaced by its nearest entry of a learned codebook; the decoder maps the result back to a signal
(van den Oord et al. 2017, "Neural Discrete Representation Learning"). Training minimises
reconstruction error plus ``commitment_cost * ||z_e - sg(z_q)||^2``; gradients skip the
non-differentiable nearest-code lookup through the straight-through estimator.

The codebook is not trained by gradient descent but as an exponential moving average (EMA) of the
encoder outputs assigned to each code (appendix of van den Oord et al. 2017; Razavi et al. 2019,
"VQ-VAE-2"). Codes that stop being chosen are restarted at random encoder outputs of the current
batch (Dhariwal et al. 2020, "Jukebox"; Zeghidour et al. 2021, "SoundStream"), which keeps the
whole codebook in use. Any length works: the input is zero-padded to a multiple of
``downsampling`` and the output cropped back, so reconstruction shape == input shape.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.networks.unet import zero_init

EPSILON = 1e-5  # Laplace smoothing of the EMA cluster sizes


def codebook_usage(codes: Tensor, num_embeddings: int) -> tuple[float, float]:
    """(perplexity, fraction of codes used) of a batch of code indices.

    Perplexity is exp(entropy) of the code frequencies: 1 when one code is used, K when K codes
    are used equally often. The fraction is distinct codes used / ``num_embeddings``.
    """
    flat = codes.reshape(-1).long()
    if flat.numel() == 0:
        raise ValueError("codebook_usage needs at least one code")
    if flat.min() < 0 or flat.max() >= num_embeddings:
        raise ValueError(f"codes must lie in [0, {num_embeddings}), got [{flat.min()}, {flat.max()}]")
    counts = torch.bincount(flat, minlength=num_embeddings).double()
    p = counts[counts > 0] / flat.numel()
    perplexity = torch.exp(-(p * p.log()).sum()).item()
    return perplexity, (counts > 0).sum().item() / num_embeddings


class EMAQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with an EMA codebook and dead-code restarts.

    Buffers (all in state_dict): ``embedding`` [K, D] the codebook, ``cluster_size`` [K] the EMA of
    how many vectors each code receives per batch, ``embed_sum`` [K, D] the EMA of their sum. In
    training mode each call updates them (no gradients): ``N <- d N + (1-d) n``,
    ``m <- d m + (1-d) sum(z)``, ``e = m / N~`` with N~ the Laplace-smoothed ``N``. Then every code
    with ``cluster_size < dead_code_threshold`` (used less than that many times per batch, on
    average) is moved to a random encoder output of the batch and its statistics restarted at the
    threshold. Eval mode leaves every buffer unchanged. Distances and updates run in float32 even
    under autocast.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, commitment_cost: float = 0.25,
                 decay: float = 0.99, dead_code_threshold: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must lie in [0, 1), got {decay}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.commitment_cost, self.decay, self.dead_code_threshold = commitment_cost, decay, dead_code_threshold
        embedding = torch.randn(num_embeddings, embedding_dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.ones(num_embeddings))
        self.register_buffer("embed_sum", embedding.clone())

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (squared L2) for each row of ``flat`` [N, D] -> [N]."""
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.t()
                     + self.embedding.pow(2).sum(1)[None])
        return distances.argmin(1)

    @torch.no_grad()
    def update(self, flat: Tensor, codes: Tensor) -> None:
        """One EMA step of the codebook statistics from ``flat`` [N, D] assigned to ``codes`` [N]."""
        one_hot = F.one_hot(codes, self.num_embeddings).to(flat.dtype)  # matmul, not index_add_: deterministic on GPU
        self.cluster_size.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(one_hot.t() @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + EPSILON) / (total + self.num_embeddings * EPSILON) * total
        self.embedding.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, flat: Tensor) -> None:
        """Move codes with ``cluster_size < dead_code_threshold`` onto random rows of ``flat``."""
        dead = self.cluster_size < self.dead_code_threshold
        count = int(dead.sum())
        if count == 0:
            return
        chosen = flat[torch.randint(0, flat.shape[0], (count,), device=flat.device)]
        self.embedding[dead] = chosen
        self.embed_sum[dead] = chosen * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold

    def forward(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, D, L'] -> (z_q straight-through [B, D, L'] float32, commitment loss, codes [B, L'])."""
        with torch.autocast(z_e.device.type, enabled=False):  # matmuls would otherwise drop to 16 bits
            return self.quantize(z_e.float())

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The body of :meth:`forward`, for float32 ``z_e`` with autocast off."""
        batch, dim, length = z_e.shape
        flat = z_e.permute(0, 2, 1).reshape(-1, dim)
        codes = self.nearest(flat.detach())
        z_q = self.embedding[codes].reshape(batch, length, dim).permute(0, 2, 1)
        if self.training:
            self.update(flat.detach(), codes)
            self.restart_dead_codes(flat.detach())
        loss = self.commitment_cost * F.mse_loss(z_e, z_q.detach())
        return z_e + (z_q - z_e).detach(), loss, codes.reshape(batch, length)


class ResidualLayer(nn.Module):
    """ReLU-Conv3-ReLU-Conv1 added to its input; the last conv starts at zero (identity block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.ReLU(), nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(),
                                    zero_init(nn.Conv1d(channels, channels, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


class ResidualStack(nn.Sequential):
    """``num_layers`` blocks x + Conv1(ReLU(Conv3(ReLU(x)))), then a ReLU (as in van den Oord et al.)."""

    def __init__(self, channels: int, num_layers: int) -> None:
        super().__init__(*(ResidualLayer(channels) for _ in range(num_layers)), nn.ReLU())


class VQVAE1D(nn.Module):
    """Convolutional VQ-VAE for signals [B, in_channels, L] with an EMA codebook.

    Args:
        in_channels: signal channels (2 for I/Q).
        channels: width per down-sampling level; each level halves the length, so
            ``downsampling = 2 ** len(channels)`` and latents have length ceil(L / downsampling).
        num_res_layers: residual blocks at the lowest resolution, in encoder and in decoder.
        embedding_dim: latent channels D (what a latent diffusion model sees).
        num_embeddings: codebook size K.
        commitment_cost: weight beta of the commitment loss.
        ema_decay: decay d of the codebook's moving averages.
        dead_code_threshold: codes whose EMA use per batch falls below this are restarted;
            0 disables restarts.
    """

    def __init__(self, in_channels: int = 2, channels: Sequence[int] = (32, 64), num_res_layers: int = 2,
                 embedding_dim: int = 16, num_embeddings: int = 256, commitment_cost: float = 0.25,
                 ema_decay: float = 0.99, dead_code_threshold: float = 1.0) -> None:
        super().__init__()
        if len(channels) == 0:
            raise ValueError("channels needs at least one level")
        self.downsampling = 2 ** len(channels)
        widths = [channels[0], *channels]

        encoder = [nn.Conv1d(in_channels, channels[0], 3, padding=1)]
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            encoder += [nn.Conv1d(width_in, width_out, 4, stride=2, padding=1), nn.ReLU()]
        encoder += [ResidualStack(channels[-1], num_res_layers), nn.Conv1d(channels[-1], embedding_dim, 1)]
        self.encoder = nn.Sequential(*encoder)

        self.quantizer = EMAQuantizer(num_embeddings, embedding_dim, commitment_cost, ema_decay,
                                      dead_code_threshold)

        decoder = [nn.Conv1d(embedding_dim, channels[-1], 1), ResidualStack(channels[-1], num_res_layers)]
        for width_in, width_out in zip(widths[::-1][:-1], widths[::-1][1:]):
            decoder += [nn.ConvTranspose1d(width_in, width_out, 4, stride=2, padding=1), nn.ReLU()]
        decoder.append(nn.Conv1d(channels[0], in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, L] -> continuous latents z_e [B, D, ceil(L / downsampling)]."""
        return self.encoder(F.pad(x, (0, -x.shape[-1] % self.downsampling)))

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_e [B, D, L'] -> (z_q straight-through, commitment loss, codes [B, L'])."""
        return self.quantizer(z_e)

    def decode(self, z: Tensor, length: int | None = None) -> Tensor:
        """Latents [B, D, L'] -> [B, C, L' * downsampling], cropped to ``length`` when given."""
        out = self.decoder(z)
        return out if length is None else out[..., :length]

    def encode_quantized(self, x: Tensor) -> Tensor:
        """Encode then quantise: z_q [B, D, L'], the latents a latent diffusion model works on."""
        return self.quantize(self.encode(x))[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, C, L] -> (reconstruction [B, C, L], commitment loss, codes [B, ceil(L / downsampling)])."""
        z_q, loss, codes = self.quantize(self.encode(x))
        return self.decode(z_q, length=x.shape[-1]), loss, codes
