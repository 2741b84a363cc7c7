"""MONAI networks for 2D images [B, C, H, W] and 3D volumes [B, C, H, W, D], built from plain values.

The wrappers take JSON values only (lists, numbers, booleans), so the ``network`` section of
config.json rebuilds them; :mod:`src.networks.registry` holds their presets and defaults.

* :class:`ImageUNet`: MONAI's ``DiffusionModelUNet`` (the denoiser), called as
  ``model(x, t) -> same shape as x`` (noise or velocity). Self-attention needs the ``einops`` package.
* :class:`ImageAutoEncoder`: MONAI's convolutional ``AutoEncoder``, the reconstruction baseline,
  ``model(x) -> reconstruction``.
* :class:`ImageVQVAE`: MONAI's ``VQVAE`` (EMA codebook), the first stage of a latent diffusion model,
  with the interface of :class:`src.networks.vqvae.VQVAE1D`: ``forward(x) -> (reconstruction,
  commitment loss, codes)``, ``encode``, ``quantize``, ``encode_quantized``, ``decode(z, length=...)``.

Every wrapper pads its input with zeros to a multiple of its down-sampling factor and crops the
output back, so any spatial size works and output shape == input shape. The VQ-VAE's latents are
smaller by ``2 ** len(channels)`` per spatial dimension (rounded up); a UNet on them pads them
itself, to a multiple of ``2 ** (len(unet channels) - 1)`` (the research code's ``latent_pad``):
:func:`pad_to_multiple` and :func:`crop_spatial` are the two halves of that.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import VQVAE, AutoEncoder, DiffusionModelUNet
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------------
# Padding helpers
# --------------------------------------------------------------------------------------------------

def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad every spatial dimension of ``x`` [B, C, *spatial] at its end to a multiple of ``multiple``."""
    padding: list[int] = []
    for size in reversed(x.shape[2:]):  # F.pad lists the last dimension first
        padding += [0, -size % multiple]
    return F.pad(x, padding)


def crop_spatial(x: Tensor, spatial_shape: Sequence[int]) -> Tensor:
    """Keep the first ``spatial_shape`` entries of each spatial dimension (undoes :func:`pad_to_multiple`)."""
    return x[(slice(None), slice(None), *(slice(0, int(size)) for size in spatial_shape))]


def _target_shape(x: Tensor, length: int | Sequence[int] | None) -> Sequence[int]:
    """Spatial shape to crop to: ``length`` per dimension, one int for every dimension, or all of ``x``."""
    if length is None:
        return x.shape[2:]
    if isinstance(length, int):
        return [length] * (x.ndim - 2)
    return list(length)


# --------------------------------------------------------------------------------------------------
# Wrappers
# --------------------------------------------------------------------------------------------------

class ImageUNet(nn.Module):
    """Time-conditioned denoiser for [B, in_channels, *spatial]: MONAI's ``DiffusionModelUNet``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image (or latent) channels; the output has as many.
        channels, attention_levels, num_res_blocks, norm_num_groups, num_head_channels: as in
            ``DiffusionModelUNet``; each level after the first halves every spatial size.
        unet_kwargs: any other ``DiffusionModelUNet`` argument (e.g. ``use_flash_attention``).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int],
                 attention_levels: Sequence[bool], num_res_blocks: int = 1, norm_num_groups: int = 8,
                 num_head_channels: int = 32, **unet_kwargs) -> None:
        super().__init__()
        self.downsampling = 2 ** (len(channels) - 1)
        self.net = DiffusionModelUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
                                      channels=tuple(channels), attention_levels=tuple(attention_levels),
                                      num_res_blocks=num_res_blocks, norm_num_groups=norm_num_groups,
                                      num_head_channels=num_head_channels, **unet_kwargs)

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        """x [B, C, *spatial], timesteps [B] or a single one -> prediction of the same shape as x."""
        timesteps = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        return crop_spatial(self.net(pad_to_multiple(x, self.downsampling), timesteps), x.shape[2:])


class ImageAutoEncoder(nn.Module):
    """Strided residual conv encoder/decoder (MONAI ``AutoEncoder``), any size in, same size out.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels: widths of the down-sampling levels, each halving every spatial size.
        latent_channels: width of the last level, the bottleneck.
        num_res_units: residual units per level.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (32, 64),
                 latent_channels: int = 4, num_res_units: int = 1) -> None:
        super().__init__()
        widths = (*channels, latent_channels)
        # Twice the down-sampling: the bottleneck keeps >= 2 voxels per axis, which instance norm needs.
        self.pad_multiple = 2 ** (len(widths) + 1)
        self.net = AutoEncoder(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
                               channels=widths, strides=(2,) * len(widths), num_res_units=num_res_units)

    def forward(self, x: Tensor, timesteps: Tensor | None = None) -> Tensor:
        """Reconstruct ``x``; ``timesteps`` is accepted and ignored so every model shares one call."""
        return crop_spatial(self.net(pad_to_multiple(x, self.pad_multiple)), x.shape[2:])


