"""Training a diffusion denoiser on one signal type (DDPM objective, MONAI DDPMScheduler).

Files written in the run folder: config.json, checkpoint.pth (best validation loss),
checkpoint_last.pth (latest, used to resume), checkpoint_<epoch>.pth (every --checkpoint_every
epochs), TensorBoard events in train/ and val/, and log.txt.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from src.data.datasets import SignalDataset, make_loader
from src.diffusion.schedulers import build_ddpm_scheduler, training_target
from src.errors import UserError
from src.io import load_checkpoint, save_checkpoint
from src.networks import build_model
from src.run import Run, check_agrees
from src.trainers.runtime import autocast, pick_device

log = logging.getLogger("rfood")
QUICK_TEST_BATCHES = 2  # --quick_test: batches per epoch, for smoke tests


@dataclass
class TrainSettings:
    n_epochs: int
    batch_size: int
    learning_rate: float
    eval_freq: int
    checkpoint_every: int
    seed: int
    num_workers: int
    cache_data: bool
    quick_test: bool


def strip_prefixes(state_dict: dict) -> dict:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes before saving."""
    def clean(key: str) -> str:
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        return key
    return {clean(key): value for key, value in state_dict.items()}


class DiffusionTrainer:
    """Owns the model, optimiser and scheduler of one run; :meth:`fit` trains it."""

    def __init__(self, run: Run, config: dict, settings: TrainSettings, train_set: SignalDataset,
                 val_set: SignalDataset) -> None:
        self.run, self.config, self.settings = run, config, settings
        self.device = pick_device()
        self.model = build_model(config["network"]).to(self.device)
        self.scheduler = build_ddpm_scheduler(config["scheduler"])
        self.b_scale = config["scheduler"]["b_scale"]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.learning_rate)
        self.train_loader = make_loader(train_set, settings.batch_size, shuffle=True,
                                        num_workers=settings.num_workers, seed=settings.seed)
        self.val_loader = make_loader(val_set, settings.batch_size, shuffle=False, num_workers=settings.num_workers)
        self.epoch, self.step, self.best_val_loss = 0, 0, math.inf

    def diffusion_loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """MSE between the network output and its target at uniformly drawn t (Ho et al. 2020, eq. 14)."""
        x0 = x0.to(self.device) * self.b_scale
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (x0.shape[0],), generator=generator)
        timesteps = timesteps.to(self.device)
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        with autocast(self.device):
            prediction = self.model(noisy, timesteps)
        return F.mse_loss(prediction.float(), training_target(self.scheduler, x0, noise, timesteps))

    def train_epoch(self, writer: SummaryWriter) -> float:
        self.model.train()
        generator = torch.Generator().manual_seed(self.settings.seed * 100_003 + self.epoch)
        self.train_loader.generator.manual_seed(self.settings.seed * 100_003 + self.epoch)
        total, count = 0.0, 0
        batches = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{self.settings.n_epochs}", leave=False,
                       disable=None)  # None: no bar when stdout is not a terminal
        for batch_index, batch in enumerate(batches):
            if self.settings.quick_test and batch_index >= QUICK_TEST_BATCHES:
                break
            loss = self.diffusion_loss(batch["signal"], generator)
            self._check_finite(loss)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            total, count = total + loss.item(), count + 1
            writer.add_scalar("loss", loss.item(), self.step)
            batches.set_postfix(loss=f"{loss.item():.4f}")
        writer.add_scalar("learning_rate", self.optimizer.param_groups[0]["lr"], self.step)
        return total / max(count, 1)

    @torch.inference_mode()
    def validation_loss(self) -> float:
        """Loss over the val set with the same noise and t every time, so epochs compare fairly."""
        self.model.eval()
        generator = torch.Generator().manual_seed(12345)
        total, count = 0.0, 0
        for batch_index, batch in enumerate(self.val_loader):
            if self.settings.quick_test and batch_index >= QUICK_TEST_BATCHES // 2:
                break
            loss = self.diffusion_loss(batch["signal"], generator)
            total, count = total + loss.item() * len(batch["signal"]), count + len(batch["signal"])
        return total / max(count, 1)

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise UserError(f"training loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step}; "
                            f"the last good checkpoint is kept in {self.run.path}; lower --learning_rate")

    def state(self) -> dict:
        return {"model": strip_prefixes(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "step": self.step, "best_val_loss": self.best_val_loss,
                "config": self.config}

    def resume(self) -> None:
        """Continue from checkpoint_last.pth when it exists, at the epoch after the last finished one."""
        if not self.run.last_checkpoint.is_file():
            return
        state = load_checkpoint(self.run.last_checkpoint)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"{self.run.last_checkpoint} does not fit this model ({str(err).splitlines()[0]}); "
                            "use another --model_name") from err
        self.epoch, self.step, self.best_val_loss = state["epoch"], state["step"], state["best_val_loss"]
        log.info("resuming %s at epoch %d (best val loss %.5f)", self.run.path, self.epoch + 1, self.best_val_loss)

    def fit(self) -> None:
        self.resume()
        if self.epoch >= self.settings.n_epochs:
            log.info("already trained for %d epochs; raise --n_epochs to train more", self.epoch)
            return
        with SummaryWriter(self.run.path / "train") as train_writer, SummaryWriter(self.run.path / "val") as val_writer:
            while self.epoch < self.settings.n_epochs:
                train_loss = self.train_epoch(train_writer)
                self.epoch += 1
                message = f"epoch {self.epoch}/{self.settings.n_epochs} train loss {train_loss:.5f}"
                if self.epoch % self.settings.eval_freq == 0 or self.epoch == self.settings.n_epochs:
                    val_loss = self.validation_loss()
                    val_writer.add_scalar("loss", val_loss, self.step)
                    message += f" val loss {val_loss:.5f}"
                    if val_loss < self.best_val_loss:
                        self.best_val_loss = val_loss
                        save_checkpoint(self.state(), self.run.best_checkpoint)
                        message += " (best)"
                save_checkpoint(self.state(), self.run.last_checkpoint)
                if self.settings.checkpoint_every and self.epoch % self.settings.checkpoint_every == 0:
                    save_checkpoint(self.state(), self.run.epoch_checkpoint(self.epoch))
                log.info(message)


def ddpm_config(network: dict, scheduler: dict, signal_length: int, training_h5file: str,
                validation_h5file: str) -> dict:
    """config.json of a DDPM run: everything later stages need to rebuild model and scheduler."""
    return {"kind": "ddpm", "network": network, "scheduler": scheduler,
            "data": {"signal_length": signal_length, "channels": 2, "training_h5file": str(training_h5file),
                     "validation_h5file": str(validation_h5file)}}


def prepare_run(run: Run, config: dict) -> dict:
    """Write config.json for a new run, or check a resumed run's flags against the saved one."""
    if run.has_config():
        saved = run.load_config()
        for section in ("network", "scheduler"):
            requested = {key: value for key, value in config[section].items()}
            check_agrees(saved[section], requested, run.config_path)
        return saved
    return run.save_config(config)
