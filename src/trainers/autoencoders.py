"""Training the autoencoder baseline and the VQ-VAE (the LDM's first stage)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from src.networks.vqvae import codebook_usage
from src.trainers.base import Trainer
from src.trainers.runtime import autocast


class AutoencoderTrainer(Trainer):
    """Plain reconstruction MSE."""

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.device):
            reconstruction = model(x)
        return F.mse_loss(reconstruction.float(), x), {}


class VQVAETrainer(Trainer):
    """Reconstruction MSE plus the commitment loss; logs codebook perplexity and usage
    (van den Oord et al. 2017; the codebook itself follows an EMA of its assigned latents)."""

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.device):
            reconstruction, commitment, codes = model(x)
        reconstruction_loss = F.mse_loss(reconstruction.float(), x)
        perplexity, usage = codebook_usage(codes, self.config["network"]["num_embeddings"])
        extras = {"reconstruction_loss": reconstruction_loss.item(), "commitment_loss": commitment.item(),
                  "codebook_perplexity": perplexity, "codebook_usage": usage}
        return reconstruction_loss + commitment, extras
