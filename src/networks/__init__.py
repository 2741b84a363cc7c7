"""Networks, the registry that builds any of them from the ``network`` section of config.json
(:mod:`src.networks.registry`: model type and spatial dims -> class and defaults), and
:func:`load_trained`, the one place a trained model is rebuilt.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from src.errors import UserError
from src.io import load_checkpoint
from src.networks.registry import (
    DENOISER_TYPES,
    IMAGE_DENOISER_TYPES,
    IMAGE_MODEL_TYPES,
    MODEL_TYPES,
    UNET_PRESETS,
    build_model,
    network_config,
)

__all__ = ["DENOISER_TYPES", "IMAGE_DENOISER_TYPES", "IMAGE_MODEL_TYPES", "MODEL_TYPES", "UNET_PRESETS", "build_model",
           "load_trained", "load_weights", "network_config"]


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
