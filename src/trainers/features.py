"""Fitting the model-free baseline: classical RF features of the training windows, their mean and covariance.

No gradient steps: one pass over the training windows computes their features
(:func:`src.features.rf_features`) and fits :class:`src.features.FeatureDistance`, which scores any
window by its Mahalanobis distance from them. It writes a run folder like every other model
(config.json of kind ``features``, checkpoint.pth), so reconstruct.py, ood_detection.py and
score.py treat it as one more run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from src.data.datasets import make_loader
from src.data.sources import data_section
from src.distributed import Dist
from src.features import FEATURE_PSD_SEGMENT, rf_features
from src.io import save_checkpoint
from src.networks import build_model, network_config
from src.trainers.setup import TrainingSets, load_training_sets, start_run

log = logging.getLogger("rfood")


@torch.no_grad()
def window_features(model, dataset, batch_size: int) -> torch.Tensor:
    """rf_features of every window of ``dataset`` as ``model`` computes them, [N, F]."""
    rows = [rf_features(batch["signal"], model.psd_segment, model.cyclic)
            for batch in make_loader(dataset, batch_size, False)]
    return torch.cat(rows)


@dataclass(frozen=True)
class FeatureJob:
    """train_features.py's options: the sets, the Welch segment of the spectral features, the batch size of the
    pass over the windows and the seed."""

    sets: TrainingSets
    psd_segment: int = FEATURE_PSD_SEGMENT
    batch_size: int = 256
    seed: int = 0


def fit_feature_baseline(job: FeatureJob) -> None:
    """The whole of train_features.py: fit on the training windows, report the val distances, save."""
    started = time.perf_counter()
    train_set, val_set, options = load_training_sets(job.sets)
    network = network_config("features", psd_segment=job.psd_segment)
    config = {"kind": "features", "network": network,
              "data": data_section(train_set, job.sets.training_h5file, job.sets.validation_h5file, options)}
    run = job.sets.run()
    config, _ = start_run(run, config, Dist(), job.seed)
    model = build_model(config["network"])
    model.fit(window_features(model, train_set, job.batch_size))
    val_distance = float(torch.cat([model(batch["signal"]) for batch in
                                    make_loader(val_set, job.batch_size, False)]).mean())
    state = {"model": model.state_dict(), "epoch": 1, "step": 0, "best_val_loss": val_distance, "config": config}
    for path in (run.best_checkpoint, run.last_checkpoint):
        save_checkpoint(state, path)
    log.info("fitted %d features on %d training windows in %.1f s; mean val distance %.2f (about %d expected for "
             "in-distribution windows) -> %s", len(model.mean), len(train_set), time.perf_counter() - started,
             val_distance, len(model.mean), run.best_checkpoint)
