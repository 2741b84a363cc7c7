"""The training loop every stage shares: epochs, validation, best/last checkpoints, resume, TensorBoard.

Optionally (the diffusion defaults) the learning rate warms up linearly and then follows a cosine
down to zero over the run, and an exponential moving average (EMA) of the weights is kept: the EMA
weights are the ones validated, drawn, chosen as best and loaded by later stages.

A stage subclasses :class:`Trainer` and supplies :meth:`Trainer.loss`, and may supply
:meth:`Trainer.figures` (drawn at every evaluation from the first validation signals). Each epoch
draws its shuffling and noise from generators seeded by (seed, epoch), so a resumed run continues
exactly where a run in one go would be.
"""
from __future__ import annotations

import copy
import logging
import math
import shutil
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Subset
from torch.utils.tensorboard import SummaryWriter

from src.data.datasets import SignalDataset, make_loader
from src.distributed import Dist, all_reduce_sum, shard
from src.errors import UserError
from src.io import atomic_path, load_checkpoint, save_checkpoint
from src.networks import build_model, load_weights
from src.progress import progress
from src.run import Run, check_agrees
from src.runtime import autocast

log = logging.getLogger("rfood")
QUICK_TEST_BATCHES = 2  # --quick_test: batches per epoch, for smoke tests
VAL_SEED = 12345  # the same validation noise at every evaluation
FIGURE_SIGNALS = 4  # the first validation signals, drawn at every evaluation


@dataclass
class TrainSettings:
    n_epochs: int
    batch_size: int
    learning_rate: float
    eval_freq: int
    checkpoint_every: int
    seed: int
    num_workers: int
    quick_test: bool
    figures: bool = True  # TensorBoard figures at every evaluation (main process only)
    lr_schedule: str = "constant"  # or "cosine": from the peak learning rate down to 0 over the run
    warmup_steps: int = 0  # linear warm-up of the learning rate over the first steps
    ema_decay: float = 0.0  # 0: no EMA of the weights
    precision: str = "fp32"  # or "bf16": autocast of the forward passes; weights and optimizer stay fp32


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """The learning rate at optimizer step ``step`` (0-based) as a fraction of the peak."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant":
        return warmup
    progress = min(1.0, max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
    return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for every weight; buffers (norm statistics) are copied."""
    for averaged, current in zip(ema.parameters(), model.parameters()):
        averaged.lerp_(current, 1.0 - decay)
    for averaged, current in zip(ema.buffers(), model.buffers()):
        averaged.copy_(current)


def ema_decay_at(step: int, decay: float) -> float:
    """The decay used at a step: lower at the start, so early weights are not averaged in for long."""
    return min(decay, (1.0 + step) / (10.0 + step))


def strip_prefixes(state_dict: dict) -> dict:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes before saving."""
    def clean(key: str) -> str:
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        return key
    return {clean(key): value for key, value in state_dict.items()}


def prepare_run(run: Run, config: dict, checked_sections=("network", "scheduler")) -> dict:
    """Write the config of a new run, or check a resumed run's flags against the saved one."""
    if run.has_config():
        saved = run.load_config()
        if saved.get("kind") != config["kind"]:
            raise UserError(f"{run.path} holds a {saved.get('kind')} run, not a {config['kind']} run; "
                            "choose another --model_name")
        for section in checked_sections:
            if section in config:
                check_agrees(saved.get(section, {}), config[section], run.config_path)
        return saved
    return run.save_config(config)


