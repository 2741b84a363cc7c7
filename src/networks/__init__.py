"""Networks and the one factory that rebuilds any of them from the ``network`` section of config.json.

``model_type`` names the family: a UNet preset (small | medium | big), ``wavenet`` (both diffusion
denoisers), ``autoencoder`` (the baseline), ``vqvae`` (the LDM's first stage) or ``features`` (the
model-free baseline: classical RF features and their fitted statistics). The other keys of the
section are exactly the network's constructor arguments.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from src.errors import UserError
from src.features import FEATURE_PSD_SEGMENT, FeatureDistance
from src.io import load_checkpoint
from src.networks.autoencoder import SignalAutoEncoder
from src.networks.monai_nets import build_image_model, image_network_config
from src.networks.unet import UNet1D
from src.networks.vqvae import VQVAE1D
from src.networks.wavenet import WaveNet1D

UNET_PRESETS = {
    # ~0.3M parameters: sized for the CPU demo (minutes of training on 2 cores).
    "small": dict(channels=[16, 32, 64], attention_levels=[False, False, False], num_res_blocks=1),
    "medium": dict(channels=[32, 64, 128], attention_levels=[False, False, True], num_res_blocks=1),
    "big": dict(channels=[64, 128, 256, 256], attention_levels=[False, False, True, True], num_res_blocks=2),
}
DEFAULTS = {
    "wavenet": dict(residual_layers=18, residual_channels=64, dilation_cycle_length=6),
    "autoencoder": dict(channels=[32, 64], latent_channels=4, num_res_units=1),
    "vqvae": dict(channels=[32, 64], num_res_layers=2, embedding_dim=16, num_embeddings=256,
                  commitment_cost=0.25),
    "features": dict(psd_segment=FEATURE_PSD_SEGMENT, cyclic=True),  # False in runs fitted before it
}
DENOISER_TYPES = (*UNET_PRESETS, "wavenet")
MODEL_TYPES = (*DENOISER_TYPES, "autoencoder", "vqvae", "features")


def network_config(model_type: str, in_channels: int = 2, spatial_dims: int = 1, **overrides) -> dict:
    """The ``network`` section of config.json: a family's defaults, with the given (non-None) overrides.

    ``spatial_dims`` 2 and 3 (images, volumes) take MONAI's networks (:mod:`src.networks.monai_nets`).
    """
    if spatial_dims in (2, 3):
        return image_network_config(model_type, spatial_dims, in_channels, **overrides)
    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown --model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    config = dict(UNET_PRESETS.get(model_type) or DEFAULTS[model_type])
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(config) - {"attention_levels"})
    if unknown:
        raise UserError(f"--{unknown[0]} does not apply to --model_type={model_type}")
    if model_type in UNET_PRESETS and "channels" in given and "attention_levels" not in given:
        levels = len(given["channels"])  # attention at the lowest level only, as in the medium preset
        given["attention_levels"] = [False] * (levels - 1) + [levels > 2]
    config.update({key: list(value) if isinstance(value, tuple) else value for key, value in given.items()})
    if model_type in UNET_PRESETS:
        _check_unet(config)
    return {"model_type": model_type, "in_channels": in_channels, **config}


def _check_unet(config: dict) -> None:
    if len(config["attention_levels"]) != len(config["channels"]):
        raise UserError(f"--attention_levels needs one 0/1 per level of --channels {config['channels']}")
    config["norm_num_groups"] = min(8, min(config["channels"]))
    if any(width % config["norm_num_groups"] for width in config["channels"]):
        raise UserError(f"--channels {config['channels']} must all be multiples of {config['norm_num_groups']}")


def build_model(network: dict) -> nn.Module:
    """Rebuild the network described by the ``network`` section of config.json."""
    if network.get("spatial_dims", 1) in (2, 3):
        return build_image_model(network)
    kwargs = {key: value for key, value in network.items() if key != "model_type"}
    model_type = network.get("model_type")
    builders = {**dict.fromkeys(UNET_PRESETS, UNet1D), "wavenet": WaveNet1D, "autoencoder": SignalAutoEncoder,
                "vqvae": VQVAE1D, "features": FeatureDistance}
    if model_type not in builders:
        raise UserError(f"config names unknown model_type {model_type!r}; this version knows {', '.join(MODEL_TYPES)}")
    if model_type in DENOISER_TYPES:
        kwargs["out_channels"] = kwargs.get("in_channels")
    if model_type == "features":
        kwargs.pop("in_channels", None)  # I and Q, always
    try:
        return builders[model_type](**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"the network section of the run's config does not fit {model_type} ({err}); "
                        "was it written by another version? retrain or fix config.json") from err


def load_weights(model: nn.Module, state: dict, source, key: str = "model") -> None:
    """Put a checkpoint's ``key`` tensors (the weights, or their EMA) into ``model``, or say in one line why
    they do not fit."""
    try:
        model.load_state_dict(state[key])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as err:  # the last three: corrupt entries
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise UserError(f"{source} does not fit the network in its run's config ({reason}); "
                        "use a checkpoint of this run") from err


def load_trained(network: dict, checkpoint: str | Path, device: torch.device) -> nn.Module:
    """The network described by ``network`` with the weights of ``checkpoint``, in eval mode on ``device``.

    The one place a trained model is rebuilt (reconstruction, scoring, an LDM's VQ-VAE). A checkpoint
    of a run trained with an EMA of its weights gives the EMA weights, the ones it was validated with.
    """
    model = build_model(network)
    state = load_checkpoint(checkpoint)
    load_weights(model, state, checkpoint, "ema" if "ema" in state else "model")
    return model.to(device).eval()