class ImageVQVAE(nn.Module):
    """MONAI's VQ-VAE (EMA codebook) with the interface of :class:`src.networks.vqvae.VQVAE1D`.

    Latents have ``embedding_dim`` channels and spatial size ceil(size / downsampling) per
    dimension, ``downsampling`` being the product of the down-sampling strides (2 per level by
    default). Unlike the 1D model, unused codes are not restarted (MONAI's quantiser has no restarts).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        channels, num_res_layers, num_res_channels, downsample_parameters (stride, kernel,
            dilation, padding per level), upsample_parameters (stride, kernel, dilation, padding,
            output padding per level), num_embeddings, embedding_dim, commitment_cost, decay:
            as in ``monai.networks.nets.VQVAE``. The up-sampling must undo the down-sampling.
        vqvae_kwargs: any other ``VQVAE`` argument.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (32, 64),
                 num_res_layers: int = 1, num_res_channels: Sequence[int] | int = (32, 64),
                 downsample_parameters: Sequence[Sequence[int]] = ((2, 4, 1, 1), (2, 4, 1, 1)),
                 upsample_parameters: Sequence[Sequence[int]] = ((2, 4, 1, 1, 0), (2, 4, 1, 1, 0)),
                 num_embeddings: int = 256, embedding_dim: int = 8, commitment_cost: float = 0.25,
                 decay: float = 0.99, **vqvae_kwargs) -> None:
        super().__init__()
        self.downsampling = math.prod(int(level[0]) for level in downsample_parameters)
        self.embedding_dim, self.num_embeddings = embedding_dim, num_embeddings
        res_channels = num_res_channels if isinstance(num_res_channels, int) else tuple(num_res_channels)
        self.net = VQVAE(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
                         channels=tuple(channels), num_res_layers=num_res_layers, num_res_channels=res_channels,
                         downsample_parameters=tuple(tuple(level) for level in downsample_parameters),
                         upsample_parameters=tuple(tuple(level) for level in upsample_parameters),
                         num_embeddings=num_embeddings, embedding_dim=embedding_dim,
                         commitment_cost=commitment_cost, decay=decay, **vqvae_kwargs)

    def encode(self, x: Tensor) -> Tensor:
        """[B, C, *spatial] -> continuous latents z_e [B, D, *ceil(spatial / downsampling)]."""
        return self.net.encode(pad_to_multiple(x, self.downsampling))

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_e -> (z_q straight-through, commitment loss, codes [B, *latent spatial]).

        In training mode this updates the EMA codebook once.
        """
        return self.net.quantizer.quantizer(z_e)  # MONAI's EMAQuantizer: (quantized, loss, indices)

    def decode(self, z: Tensor, length: int | Sequence[int] | None = None) -> Tensor:
        """Latents [B, D, *latent] -> [B, C, *latent * downsampling], cropped to ``length`` if given.

        ``length`` is the image's spatial shape (a sequence), or one int used for every spatial
        dimension (square images / cubic volumes).
        """
        out = self.net.decode(z)
        return crop_spatial(out, _target_shape(out, length))

    def encode_quantized(self, x: Tensor) -> Tensor:
        """Encode then quantise: z_q, the latents a latent diffusion model works on."""
        return self.quantize(self.encode(x))[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, C, *spatial] -> (reconstruction of x's shape, commitment loss, codes)."""
        z_q, loss, codes = self.quantize(self.encode(x))
        return self.decode(z_q, length=x.shape[2:]), loss, codes


WRAPPED = {ImageUNet: DiffusionModelUNet, ImageVQVAE: VQVAE, ImageAutoEncoder: None}


def constructor_keys(wrapper: type) -> set[str]:
    """Config keys a wrapper accepts: its constructor's arguments, plus those of the MONAI net it passes on."""
    keys = set(inspect.signature(wrapper).parameters)
    if WRAPPED[wrapper] is not None:
        keys |= set(inspect.signature(WRAPPED[wrapper]).parameters)
    return keys - {"self", "unet_kwargs", "vqvae_kwargs", "spatial_dims", "in_channels", "out_channels"}