class NullWriter:
    """Stands in for SummaryWriter on processes other than the main one."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def add_figure(self, *args, **kwargs) -> None:
        pass


class Trainer:
    """Owns one run's model and optimiser; subclasses define :meth:`loss`.

    Under torchrun the model is wrapped in DistributedDataParallel, each process trains on its own
    shard (DistributedSampler, re-shuffled every epoch) and validates on its own disjoint slice of the
    val set; losses are summed over processes before logging and choosing the best checkpoint, and
    only the main process writes checkpoints and TensorBoard events.
    """

    def __init__(self, run: Run, config: dict, settings: TrainSettings, train_set: SignalDataset,
                 val_set: SignalDataset, dist: Dist = Dist()) -> None:
        self.run, self.config, self.settings, self.dist = run, config, settings, dist
        self.device = dist.device
        self.model = build_model(config["network"]).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.learning_rate)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if settings.ema_decay > 0 else None
        self.net = self.model  # what training calls: the DDP wrapper under torchrun
        if dist.enabled:
            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None)
        self.figure_signals = None
        if dist.is_main and settings.figures:
            count = min(FIGURE_SIGNALS, len(val_set))
            self.figure_signals = torch.stack([val_set[index]["signal"] for index in range(count)])
        self.sampler = None
        if dist.enabled:
            self.sampler = DistributedSampler(train_set, dist.world_size, dist.rank, shuffle=True, seed=settings.seed)
            val_set = Subset(val_set, shard(dist, len(val_set)))
        self.train_loader = make_loader(train_set, settings.batch_size, shuffle=True, sampler=self.sampler,
                                        num_workers=settings.num_workers, seed=settings.seed)
        self.val_loader = make_loader(val_set, settings.batch_size, shuffle=False, num_workers=settings.num_workers)
        self.epoch, self.step, self.best_val_loss = 0, 0, math.inf
        steps_per_epoch = QUICK_TEST_BATCHES if settings.quick_test else len(self.train_loader)
        self.total_steps = settings.n_epochs * min(steps_per_epoch, len(self.train_loader))

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, drawn and saved as best: the EMA when there is one."""
        return self.ema if self.ema is not None else self.model

    def autocast(self):
        """The forward passes' arithmetic: ``settings.precision`` (autocast; the fp32 weights are left as they are)."""
        return autocast(self.device, self.settings.precision)

    def loss(self, model: nn.Module, x: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The training objective of ``model`` on a batch, and extra scalars to log."""
        raise NotImplementedError

    def figures(self, x: torch.Tensor) -> dict[str, Figure]:
        """TensorBoard figures (tag -> figure) of the validation signals ``x``; none by default."""
        return {}

    @torch.no_grad()
    def log_figures(self, writer: SummaryWriter) -> None:
        """Draw :meth:`figures` of the first validation signals; on the main process, when enabled."""
        if self.figure_signals is None:
            return
        self.eval_model.eval()
        for tag, figure in self.figures(self.figure_signals.to(self.device)).items():
            writer.add_figure(tag, figure, self.step, close=True)

    def _batches(self, loader, limit: int, desc: str):
        bar = progress(loader, desc, enabled=self.dist.is_main, final_line=False)
        for index, batch in enumerate(bar):
            if self.settings.quick_test and index >= limit:
                break
            yield bar, batch["signal"].to(self.device)

    def train_epoch(self, writer: SummaryWriter) -> float:
        self.model.train()
        epoch_seed = self.settings.seed * 100_003 + self.epoch
        generator = torch.Generator().manual_seed(epoch_seed * 1_009 + self.dist.rank)
        self.train_loader.generator.manual_seed(epoch_seed)
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        torch.manual_seed(epoch_seed)  # dropout, codebook restarts
        total, count = 0.0, 0
        for bar, x in self._batches(self.train_loader, QUICK_TEST_BATCHES,
                                    f"epoch {self.epoch + 1}/{self.settings.n_epochs}"):
            loss, extras = self.loss(self.net, x, generator)
            self._check_finite(loss)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._set_learning_rate()
            self.optimizer.step()
            if self.ema is not None:
                update_ema(self.ema, self.model, ema_decay_at(self.step, self.settings.ema_decay))
            self.step += 1
            total, count = total + loss.item(), count + 1
            for name, value in {"loss": loss.item(), **extras}.items():
                writer.add_scalar(name, value, self.step)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        writer.add_scalar("learning_rate", self.optimizer.param_groups[0]["lr"], self.step)
        total, count = all_reduce_sum(self.dist, total, count)
        return total / max(count, 1)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss (and extras) over the val set, with the same noise every time."""
        self.eval_model.eval()
        generator = torch.Generator().manual_seed(VAL_SEED + self.dist.rank)
        sums, count = {}, 0
        for _, x in self._batches(self.val_loader, QUICK_TEST_BATCHES // 2, "validation"):
            loss, extras = self.loss(self.eval_model, x, generator)
            for name, value in {"loss": loss.item(), **extras}.items():
                sums[name] = sums.get(name, 0.0) + value * len(x)
            count += len(x)
        names = sorted(sums)
        *totals, count = all_reduce_sum(self.dist, *(sums[name] for name in names), count)
        return {name: value / max(count, 1) for name, value in zip(names, totals)}

    def _set_learning_rate(self) -> None:
        factor = lr_factor(self.step, self.total_steps, self.settings.lr_schedule, self.settings.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.learning_rate * factor

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop every process together when any one sees a non-finite loss."""
        (bad,) = all_reduce_sum(self.dist, 0.0 if torch.isfinite(loss) else 1.0)
        if bad:
            raise UserError(f"training loss became {loss.item()} at epoch {self.epoch + 1}, step {self.step}; "
                            f"the last good checkpoint is kept in {self.run.path}; lower --learning_rate")

    def state(self) -> dict:
        state = {"model": strip_prefixes(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "step": self.step, "best_val_loss": self.best_val_loss,
                 "config": self.config}
        if self.ema is not None:
            state["ema"] = strip_prefixes(self.ema.state_dict())
        return state

    def resume(self) -> None:
        """Continue from checkpoint_last.pth when it exists, at the epoch after the last finished one."""
        if not self.run.last_checkpoint.is_file():
            return
        state = load_checkpoint(self.run.last_checkpoint)
        load_weights(self.model, state, self.run.last_checkpoint)
        if self.ema is not None:  # a run that had no EMA starts one from its current weights
            load_weights(self.ema, state, self.run.last_checkpoint, "ema" if "ema" in state else "model")
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step, self.best_val_loss = state["epoch"], state["step"], state["best_val_loss"]
        log.info("resuming %s at epoch %d (best val loss %.5f)", self.run.path, self.epoch + 1, self.best_val_loss)

    def fit(self) -> None:
        self.resume()
        if self.epoch >= self.settings.n_epochs:
            log.info("already trained for %d epochs; raise --n_epochs to train more", self.epoch)
            return
        train_writer, val_writer = self._writers()
        try:
            while self.epoch < self.settings.n_epochs:
                train_loss = self.train_epoch(train_writer)
                self.epoch += 1
                message = f"epoch {self.epoch}/{self.settings.n_epochs} train loss {train_loss:.5f}"
                improved = False
                if self.epoch % self.settings.eval_freq == 0 or self.epoch == self.settings.n_epochs:
                    text, improved = self._evaluate(val_writer)
                    message += text
                self._save(self.run.last_checkpoint)  # the best and the epoch's checkpoint hold the same state: copies
                if improved:
                    self._copy(self.run.last_checkpoint, self.run.best_checkpoint)
                if self.settings.checkpoint_every and self.epoch % self.settings.checkpoint_every == 0:
                    self._copy(self.run.last_checkpoint, self.run.epoch_checkpoint(self.epoch))
                log.info(message)
        finally:
            for writer in (train_writer, val_writer):
                if isinstance(writer, SummaryWriter):
                    writer.close()

    def _writers(self):
        if not self.dist.is_main:
            return NullWriter(), NullWriter()
        return SummaryWriter(self.run.path / "train"), SummaryWriter(self.run.path / "val")

    def _save(self, path) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state(), path)

    def _copy(self, source, path) -> None:
        if self.dist.is_main:
            with atomic_path(path) as tmp:
                shutil.copyfile(source, tmp)

    def _evaluate(self, writer: SummaryWriter) -> tuple[str, bool]:
        """Validate and log; the log line's text and whether val loss improved (the best checkpoint is due)."""
        scalars = self.validate()  # identical on every process: summed over all of them
        for name, value in scalars.items():
            writer.add_scalar(name, value, self.step)
        self.log_figures(writer)
        message = "".join(f" val {name.replace('_', ' ')} {value:.5f}" for name, value in scalars.items())
        improved = scalars["loss"] < self.best_val_loss
        if improved:
            self.best_val_loss = scalars["loss"]
            message += " (best)"
        return message, improved
