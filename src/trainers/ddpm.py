"""Training a diffusion denoiser on one data type (DDPM objective, MONAI DDPMScheduler): train_ddpm.py's run.

With a latent space (LDM) the same objective runs on the frozen VQ-VAE's scaled latents; the
VQ-VAE is loaded and checked against the data, and its latent scale measured, here.

At every evaluation the first validation signals are noised to ``FIGURE_START`` and denoised back
to t = 0 with the PLMS reconstruction that scoring uses (:func:`src.diffusion.multistart.reconstruct`),
and drawn against the originals; an LDM does this on its latents and decodes the result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from src.data.datasets import make_loader
from src.data.sources import DataOptions, data_section
from src.diffusion.latent import SignalSpace, VQVAELatents, latent_config, latent_scale, load_space, load_vqvae
from src.diffusion.multistart import reconstruct
from src.diffusion.schedulers import (
    NoiseSchedule,
    build_ddpm_scheduler,
    build_pndm_scheduler,
    scheduler_config,
    training_target,
)
from src.distributed import Dist, distributed
from src.errors import UserError
from src.figures import image_figure, signal_figure
from src.networks import network_config
from src.run import Run
from src.runtime import WithPrecision
from src.trainers.base import VAL_SEED, Trainer
from src.trainers.setup import TrainingJob, load_training_sets, settings_with, start_run

# A mid start point of the 1000-step training schedule: enough noise that the model must redraw detail,
# little enough that the signal's structure survives. 100 PLMS steps (reconstruct.py's default) put
# t = 250 on the inference grid: 26 network calls on FIGURE_SIGNALS signals per evaluation.
FIGURE_START = 250
FIGURE_INFERENCE_STEPS = 100


@dataclass(frozen=True)
class DenoiserSizes:
    """train_ddpm.py's flags that override the denoiser's default sizes (None: the preset's)."""

    channels: list[int] | None = None  # UNet widths per level
    attention_levels: list[bool] | None = None  # UNet attention per level
    num_res_blocks: int | None = None  # UNet residual blocks per level
    residual_layers: int | None = None  # WaveNet layers
    residual_channels: int | None = None  # WaveNet width
    dilation_cycle_length: int | None = None  # WaveNet dilations 1..2^(k-1), repeated


@dataclass(frozen=True)
class DiffusionJob:
    """train_ddpm.py's options: the training job, the denoiser, its noise schedule and, for an LDM, the VQ-VAE
    whose latents it learns (with ``latent_pad``: zeros around the latents, torch.nn.functional.pad order)."""

    training: TrainingJob
    model_type: str = "small"
    sizes: DenoiserSizes = field(default_factory=DenoiserSizes)
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    vqvae_checkpoint: str | None = None
    latent_pad: list[int] | None = None


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


def train_diffusion_model(job: DiffusionJob) -> None:
    """The whole of train_ddpm.py: a DDPM, or with a VQ-VAE checkpoint an LDM, under torchrun or not."""
    training = job.training
    with distributed(training.dist_backend) as dist:
        train_set, val_set, data = load_training_sets(training.sets)
        vqvae, latent, in_channels = (first_stage(job, train_set, data, dist) if job.vqvae_checkpoint
                                      else (None, None, train_set.channels))
        run = training.sets.run()
        config, precision = start_run(run, config_from(job, train_set, data, in_channels, latent), dist,
                                      training.settings.seed, training.settings.precision)
        if latent:
            check_same_vqvae(run, config, latent)
        # a resumed LDM keeps the scale it started with
        space = (VQVAELatents(vqvae, config["latent"]["scale_factor"], config["latent"].get("latent_pad")) if latent
                 else load_space(config, dist.device))
        settings = settings_with(training.settings, precision)
        DiffusionTrainer(run, config, settings, train_set, val_set, dist, space=space).fit()


def config_from(job: DiffusionJob, train_set, data: DataOptions, in_channels: int, latent: dict | None) -> dict:
    """config.json of the run ``job`` describes."""
    network = network_config(job.model_type, data.spatial_dims, in_channels, **asdict(job.sizes))
    scheduler = scheduler_config(**asdict(job.schedule))
    sets = job.training.sets
    return ddpm_config(network, scheduler, data_section(train_set, sets.training_h5file, sets.validation_h5file, data),
                       latent)


def first_stage(job: DiffusionJob, train_set, data: DataOptions, dist: Dist) -> tuple:
    """An LDM's frozen VQ-VAE, checked against the data; the ``latent`` section of config.json (its latents'
    scale measured on the training set); and the latent channels the denoiser takes."""
    checkpoint = job.vqvae_checkpoint
    vqvae, vqvae_config = load_vqvae(checkpoint, dist.device)
    check_vqvae_dims(vqvae_config, checkpoint, data.spatial_dims)
    check_vqvae_carrier(vqvae_config, checkpoint, data)
    loader = make_loader(train_set, job.training.settings.batch_size, shuffle=False)
    scale = latent_scale(vqvae, loader, dist.device)
    return vqvae, latent_config(checkpoint, scale, job.latent_pad), vqvae_config["network"]["embedding_dim"]


def check_vqvae_dims(vqvae_config: dict, checkpoint: str, spatial_dims: int) -> None:
    """An LDM's VQ-VAE must have been trained on data of the same spatial dims."""
    trained = vqvae_config["network"].get("spatial_dims", 1)
    if trained != spatial_dims:
        raise UserError(f"{checkpoint} is a VQ-VAE for --spatial_dimension={trained}, not {spatial_dims}")


def check_vqvae_carrier(vqvae_config: dict, checkpoint: str, options: DataOptions) -> None:
    """An LDM must see its data as its VQ-VAE saw them: the same carrier recovery."""
    trained = vqvae_config.get("data", {}).get("carrier_order", 0)
    if trained != options.carrier_order:
        raise UserError(f"{checkpoint} is a VQ-VAE trained with carrier recovery order {trained or 'off'}, but these "
                        f"data are read with {options.carrier_order or 'off'}; pass the VQ-VAE's --carrier_recovery")


def check_same_vqvae(run: Run, config: dict, latent: dict) -> None:
    """A resumed LDM must go on with the VQ-VAE it started with."""
    if config["latent"]["vqvae_checkpoint"] != latent["vqvae_checkpoint"]:
        raise UserError(f"{run.config_path} was trained on {config['latent']['vqvae_checkpoint']}, not "
                        f"{latent['vqvae_checkpoint']}; use another --model_name")


def ddpm_config(network: dict, scheduler: dict, data: dict, latent: dict | None = None) -> dict:
    """config.json of a DDPM (or, with ``latent``, an LDM) run; ``data`` from
    :func:`src.data.sources.data_section`."""
    config = {"kind": "ddpm" if latent is None else "ldm", "network": network, "scheduler": scheduler,
              "data": data}
    if latent is not None:
        config["latent"] = latent
    return config
