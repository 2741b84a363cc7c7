"""Networks and the one factory that rebuilds any of them from a run's config.json."""
from __future__ import annotations

from torch import nn

from src.errors import UserError
from src.networks.unet import UNet1D

UNET_PRESETS = {
    # ~0.3M parameters: the CPU demo size (DESIGN.md's compute budget).
    "small": dict(channels=(16, 32, 64), attention_levels=(False, False, False), num_res_blocks=1),
    "medium": dict(channels=(32, 64, 128), attention_levels=(False, False, True), num_res_blocks=1),
    "big": dict(channels=(64, 128, 256, 256), attention_levels=(False, False, True, True), num_res_blocks=2),
}
MODEL_TYPES = tuple(UNET_PRESETS)


def unet_config(model_type: str, channels=None, attention_levels=None, num_res_blocks=None) -> dict:
    """The network part of config.json: a preset, optionally with its sizes overridden."""
    if model_type not in UNET_PRESETS:
        raise UserError(f"unknown --model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    config = dict(UNET_PRESETS[model_type])
    if channels is not None:
        config["channels"] = tuple(channels)
        if attention_levels is None:
            config["attention_levels"] = (False,) * (len(channels) - 1) + (len(channels) > 2,)
    if attention_levels is not None:
        config["attention_levels"] = tuple(attention_levels)
    if num_res_blocks is not None:
        config["num_res_blocks"] = num_res_blocks
    if len(config["attention_levels"]) != len(config["channels"]):
        raise UserError(f"--attention_levels needs one 0/1 per level of --channels {config['channels']}")
    groups = min(8, min(config["channels"]))
    if any(width % groups for width in config["channels"]):
        raise UserError(f"--channels {config['channels']} must all be multiples of {groups}")
    return {"model_type": model_type, **config, "norm_num_groups": groups,
            "channels": list(config["channels"]), "attention_levels": list(config["attention_levels"])}


def build_model(network: dict) -> nn.Module:
    """Rebuild the denoiser described by the ``network`` section of config.json."""
    kwargs = {key: value for key, value in network.items() if key != "model_type"}
    if network.get("model_type") not in UNET_PRESETS:
        raise UserError(f"config names unknown model_type {network.get('model_type')!r}; "
                        f"this version knows {', '.join(MODEL_TYPES)}")
    return UNet1D(in_channels=2, out_channels=2, **kwargs)
