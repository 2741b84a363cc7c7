"""Where diffusion happens: on the signal itself (DDPM) or on scaled VQ-VAE latents (LDM).

Rombach et al. (2022), "High-resolution image synthesis with latent diffusion models": the first
stage (a VQ-VAE) is frozen; latents are multiplied by a scale factor chosen so that the
training latents have unit standard deviation, and divided by it again before decoding.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from src.errors import UserError
from src.io import load_json
from src.networks import load_trained

LATENT_SCALE_BATCHES = 8  # training batches whose latents set the scale factor


class SignalSpace:
    """Diffusion on the signal itself: encode and decode are the identity."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return z


class VQVAELatents:
    """Diffusion on a frozen VQ-VAE's quantised latents, scaled by ``scale_factor``.

    ``latent_pad`` (the research code's ``--latent_pad``): zeros added on each side of every spatial
    axis of the latents, as ``torch.nn.functional.pad`` takes them (last axis first), for a latent
    shape the denoiser cannot halve often enough; removed again before decoding.
    """

    def __init__(self, vqvae: nn.Module, scale_factor: float, latent_pad: list[int] | None = None) -> None:
        self.vqvae, self.scale_factor = vqvae.eval().requires_grad_(False), scale_factor
        self.pad = list(latent_pad or [])

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.vqvae.encode_quantized(x) * self.scale_factor
        return F.pad(z, self.pad) if self.pad else z

    @torch.no_grad()
    def decode(self, z: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Latents back to signals or images of spatial ``shape``."""
        if self.pad:
            z = F.pad(z, [-value for value in self.pad])
        shape = tuple(shape)
        return self.vqvae.decode(z / self.scale_factor, length=shape[0] if len(shape) == 1 else shape)


def load_vqvae(checkpoint: str | Path, device: torch.device) -> tuple[nn.Module, dict]:
    """A trained VQ-VAE from its checkpoint and the vqvae_config.json beside it."""
    checkpoint = Path(checkpoint)
    config_path = checkpoint.parent / "vqvae_config.json"
    if not config_path.is_file():
        raise UserError(f"no vqvae_config.json beside {checkpoint}; give --vqvae_checkpoint a checkpoint "
                        "inside a train_vqvae.py run folder")
    config = load_json(config_path, "VQ-VAE config")
    if config.get("network", {}).get("model_type") != "vqvae":
        raise UserError(f"{config_path} does not describe a VQ-VAE run")
    return load_trained(config["network"], checkpoint, device), config


@torch.no_grad()
def latent_scale(vqvae: nn.Module, loader, device: torch.device) -> float:
    """1 / std of the quantised latents of the first training batches."""
    latents = []
    for index, batch in enumerate(loader):
        if index >= LATENT_SCALE_BATCHES:
            break
        latents.append(vqvae.encode_quantized(batch["signal"].to(device)).flatten().cpu())
    std = torch.cat(latents).std().item()
    if not std > 0:
        raise UserError("the VQ-VAE maps the training signals to constant latents; retrain the VQ-VAE")
    return 1.0 / std


def latent_config(vqvae_checkpoint: str | Path, scale_factor: float, latent_pad: list[int] | None = None) -> dict:
    """The ``latent`` section of an LDM's config.json: which VQ-VAE, the scale and any latent padding."""
    config = {"vqvae_checkpoint": str(Path(vqvae_checkpoint).resolve()), "scale_factor": scale_factor}
    if latent_pad:
        config["latent_pad"] = list(latent_pad)
    return config


def load_space(config: dict, device: torch.device):
    """The space a run diffuses in, rebuilt from its config.json."""
    if "latent" not in config:
        return SignalSpace()
    vqvae, _ = load_vqvae(config["latent"]["vqvae_checkpoint"], device)
    return VQVAELatents(vqvae, config["latent"]["scale_factor"], config["latent"].get("latent_pad"))
