"""A run folder ``<output_dir>/<model_name>/``: its checkpoints, log, ood folder and config.json."""
from __future__ import annotations

import logging
from pathlib import Path

from src.errors import UserError
from src.io import load_json, save_json

CONFIG_VERSION = 2  # 2: scheduler.snr_shift multiplies the SNR, as in the research code (1: divided it)
log = logging.getLogger("rfood")


class Run:
    """Paths of one run and its config.json."""

    def __init__(self, output_dir: str | Path, model_name: str, config_name: str = "config.json") -> None:
        self.path = Path(output_dir) / model_name
        self.name = model_name
        self.config_path = self.path / config_name

    best_checkpoint = property(lambda self: self.path / "checkpoint.pth")
    last_checkpoint = property(lambda self: self.path / "checkpoint_last.pth")
    ood_dir = property(lambda self: self.path / "ood")
    log_file = property(lambda self: self.path / "log.txt")

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.path / f"checkpoint_{epoch}.pth"

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def load_config(self) -> dict:
        if not self.has_config() and (self.path / "vqvae_config.json").is_file():
            raise UserError(f"{self.path} is a VQ-VAE run, the first stage of an LDM; use the LDM run trained on it "
                            "(train_ddpm.py --vqvae_checkpoint)")
        if not self.has_config():
            raise UserError(f"no config.json in {self.path}; train a model there first "
                            "(check --output_dir and --model_name)")
        config = upgrade(load_json(self.config_path, "run config"), self.config_path)
        if config.get("format_version") != CONFIG_VERSION:
            raise UserError(f"{self.config_path} has format_version {config.get('format_version')}, "
                            f"this toolkit reads {CONFIG_VERSION}")
        return config

    def save_config(self, config: dict) -> dict:
        """Write config.json; returns what was written."""
        config = {**config, "format_version": CONFIG_VERSION}
        save_json(config, self.config_path)
        return config


def upgrade(config: dict, path: Path) -> dict:
    """A config.json of format 1 read as format 2: the same schedule, its snr_shift inverted (not rewritten)."""
    if config.get("format_version") != 1:
        return config
    scheduler = dict(config.get("scheduler") or {})
    if scheduler.get("snr_shift", 1.0) != 1.0:
        old = scheduler["snr_shift"]
        scheduler["snr_shift"] = 1.0 / old
        log.warning("%s was written when --snr_shift divided the SNR (format 1): its snr_shift=%g is read as "
                    "--snr_shift=%g (multiplying, the research code's meaning), the same schedule", path, old,
                    scheduler["snr_shift"])
    return {**config, "scheduler": scheduler, "format_version": CONFIG_VERSION} if "scheduler" in config else \
        {**config, "format_version": CONFIG_VERSION}


def check_agrees(section: dict, requested: dict, where: Path) -> None:
    """Refuse flags that contradict a saved config; None means "not given"."""
    clashes = [f"--{key}={value} (config: {section[key]})" for key, value in requested.items()
               if value is not None and key in section and _normalise(section[key]) != _normalise(value)]
    if clashes:
        raise UserError(f"{', '.join(clashes)} clash with {where}; drop these flags or use another --model_name")


def _normalise(value):
    return list(value) if isinstance(value, tuple) else value
