"""The one network registry: (model type, spatial dims) -> network class and default config.

``model_type`` names the family: a UNet preset (small | medium | big) or ``wavenet`` (1D only), the
diffusion denoisers; ``autoencoder`` (the baseline); ``vqvae`` (the LDM's first stage); or
``features`` (1D only: the model-free baseline, classical RF features and their fitted statistics).
Signals (1D) take this package's networks, images (2D) and volumes (3D) MONAI's
(:mod:`src.networks.monai_nets`). The ``network`` section of config.json holds the model type, the
spatial dims (2D/3D only), ``in_channels`` and the class's other constructor arguments (JSON values).

What a UNet preset means depends on the spatial dims (the table :data:`NETWORKS` states both);
parameters for 2 input channels in 1D, for one in 2D / 3D:

========  ==========================================  ==============================================
preset    1D: ``UNet1D``                              2D / 3D: MONAI's ``DiffusionModelUNet``
========  ==========================================  ==============================================
small     16/32/64, no attention; 0.28M (CPU demo)    16/32/64, attention at the lowest; 0.69M / 1.80M
medium    32/64/128, attention at the lowest; 1.3M    32/64/128, attention at the two lowest; 2.79M / 7.25M
big       64/128/256/256, attention at the two        128/256/256, attention at the lowest (the research
          lowest, 2 blocks per level; 12.5M           code's ``small``); 17.7M / 46.6M
========  ==========================================  ==============================================

Overrides: in 1D the keys of the defaults; in 2D/3D any constructor argument of the MONAI wrapper
and of the MONAI net it wraps. Overriding a UNet's ``channels`` alone puts attention at the lowest
level (of more than two) and derives the GroupNorm group count (1D: at most 8, at most
the narrowest width; 2D/3D: the largest of 32..1 dividing every width) and, in 2D/3D, the
attention head width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from src.errors import UserError
from src.features import FEATURE_PSD_SEGMENT, FeatureDistance
from src.networks.autoencoder import SignalAutoEncoder
from src.networks.monai_nets import ImageAutoEncoder, ImageUNet, ImageVQVAE, constructor_keys
from src.networks.unet import UNet1D
from src.networks.vqvae import VQVAE1D
from src.networks.wavenet import WaveNet1D

SIGNALS, IMAGES = (1,), (2, 3)
UNETS = (UNet1D, ImageUNet)
DENOISERS = (*UNETS, WaveNet1D)  # model(x, t) -> as many channels as x


@dataclass(frozen=True)
class NetworkEntry:
    """A registry entry: the class to build and the default values of its config keys."""

    cls: type
    defaults: dict


def _registry(*rows) -> dict[tuple[str, int], NetworkEntry]:
    """{(model type, spatial dims): NetworkEntry} from rows of (model type, spatial dims, class, defaults)."""
    return {(model_type, dims): NetworkEntry(cls, defaults) for model_type, all_dims, cls, defaults in rows
            for dims in all_dims}


NETWORKS = _registry(
    # 1D small: ~0.3M parameters, sized for the CPU demo (minutes of training on 2 cores).
    ("small", SIGNALS, UNet1D, dict(channels=[16, 32, 64], attention_levels=[False, False, False], num_res_blocks=1)),
    ("small", IMAGES, ImageUNet, dict(channels=[16, 32, 64], attention_levels=[False, False, True], num_res_blocks=1,
                                      norm_num_groups=8, num_head_channels=32)),
    ("medium", SIGNALS, UNet1D, dict(channels=[32, 64, 128], attention_levels=[False, False, True], num_res_blocks=1)),
    ("medium", IMAGES, ImageUNet, dict(channels=[32, 64, 128], attention_levels=[False, True, True], num_res_blocks=1,
                                       norm_num_groups=16, num_head_channels=32)),
    ("big", SIGNALS, UNet1D, dict(channels=[64, 128, 256, 256], attention_levels=[False, False, True, True],
                                  num_res_blocks=2)),
    ("big", IMAGES, ImageUNet, dict(channels=[128, 256, 256], attention_levels=[False, False, True], num_res_blocks=1,
                                    norm_num_groups=32, num_head_channels=256)),
    ("wavenet", SIGNALS, WaveNet1D, dict(residual_layers=18, residual_channels=64, dilation_cycle_length=6)),
    ("autoencoder", SIGNALS, SignalAutoEncoder, dict(channels=[32, 64], latent_channels=4, num_res_units=1)),
    ("autoencoder", IMAGES, ImageAutoEncoder, dict(channels=[32, 64], latent_channels=4, num_res_units=1)),
    ("vqvae", SIGNALS, VQVAE1D, dict(channels=[32, 64], num_res_layers=2, embedding_dim=16, num_embeddings=256,
                                     commitment_cost=0.25)),
    ("vqvae", IMAGES, ImageVQVAE, dict(channels=[32, 64], num_res_layers=1, num_res_channels=[32, 64],
                                       downsample_parameters=[[2, 4, 1, 1], [2, 4, 1, 1]],
                                       upsample_parameters=[[2, 4, 1, 1, 0], [2, 4, 1, 1, 0]],
                                       num_embeddings=256, embedding_dim=8, commitment_cost=0.25, decay=0.99)),
    # cyclic=False in runs fitted before the cyclic features
    ("features", SIGNALS, FeatureDistance, dict(psd_segment=FEATURE_PSD_SEGMENT, cyclic=True)),
)


def model_types(spatial_dims: int) -> tuple[str, ...]:
    """The model types the registry builds for ``spatial_dims``, in the table's order."""
    return tuple(model_type for model_type, dims in NETWORKS if dims == spatial_dims)


