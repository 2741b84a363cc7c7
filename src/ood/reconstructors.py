"""Reconstructors: a trained run rebuilt to turn signals into per-(signal, t) reconstruction errors.

Diffusion runs (DDPM, LDM) reconstruct from every start point t; the autoencoder baseline has a
single "start point" t = 0, so its results files have the same layout and score the same way.
"""
from __future__ import annotations

import logging

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Subset

from src.data.datasets import SignalDataset, make_loader
from src.diffusion.engine import ScheduleTables, reconstruct_batched
from src.diffusion.latent import load_space
from src.diffusion.multistart import model_evaluations, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler
from src.distributed import Dist, gather_to_main, on_main, shard
from src.errors import UserError
from src.networks import load_trained
from src.ood.distances import reconstruction_errors
from src.ood.ood_folder import OodFolder, append_partial, in_sample_order, read_partials, results_frame
from src.progress import progress
from src.run import Run

log = logging.getLogger("rfood")


class DiffusionReconstructor:
    """Noise each signal (or its latent) to every start point and denoise it back (batched engine)."""

    def __init__(self, model: nn.Module, config: dict, num_inference_steps: int, inference_skip_factor: int,
                 seed: int, device: torch.device, mode: str = "plms", max_chains: int | None = None) -> None:
        self.model, self.seed, self.mode, self.max_chains = model, seed, mode, max_chains
        self.space = load_space(config, device)
        self.b_scale = config["scheduler"]["b_scale"]
        self.scheduler = build_pndm_scheduler(config["scheduler"], num_inference_steps)
        self.tables = ScheduleTables(self.scheduler, device)
        self.starts = start_points(self.scheduler, inference_skip_factor)
        evaluations = len(self.starts) if mode == "onestep" else model_evaluations(self.scheduler, self.starts)
        self.settings = {"mode": mode, "num_inference_steps": num_inference_steps,
                         "inference_skip_factor": inference_skip_factor, "start_points": self.starts,
                         "model_evaluations_per_signal": evaluations}

    @torch.inference_mode()
    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        z0 = self.space.encode(x0)
        noise = sample_noise(indices, len(self.starts), tuple(z0.shape[1:]), self.seed)
        latents = reconstruct_batched(self.model, self.scheduler, z0, self.starts, noise, self.b_scale, self.mode,
                                      self.max_chains, self.tables)
        signals = torch.stack([self.space.decode(z, x0.shape[-1]) for z in latents])
        return reconstruction_errors(x0, signals)


class AutoencoderReconstructor:
    """One pass through the autoencoder, recorded as start point t = 0."""

    starts = [0]
    settings = {"mode": "autoencoder", "start_points": [0], "model_evaluations_per_signal": 1}

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @torch.inference_mode()
    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_errors(x0, self.model(x0)[None])


def build_reconstructor(run: Run, config: dict, num_inference_steps: int, inference_skip_factor: int, seed: int,
                        device: torch.device, mode: str = "plms", max_chains: int | None = None,
                        compile: bool = False):
    kind = config.get("kind")
    model = load_trained(config["network"], run.best_checkpoint, device)
    if compile:
        model = torch.compile(model)
    if kind == "autoencoder":
        return AutoencoderReconstructor(model)
    if kind in ("ddpm", "ldm"):
        return DiffusionReconstructor(model, config, num_inference_steps, inference_skip_factor, seed, device,
                                      mode, max_chains)
    raise UserError(f"{run.config_path} describes an unknown kind of run {kind!r}")


def reconstruct_set(reconstructor, dataset: SignalDataset, set_type: str, batch_size: int, dist: Dist = Dist(),
                    num_workers: int = 0, folder: OodFolder | None = None) -> pd.DataFrame | None:
    """Errors of every signal in ``dataset`` at every start point, one row per (signal, t).

    Under torchrun each process reconstructs its own disjoint slice of the signals (no padding, so
    each signal exactly once) and the main process gets all rows, in sample order; others get None.
    With an ood ``folder``, every finished batch is appended to a partial file there at once, and
    signals found complete in such files (from an interrupted run) are not reconstructed again.
    """
    stem = dataset.path.stem
    partials = folder.partial_files(stem) if folder else []
    earlier = on_main(dist, read_partials, partials, len(reconstructor.starts))
    finished = set(earlier["filename"]) if earlier is not None else set()
    todo = [index for index in range(len(dataset)) if dataset.ids[index] not in finished]
    if finished and dist.is_main:
        log.info("%s %s: %d of %d signals already done, continuing", set_type, dataset.name, len(finished),
                 len(dataset))
    mine = [todo[i] for i in shard(dist, len(todo))]
    loader = make_loader(Subset(dataset, mine), batch_size, shuffle=False, num_workers=num_workers)
    partial = folder.partial_file(stem, dist.rank) if folder else None
    frames = []
    for batch in progress(loader, f"{set_type} {dataset.name}", unit="batch", enabled=dist.is_main):
        errors = reconstructor.errors(batch["signal"].to(dist.device), batch["index"])
        ids = [dataset.ids[int(i)] for i in batch["index"]]
        frames.append(results_frame(ids, set_type, dataset.name, reconstructor.starts,
                                    {k: v.cpu().numpy() for k, v in errors.items()}))
        if partial is not None:
            append_partial(frames[-1], partial)
    parts = gather_to_main(dist, pd.concat(frames, ignore_index=True) if frames else None)
    if not dist.is_main:
        return None
    return in_sample_order(pd.concat([earlier, *parts], ignore_index=True))
