"""Training the autoencoder baseline and the VQ-VAE (the LDM's first stage)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from src.figures import codebook_figure, image_figure, signal_figure
from src.networks.vqvae import codebook_usage
from src.trainers.base import QUICK_TEST_BATCHES, Trainer


@dataclass(frozen=True)
class AutoencoderSizes:
    """train_autoencoder.py's size flags (None: the family's default)."""

    channels: list[int] | None = None  # widths of the down-sampling levels
    latent_channels: int | None = None  # bottleneck width
    num_res_units: int | None = None  # residual units per level


@dataclass(frozen=True)
class VQVAESizes:
    """train_vqvae.py's size flags (None: the family's default)."""

    channels: list[int] | None = None  # widths of the down-sampling levels
    num_res_layers: int | None = None  # residual layers per stack
    embedding_dim: int | None = None  # latent channels
    num_embeddings: int | None = None  # codebook size
    commitment_cost: float | None = None  # commitment loss weight


def draw(x: torch.Tensor, reconstruction: torch.Tensor, title: str):
    """Signals [B, 2, T] as I/Q, PSD and constellation; images and volumes as pictures."""
    return (image_figure if x.dim() > 3 else signal_figure)(x, reconstruction, title)


class AutoencoderTrainer(Trainer):
    """Plain reconstruction MSE."""

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with self.autocast():
            reconstruction = model(x)
        return F.mse_loss(reconstruction.float(), x), {}

    def figures(self, x: torch.Tensor) -> dict:
        with self.autocast():
            reconstruction = self.eval_model(x)
        return {"reconstruction": draw(x, reconstruction, f"autoencoder epoch {self.epoch}")}


class VQVAETrainer(Trainer):
    """Reconstruction MSE plus the commitment loss; logs codebook perplexity and usage
    (van den Oord et al. 2017; the codebook itself follows an EMA of its assigned latents).

    At each evaluation it also draws how often each code is chosen over the validation set, and logs
    ``codebook_fraction_used``: distinct codes over the whole set / K (``codebook_usage`` is per batch).
    """

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with self.autocast():
            reconstruction, commitment, codes = model(x)
        reconstruction_loss = F.mse_loss(reconstruction.float(), x)
        perplexity, usage = codebook_usage(codes, self.config["network"]["num_embeddings"])
        extras = {"reconstruction_loss": reconstruction_loss.item(), "commitment_loss": commitment.item(),
                  "codebook_perplexity": perplexity, "codebook_usage": usage}
        return reconstruction_loss + commitment, extras

    def figures(self, x: torch.Tensor) -> dict:
        with self.autocast():
            reconstruction = self.eval_model(x)[0]
        return {"reconstruction": draw(x, reconstruction, f"VQ-VAE epoch {self.epoch}")}

    def log_figures(self, writer) -> None:
        super().log_figures(writer)
        if self.figure_signals is None:
            return
        counts = self.codebook_counts()
        writer.add_scalar("codebook_fraction_used", (counts > 0).float().mean().item(), self.step)
        writer.add_figure("codebook_counts", codebook_figure(counts, f"epoch {self.epoch}"), self.step, close=True)

    @torch.no_grad()
    def codebook_counts(self) -> torch.Tensor:
        """How often each code is chosen over this process's validation signals (eval mode: no EMA update)."""
        self.eval_model.eval()
        counts = torch.zeros(self.config["network"]["num_embeddings"], dtype=torch.long)
        for _, x in self._batches(self.val_loader, QUICK_TEST_BATCHES // 2, "codebook"):
            with self.autocast():
                codes = self.eval_model.quantize(self.eval_model.encode(x))[2]
            counts += torch.bincount(codes.flatten().cpu(), minlength=len(counts))
        return counts
