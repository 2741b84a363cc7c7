"""MONAI networks for 2D images [B, C, H, W] and 3D volumes [B, C, H, W, D], built from a plain dict.

The ``network`` section of config.json names a family in ``model_type``; every other key is a
constructor argument of the wrapper below (JSON values only: lists, numbers, booleans), so
``build_image_model(json.loads(json.dumps(config)))`` rebuilds the same network.

* ``small`` | ``medium`` | ``big``: MONAI's ``DiffusionModelUNet`` (the denoiser), called as
  ``model(x, t) -> same shape as x`` (noise or velocity). Parameter counts for one input channel
  in 2D (3D in brackets): small 0.69M (1.80M), medium 2.79M (7.25M), big 17.7M (46.6M). ``big`` is
  the research code's ``small`` model (the one its 2D results use); small and medium are CPU sizes.
  Self-attention needs the ``einops`` package.
* ``autoencoder``: MONAI's convolutional ``AutoEncoder``, the reconstruction baseline,
  ``model(x) -> reconstruction``.
* ``vqvae``: MONAI's ``VQVAE`` (EMA codebook), the first stage of a latent diffusion model, with the
  interface of :class:`src.networks.vqvae.VQVAE1D`: ``forward(x) -> (reconstruction, commitment
  loss, codes)``, ``encode``, ``quantize``, ``encode_quantized``, ``decode(z, length=...)``.

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

from src.errors import UserError

UNET_PRESETS = {
    "small": dict(channels=[16, 32, 64], attention_levels=[False, False, True], num_res_blocks=1,
                  norm_num_groups=8, num_head_channels=32),
    "medium": dict(channels=[32, 64, 128], attention_levels=[False, True, True], num_res_blocks=1,
                   norm_num_groups=16, num_head_channels=32),
    "big": dict(channels=[128, 256, 256], attention_levels=[False, False, True], num_res_blocks=1,
                norm_num_groups=32, num_head_channels=256),
}
DEFAULTS = {
    "autoencoder": dict(channels=[32, 64], latent_channels=4, num_res_units=1),
    "vqvae": dict(channels=[32, 64], num_res_layers=1, num_res_channels=[32, 64],
                  downsample_parameters=[[2, 4, 1, 1], [2, 4, 1, 1]],
                  upsample_parameters=[[2, 4, 1, 1, 0], [2, 4, 1, 1, 0]],
                  num_embeddings=256, embedding_dim=8, commitment_cost=0.25, decay=0.99),
}
DENOISER_TYPES = tuple(UNET_PRESETS)
IMAGE_MODEL_TYPES = (*DENOISER_TYPES, "autoencoder", "vqvae")


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

    def latent_shape(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial shape of the latents of an image of ``spatial_shape``."""
        return tuple(-(-int(size) // self.downsampling) for size in spatial_shape)

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


BUILDERS = {**dict.fromkeys(UNET_PRESETS, ImageUNet), "autoencoder": ImageAutoEncoder, "vqvae": ImageVQVAE}
WRAPPED = {ImageUNet: DiffusionModelUNet, ImageVQVAE: VQVAE, ImageAutoEncoder: None}


# --------------------------------------------------------------------------------------------------
# Config and factory
# --------------------------------------------------------------------------------------------------

def _accepted_keys(model_type: str) -> set[str]:
    """Constructor arguments a family accepts: its wrapper's, plus those of the MONAI net it passes on."""
    builder = BUILDERS[model_type]
    keys = set(inspect.signature(builder).parameters)
    if WRAPPED[builder] is not None:
        keys |= set(inspect.signature(WRAPPED[builder]).parameters)
    return keys - {"self", "unet_kwargs", "vqvae_kwargs", "spatial_dims", "in_channels", "out_channels"}


def _jsonable(value):
    """Tuples (also nested) as lists, so the config survives a JSON round trip unchanged."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _largest_group_count(widths: Sequence[int]) -> int:
    """The largest of 32, 16, 8, 4, 2, 1 dividing every width."""
    return next(groups for groups in (32, 16, 8, 4, 2, 1) if all(width % groups == 0 for width in widths))


def _fill_unet(config: dict, given: dict) -> None:
    """Keep a UNet config consistent when its channels are overridden, then check it."""
    if "channels" in given:
        levels = len(config["channels"])
        if "attention_levels" not in given:  # attention at the lowest level only
            config["attention_levels"] = [False] * (levels - 1) + [levels > 2]
        if "norm_num_groups" not in given:
            config["norm_num_groups"] = _largest_group_count(config["channels"])
        if "num_head_channels" not in given:
            attended = [w for w, a in zip(config["channels"], config["attention_levels"]) if a]
            config["num_head_channels"] = math.gcd(*(attended or config["channels"]))  # MONAI checks every level
    _check_unet(config)


def _check_unet(config: dict) -> None:
    channels, groups = config["channels"], config["norm_num_groups"]
    if len(config["attention_levels"]) != len(channels):
        raise UserError(f"--attention_levels needs one 0/1 per level of --channels {channels}")
    if any(width % groups for width in channels):
        raise UserError(f"--channels {channels} must all be multiples of norm_num_groups={groups}")
    head = config["num_head_channels"]
    if isinstance(head, int) and any(a and width % head for width, a in zip(channels, config["attention_levels"])):
        raise UserError(f"widths with attention in --channels {channels} must be multiples of num_head_channels={head}")


def image_network_config(model_type: str, spatial_dims: int, in_channels: int, **overrides) -> dict:
    """The ``network`` section of config.json for images: a family's defaults plus the non-None overrides.

    Overrides may be any constructor argument of the family (see the wrappers above, and MONAI's
    ``DiffusionModelUNet`` / ``VQVAE``); for the UNet presets, overriding ``channels`` alone also
    sets attention at the lowest level, the GroupNorm group count and the attention head width.
    """
    if model_type not in IMAGE_MODEL_TYPES:
        raise UserError(f"unknown --model_type {model_type!r}; choose one of {', '.join(IMAGE_MODEL_TYPES)}")
    if spatial_dims not in (2, 3):
        raise UserError(f"--spatial_dimension must be 2 or 3 for image networks, got {spatial_dims}")
    config = {key: _jsonable(value) for key, value in (UNET_PRESETS.get(model_type) or DEFAULTS[model_type]).items()}
    given = {key: _jsonable(value) for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - _accepted_keys(model_type))
    if unknown:
        raise UserError(f"--{unknown[0]} does not apply to --model_type={model_type}")
    config.update(given)
    if model_type in UNET_PRESETS:
        _fill_unet(config, given)
    return {"model_type": model_type, "spatial_dims": spatial_dims, "in_channels": in_channels, **config}


def build_image_model(network: dict) -> nn.Module:
    """Rebuild the image network described by the ``network`` section of config.json."""
    model_type = network.get("model_type")
    if model_type not in BUILDERS:
        raise UserError(f"config names unknown image model_type {model_type!r}; "
                        f"this version knows {', '.join(IMAGE_MODEL_TYPES)}")
    kwargs = {key: value for key, value in network.items() if key != "model_type"}
    try:
        return BUILDERS[model_type](**kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise UserError(f"the network section of the run's config does not fit {model_type} ({err}); "
                        "was it written by another version? retrain or fix config.json") from err
