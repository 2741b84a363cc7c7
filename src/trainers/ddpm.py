"""Training a diffusion denoiser on one signal type (DDPM objective, MONAI DDPMScheduler).

With a latent space (LDM) the same objective runs on the frozen VQ-VAE's scaled latents.

At every evaluation the first validation signals are noised to ``FIGURE_START`` and denoised back
to t = 0 with the PLMS reconstruction that scoring uses (:func:`src.diffusion.multistart.reconstruct`),
and drawn against the originals; an LDM does this on its latents and decodes the result.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from src.data.sources import DataOptions, data_shape
from src.diffusion.latent import SignalSpace
from src.diffusion.multistart import reconstruct
from src.diffusion.schedulers import build_ddpm_scheduler, build_pndm_scheduler, training_target
from src.figures import image_figure, signal_figure
from src.trainers.base import VAL_SEED, Trainer
from src.runtime import WithPrecision

# A mid start point of the 1000-step training schedule: enough noise that the model must redraw detail,
# little enough that the signal's structure survives. 100 PLMS steps (reconstruct.py's default) put
# t = 250 on the inference grid: 26 network calls on FIGURE_SIGNALS signals per evaluation.
FIGURE_START = 250
FIGURE_INFERENCE_STEPS = 100


class DiffusionTrainer(Trainer):
    """Learns to predict the noise (or velocity) added at uniformly drawn t (Ho et al. 2020, eq. 14)."""

    def __init__(self, *args, space=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.space = space or SignalSpace()
        self.scheduler = build_ddpm_scheduler(self.config["scheduler"])
        self.b_scale = self.config["scheduler"]["b_scale"]

    def loss(self, model, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        x0 = self.space.encode(x) * self.b_scale
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (x0.shape[0],), generator=generator)
        timesteps = timesteps.to(self.device)
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        with self.autocast():
            prediction = model(noisy, timesteps)
        return F.mse_loss(prediction.float(), training_target(self.scheduler, x0, noise, timesteps)), {}

    def figures(self, x: torch.Tensor) -> dict:
        """The signals noised to FIGURE_START and denoised back (the same noise at every evaluation)."""
        latents = self.space.encode(x)
        noise = torch.randn((1, *latents.shape), generator=torch.Generator().manual_seed(VAL_SEED))
        scheduler = build_pndm_scheduler(self.config["scheduler"], FIGURE_INFERENCE_STEPS)
        model = WithPrecision(self.eval_model, self.settings.precision)
        denoised = reconstruct(model, scheduler, latents, [FIGURE_START], noise, self.b_scale)[0]
        space = " in VQ-VAE latent space, decoded" if self.config["kind"] == "ldm" else ""
        title = (f"{self.config['kind'].upper()} epoch {self.epoch}: noised to t={FIGURE_START}, denoised{space} "
                 f"(PLMS, {FIGURE_INFERENCE_STEPS} steps)")
        decoded = self.space.decode(denoised, tuple(x.shape[2:]))
        if x.dim() > 3:  # images or volumes
            return {f"denoised_from_t{FIGURE_START}": image_figure(x, decoded, title)}
        return {f"denoised_from_t{FIGURE_START}": signal_figure(x, decoded, title)}


def ddpm_config(network: dict, scheduler: dict, data: dict, latent: dict | None = None) -> dict:
    """config.json of a DDPM (or, with ``latent``, an LDM) run; ``data`` from :func:`data_section`."""
    config = {"kind": "ddpm" if latent is None else "ldm", "network": network, "scheduler": scheduler,
              "data": data}
    if latent is not None:
        config["latent"] = latent
    return config


def data_section(train_set, training_file: str, validation_file: str,
                 options: DataOptions = DataOptions()) -> dict:
    """The ``data`` section of config.json: the data's shape, files and how they were read (image options,
    carrier recovery)."""
    section = {**data_shape(train_set), "training_h5file": str(training_file), "validation_h5file": str(validation_file)}
    return {**section, **options.section()}