def denoiser_types(spatial_dims: int) -> tuple[str, ...]:
    """The diffusion denoisers among them (what train_ddpm.py trains)."""
    return tuple(name for name in model_types(spatial_dims) if NETWORKS[name, spatial_dims].cls in DENOISERS)


MODEL_TYPES, DENOISER_TYPES = model_types(1), denoiser_types(1)
IMAGE_MODEL_TYPES, IMAGE_DENOISER_TYPES = model_types(2), denoiser_types(2)
UNET_PRESETS = tuple(name for name in MODEL_TYPES if NETWORKS[name, 1].cls in UNETS)


def network_config(model_type: str, spatial_dims: int = 1, in_channels: int = 2, **overrides) -> dict:
    """The ``network`` section of config.json: the defaults of (model type, spatial dims) with the
    given (non-None) overrides, checked."""
    entry = _entry(model_type, spatial_dims)
    config = _jsonable(entry.defaults)
    given = {key: _jsonable(value) for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - _accepted_keys(entry, spatial_dims))
    if unknown:
        raise UserError(f"--{unknown[0]} does not apply to --model_type={model_type}")
    config.update(given)
    if entry.cls in UNETS:
        _fill_unet(config, given, spatial_dims)
        _check_unet(config)
    where = {} if spatial_dims == 1 else {"spatial_dims": spatial_dims}  # 1D configs never recorded it
    return {"model_type": model_type, **where, "in_channels": in_channels, **config}


def _entry(model_type: str, spatial_dims: int) -> NetworkEntry:
    if spatial_dims not in (*SIGNALS, *IMAGES):
        raise UserError(f"--spatial_dimension must be 1, 2 or 3, got {spatial_dims}")
    if (model_type, spatial_dims) not in NETWORKS:
        raise UserError(f"unknown --model_type {model_type!r}; choose one of {', '.join(model_types(spatial_dims))}")
    return NETWORKS[model_type, spatial_dims]


def _accepted_keys(entry: NetworkEntry, spatial_dims: int) -> set[str]:
    """Keys an override may set: 1D, the defaults'; 2D/3D, any constructor argument (MONAI's included)."""
    return set(entry.defaults) if spatial_dims == 1 else constructor_keys(entry.cls)


def _jsonable(value):
    """Tuples (also nested) as lists and containers copied, so the config survives a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _fill_unet(config: dict, given: dict, spatial_dims: int) -> None:
    """Keep a UNet config consistent when its channels are overridden (see the module docstring)."""
    channels = config["channels"]
    if "channels" in given and "attention_levels" not in given:  # attention at the lowest level only
        config["attention_levels"] = [False] * (len(channels) - 1) + [len(channels) > 2]
    if spatial_dims == 1:
        config["norm_num_groups"] = min([8, *channels])
    elif "channels" in given:
        if "norm_num_groups" not in given:
            config["norm_num_groups"] = _largest_group_count(channels)
        if "num_head_channels" not in given:
            attended = [width for width, attend in zip(channels, config["attention_levels"]) if attend]
            config["num_head_channels"] = math.gcd(*(attended or channels))  # MONAI checks every level


def _largest_group_count(widths: list[int]) -> int:
    """The largest of 32, 16, 8, 4, 2, 1 dividing every width."""
    return next(groups for groups in (32, 16, 8, 4, 2, 1) if all(width % groups == 0 for width in widths))


def _check_unet(config: dict) -> None:
    channels, levels = config["channels"], config["attention_levels"]
    if len(levels) != len(channels):
        raise UserError(f"--attention_levels needs one 0/1 per level of --channels {channels}")
    groups = config["norm_num_groups"]
    if any(width % groups for width in channels):
        raise UserError(f"--channels {channels} must all be multiples of norm_num_groups={groups}")
    head = config.get("num_head_channels")
    if isinstance(head, int) and any(attend and width % head for width, attend in zip(channels, levels)):
        raise UserError(f"widths with attention in --channels {channels} must be multiples of num_head_channels={head}")


def build_model(network: dict) -> nn.Module:
    """Rebuild the network described by the ``network`` section of config.json."""
    model_type, spatial_dims = network.get("model_type"), network.get("spatial_dims", 1)
    if spatial_dims not in (*SIGNALS, *IMAGES):
        raise UserError(f"config names spatial_dims {spatial_dims!r}; this version knows 1, 2 and 3")
    if (model_type, spatial_dims) not in NETWORKS:
        image = "" if spatial_dims == 1 else "image "
        raise UserError(f"config names unknown {image}model_type {model_type!r}; "
                        f"this version knows {', '.join(model_types(spatial_dims))}")
    cls = NETWORKS[model_type, spatial_dims].cls
    try:
        return cls(**_constructor_args(network, cls))
    except (TypeError, ValueError, AssertionError) as err:
        raise UserError(f"the network section of the run's config does not fit {model_type} ({err}); "
                        "was it written by another version? retrain or fix config.json") from err


def _constructor_args(network: dict, cls: type) -> dict:
    kwargs = {key: value for key, value in network.items() if key != "model_type"}
    if cls in (UNet1D, WaveNet1D):  # the image UNet sets its output channels itself
        kwargs["out_channels"] = kwargs.get("in_channels")
    if cls is FeatureDistance:
        kwargs.pop("in_channels", None)  # I and Q, always
    return kwargs
