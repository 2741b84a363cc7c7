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
from src.diffusion.engine import ONE_CALL_MODES, ScheduleTables, reconstruct_batched
from src.diffusion.latent import load_space
from src.diffusion.multistart import model_evaluations, reconstruct, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler
from src.distributed import Dist, gather_to_main, on_main, shard
from src.dsp import blind_snr_db
from src.errors import UserError
from src.networks import load_trained
from src.ood.distances import reconstruction_errors
from src.ood.ood_folder import OodFolder, append_partial, in_sample_order, read_partials, results_frame
from src.progress import progress
from src.run import Run
from src.runtime import WithPrecision, former_auto, resolve_precision

log = logging.getLogger("rfood")
PLMS_HISTORIES = ("reset", "carry")  # per start point (PLMS as defined), or carried over as the research code did


class DiffusionReconstructor:
    """Noise each signal (or its latent) to every start point and denoise it back (batched engine)."""

    def __init__(self, model: nn.Module, config: dict, num_inference_steps: int, inference_skip_factor: int,
                 seed: int, device: torch.device, mode: str = "plms", max_chains: int | None = None,
                 plms_history: str = "reset") -> None:
        if plms_history not in PLMS_HISTORIES:
            raise UserError(f"--plms_history must be one of {', '.join(PLMS_HISTORIES)}, got {plms_history!r}")
        if plms_history == "carry" and mode != "plms":
            raise UserError(f"--plms_history=carry reproduces the research code's PLMS loop; it needs "
                            f"--reconstruction_mode=plms, not {mode}")
        self.model, self.seed, self.mode, self.max_chains = model, seed, mode, max_chains
        self.plms_history = plms_history
        self.space = load_space(config, device)
        self.b_scale = config["scheduler"]["b_scale"]
        self.scheduler = build_pndm_scheduler(config["scheduler"], num_inference_steps)
        self.tables = ScheduleTables(self.scheduler, device)
        self.starts = start_points(self.scheduler, inference_skip_factor)
        evaluations = len(self.starts) if mode in ONE_CALL_MODES else model_evaluations(self.scheduler, self.starts)
        self.settings = {"mode": mode, "num_inference_steps": num_inference_steps,
                         "inference_skip_factor": inference_skip_factor, "start_points": self.starts,
                         "model_evaluations_per_signal": evaluations}
        if plms_history != "reset":  # recorded only when it departs from the default, so older settings still match
            self.settings["plms_history"] = plms_history

    @torch.inference_mode()
    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_errors(x0, self.reconstructions(x0, indices))

    @torch.inference_mode()
    def reconstructions(self, x0: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Each signal of ``x0`` [B, ...] rebuilt from every start point: [n_starts, B, ...]."""
        z0 = self.space.encode(x0)
        noise = None if self.mode == "path" else sample_noise(indices, len(self.starts), tuple(z0.shape[1:]), self.seed)
        if self.plms_history == "carry":  # the research code's loop: one scheduler, history carried over
            latents = reconstruct(self.model, self.scheduler, z0, self.starts, noise, self.b_scale, reset_history=False)
        else:
            latents = reconstruct_batched(self.model, self.scheduler, z0, self.starts, noise, self.b_scale, self.mode,
                                          self.max_chains, self.tables)
        return torch.stack([self.space.decode(z, tuple(x0.shape[2:])) for z in latents])


class AutoencoderReconstructor:
    """One pass through the autoencoder, recorded as start point t = 0."""

    starts = [0]
    settings = {"mode": "autoencoder", "start_points": [0], "model_evaluations_per_signal": 1}

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @torch.inference_mode()
    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_errors(x0, self.reconstructions(x0, indices))

    @torch.inference_mode()
    def reconstructions(self, x0: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The autoencoder's output for ``x0`` [B, ...], as the one start point: [1, B, ...]."""
        return self.model(x0)[None]


class FeatureScorer:
    """The model-free baseline: each window's feature distance from the training windows, as ``feat`` at t = 0."""

    starts = [0]
    settings = {"mode": "features", "start_points": [0], "model_evaluations_per_signal": 0}

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @torch.inference_mode()
    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feat": self.model(x0).float()[None]}


def build_reconstructor(run: Run, config: dict, num_inference_steps: int, inference_skip_factor: int, seed: int,
                        device: torch.device, mode: str = "plms", max_chains: int | None = None,
                        compile: bool = False, plms_history: str = "reset", precision: str = "auto"):
    kind = config.get("kind")
    model = load_trained(config["network"], run.best_checkpoint, device)
    if compile:
        model = torch.compile(model)
    if kind == "features":  # no network: float64 statistics, never autocast
        return FeatureScorer(model)
    model = WithPrecision(model, resolve_precision(precision, device))
    if kind == "autoencoder":
        return AutoencoderReconstructor(model)
    if kind in ("ddpm", "ldm"):
        return DiffusionReconstructor(model, config, num_inference_steps, inference_skip_factor, seed, device,
                                      mode, max_chains, plms_history)
    raise UserError(f"{run.config_path} describes an unknown kind of run {kind!r}")


def reconstruction_precision(flag: str, earlier: dict | None, kind: str, device: torch.device) -> tuple[str, dict]:
    """(precision to run, its entry for reconstruction.json) for reconstruct.py's ``--precision``.

    ``auto`` continuing a folder (``earlier``: its reconstruction.json) keeps the precision it records. An
    older folder that records none ran the former auto; run in that, it keeps recording none, so its
    settings still match. A feature run has no network: fp32, not recorded.
    """
    if kind == "features":
        return "fp32", {}
    if flag == "auto" and earlier:
        precision = earlier.get("precision") or former_auto(device)
        log.info("precision %s: what the earlier results in this folder were made with", precision)
    else:
        precision = resolve_precision(flag, device)
    unrecorded = bool(earlier) and "precision" not in earlier and precision == former_auto(device)
    return precision, {} if unrecorded else {"precision": precision}


def scoring_precision(flag: str | None, settings: dict, device: torch.device) -> str:
    """score.py's precision: the flag's (``auto`` resolved here), else that of the val reconstruction
    (reconstruction.json; one that records none ran the former auto), so windows score as the threshold was set."""
    if flag is not None:
        return resolve_precision(flag, device)
    precision = settings.get("precision") or former_auto(device)
    log.info("precision %s, as the val reconstruction ran (--precision overrides)", precision)
    return precision


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
        units = [dataset.units[int(i)] for i in batch["index"]] if hasattr(dataset, "units") else None
        snrs = getattr(dataset, "snr_db", None)
        iq = batch["signal"].ndim == 3 and batch["signal"].shape[1] == 2  # 1D I/Q windows (not images)
        frames.append(results_frame(ids, set_type, dataset.name, reconstructor.starts,
                                    {k: v.cpu().numpy() for k, v in errors.items()}, units,
                                    None if snrs is None else [snrs[int(i)] for i in batch["index"]],
                                    blind_snr_db(batch["signal"]).numpy() if iq else None))
        if partial is not None:
            append_partial(frames[-1], partial)
    parts = gather_to_main(dist, pd.concat(frames, ignore_index=True) if frames else None)
    if not dist.is_main:
        return None
    return in_sample_order(pd.concat([earlier, *parts], ignore_index=True))
