"""The reconstruction stage: rebuild a trained run and write per-(signal, t) errors for each set."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from src.data.datasets import SignalDataset, display_name, make_loader
from src.diffusion.reconstruction import reconstruct, reconstruction_errors, sample_noise
from src.errors import UserError
from src.io import load_checkpoint
from src.networks import build_model
from src.ood.results import results_frame
from src.run import Run

log = logging.getLogger("rfood")


def load_trained_model(run: Run, config: dict, device: torch.device) -> nn.Module:
    """The run's best checkpoint in its network, in eval mode on ``device``."""
    model = build_model(config["network"])
    state = load_checkpoint(run.best_checkpoint)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as err:
        raise UserError(f"{run.best_checkpoint} does not match the network in {run.config_path} "
                        f"({str(err).splitlines()[0]}); retrain or fix the run folder") from err
    return model.to(device).eval()


def reconstruct_set(model: nn.Module, scheduler, dataset: SignalDataset, set_type: str, starts: list[int],
                    batch_size: int, seed: int, b_scale: float, device: torch.device,
                    num_workers: int = 0) -> pd.DataFrame:
    """Errors of every signal in ``dataset`` at every start point, one row per (signal, t)."""
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
    frames = []
    for batch in tqdm(loader, desc=f"{set_type} {dataset.name}", leave=False, disable=None):
        x0 = batch["signal"].to(device)
        noise = sample_noise(batch["index"], len(starts), tuple(x0.shape[1:]), seed)
        errors = reconstruction_errors(x0, reconstruct(model, scheduler, x0, starts, noise, b_scale))
        ids = [dataset.ids[int(i)] for i in batch["index"]]
        frames.append(results_frame(ids, set_type, dataset.name, starts,
                                    {k: v.cpu().numpy() for k, v in errors.items()}))
    return pd.concat(frames, ignore_index=True)


def check_set_files(validation: str | None, in_files: list[str], out_files: list[str]) -> None:
    """Refuse set lists that would overwrite each other's results or score a set against itself."""
    resolved_in = {Path(path).resolve() for path in in_files}
    for path in out_files:
        if Path(path).resolve() in resolved_in:
            raise UserError(f"{path} is given both as --in_ids and in --out_ids; an out set must differ from in")
    names = [display_name(path) for path in out_files]
    clashes = sorted({name for name in names if names.count(name) > 1 or name in ("val", "in")})
    if clashes:
        raise UserError(f"--out_ids holds several files named {', '.join(clashes)} (or a reserved name val/in); "
                        "results_<Name>.csv would collide: rename the files")
    if validation is not None and any(Path(validation).resolve() == Path(p).resolve() for p in out_files):
        raise UserError(f"{validation} is the validation file and also an out set; choose another out file")
