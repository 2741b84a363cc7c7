"""Open a data set whatever it holds: processed RF signals (h5, 1D) or images and volumes (CSV split files).

Every set is a Dataset of ``{"signal": float32 [C, *spatial], "index": i}`` items with ``path``,
``name``, ``ids`` and ``channels``; signals also ``signal_length``, images ``spatial_shape``. Which
kind is decided by ``--spatial_dimension``: 1 reads processed h5 files, 2 and 3 read CSV split
files in the research code's layout (:mod:`src.data.images`). As in the research code, an out-set
entry ending in ``_vflip`` or ``_hflip`` (``.../Digits04_test.csv_vflip``) is that CSV's images
flipped. Here too: the data flags (:func:`add_data_args`; as given: :class:`DataFlags`) and what
config.json records of the data (:func:`data_section`), which later stages read back
(:func:`options_for_run`).
"""
from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from src.cli import add_carrier_arg
from src.data.datasets import SignalDataset, display_name
from src.data.images import ImageDataset, add_image_args, split_name
from src.dsp import choose_carrier_order
from src.errors import UserError

log = logging.getLogger("rfood")

FLIP_SUFFIXES = {"_vflip": "v", "_hflip": "h"}


def add_data_args(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """What the data are: 1D RF signals (processed h5) or 2D/3D images (CSV split files), and how they are
    read. With ``from_config`` (later stages) None means "as the run was trained"."""
    suffix = " (default: as in the run's config.json)" if from_config else " (default: %(default)s)"
    parser.add_argument("--spatial_dimension", type=int, choices=[1, 2, 3], default=None if from_config else 1,
                        help="1: RF signals [2, T] from processed h5 files; 2: images; 3: volumes, both from CSV "
                             "split files (data_splits/<Name>_{train,val,test}.csv)" + suffix)
    add_image_args(parser, from_config)
    add_carrier_arg(parser, from_config)


@dataclass(frozen=True)
class DataFlags:
    """The data flags as given (:func:`add_data_args`); None: not given, so the default for a new run and what the
    run was trained with for a later stage."""

    spatial_dimension: int | None = None
    is_grayscale: bool | None = None
    image_roi: list[int] | None = None
    image_size: int | None = None
    carrier_recovery: str | None = None


@dataclass(frozen=True)
class DataOptions:
    """How files become model inputs (the data flags of every stage)."""

    spatial_dims: int = 1
    is_grayscale: bool = False
    image_roi: tuple[int, ...] | None = None
    image_size: int | None = None
    carrier_recovery: str = "off"  # as asked: off | auto | power2 | power4 | power8
    carrier_order: int = 0  # what runs: the power M of the carrier estimator, 0 = none (auto resolved)
    # what auto saw: (M, median line strength of the training windows, noise's), in dB, per power M
    carrier_evidence: tuple[tuple[int, float, float], ...] = ()

    @classmethod
    def from_flags(cls, flags: DataFlags) -> DataOptions:
        """The options a training script's data flags ask for (a flag not given: its default)."""
        mode = flags.carrier_recovery or "off"
        return cls(1 if flags.spatial_dimension is None else flags.spatial_dimension, bool(flags.is_grayscale),
                   None if flags.image_roi is None else tuple(flags.image_roi), flags.image_size, mode,
                   fixed_order(mode))

    @classmethod
    def from_config(cls, data: dict) -> DataOptions:
        roi = data.get("image_roi")
        return cls(data.get("spatial_dims", 1), bool(data.get("is_grayscale", False)),
                   None if roi is None else tuple(roi), data.get("image_size"),
                   data.get("carrier_recovery", "off"), int(data.get("carrier_order", 0)))

    def section(self) -> dict:
        """These options as plain values for config.json's ``data`` section.

        Signals record only the carrier recovery (and only when it is on, so the configs of earlier
        runs still match on resume); images record how they were read.
        """
        if self.spatial_dims == 1:
            if self.carrier_recovery == "off":
                return {}
            section = {"carrier_recovery": self.carrier_recovery, "carrier_order": self.carrier_order}
            if self.carrier_evidence:
                section["carrier_line_strengths_db"] = {f"z^{m}": [round(seen, 2), round(noise, 2)]
                                                        for m, seen, noise in self.carrier_evidence}
            return section
        values = asdict(self)
        values["image_roi"] = None if self.image_roi is None else list(self.image_roi)
        for key in ("carrier_recovery", "carrier_order", "carrier_evidence"):
            values.pop(key)
        return values


AUTO_WINDOWS = 2048  # training windows ``auto`` looks at (the first ones; a median needs no more)


def fixed_order(mode: str) -> int:
    """The power a --carrier_recovery mode names (power4 -> 4); 0 for off, and for auto until resolved."""
    return int(mode.removeprefix("power")) if mode.startswith("power") else 0


def resolve_carrier(options: DataOptions, training_file: str | Path, first_n: int | None = None) -> DataOptions:
    """The options with ``auto`` resolved to an order from the first training windows (at most AUTO_WINDOWS,
    read once, without recovery), and what it saw."""
    if options.carrier_recovery != "auto":
        return options
    sample = open_set(training_file, replace(options, carrier_order=0), first_n=min(first_n or AUTO_WINDOWS,
                                                                                      AUTO_WINDOWS))
    windows = torch.stack([sample[index]["signal"] for index in range(len(sample))])
    order, strengths, noise = choose_carrier_order(windows)
    return replace(options, carrier_order=order,
                   carrier_evidence=tuple((m, strengths[m], noise[m]) for m in strengths))


def log_carrier_choice(data: dict) -> None:
    """Say in the run's log what --carrier_recovery=auto chose and the line strengths it saw."""
    evidence = data.get("carrier_line_strengths_db")
    if data.get("carrier_recovery") != "auto" or not evidence:
        return
    order = data.get("carrier_order", 0)
    seen = ", ".join(f"{name} {values[0]:.1f} dB (noise {values[1]:.1f})" for name, values in evidence.items())
    log.info("carrier recovery auto: %s; median line strength of the training windows: %s",
             f"power{order}" if order else "off (no power's line stands out by 3 dB)", seen)


def check_spatial_dims(spatial_dims: int) -> int:
    if spatial_dims not in (1, 2, 3):
        raise UserError(f"--spatial_dimension must be 1 (RF signals), 2 (images) or 3 (volumes), got {spatial_dims}")
    return spatial_dims


def open_set(path: str | Path, options: DataOptions, first_n: int | None = None, cache: bool = True):
    """The data set at ``path`` (an h5 file for signals, a CSV split file for images)."""
    check_spatial_dims(options.spatial_dims)
    text = str(path)
    if options.spatial_dims == 1:
        if text.endswith(".csv"):
            raise UserError(f"{path} is a CSV split file of images; pass --spatial_dimension=2 (images) or 3 "
                            "(volumes), or give a processed h5 file of signals")
        return SignalDataset(path, first_n, cache, options.carrier_order)
    if options.carrier_recovery != "off":
        raise UserError(f"--carrier_recovery={options.carrier_recovery} applies to RF signals only, not to "
                        f"--spatial_dimension={options.spatial_dims}; drop the flag")
    flip = next((flip for suffix, flip in FLIP_SUFFIXES.items() if text.endswith(suffix)), None)
    if flip:
        text = text[:-len("_vflip")]
    if not text.endswith(".csv"):
        raise UserError(f"{path}: with --spatial_dimension={options.spatial_dims} the data come from CSV split "
                        "files (data_splits/<Name>_{train,val,test}.csv); give one")
    return ImageDataset(text, options.spatial_dims, options.is_grayscale, options.image_roi, options.image_size,
                        first_n, cache, flip)


def set_name(path: str | Path, spatial_dims: int) -> str:
    """The name a set's results file and tables get: the file's display name, plus ``_vflip``/``_hflip``."""
    text = str(path)
    if spatial_dims == 1:
        return display_name(path)
    flip = next((suffix for suffix in FLIP_SUFFIXES if text.endswith(suffix)), "")
    return split_name(text[:len(text) - len(flip)]) + flip


def options_for_run(data: dict, flags: DataFlags) -> DataOptions:
    """The data options a run was trained with; flags given to a later stage must agree with them."""
    trained = DataOptions.from_config(data)
    given = {"spatial_dimension": ("spatial_dims", flags.spatial_dimension),
             "is_grayscale": ("is_grayscale", flags.is_grayscale),
             "image_roi": ("image_roi", flags.image_roi),
             "image_size": ("image_size", flags.image_size)}
    clashes = [f"--{flag}={value}" + f" (trained with {getattr(trained, field)})"
               for flag, (field, value) in given.items()
               if value is not None and _normal(value) != _normal(getattr(trained, field))]
    if clashes:
        raise UserError(f"{', '.join(clashes)}: the run was trained on other data; drop these flags or use a run "
                        "trained with them")
    check_carrier(flags.carrier_recovery, trained)
    return trained


def check_carrier(given: str | None, trained: DataOptions) -> None:
    """A later stage's --carrier_recovery may repeat what the run was trained with (or what its auto chose)."""
    if given is None:
        return
    agrees = {trained.carrier_recovery, f"power{trained.carrier_order}" if trained.carrier_order else "off"}
    if given not in agrees:
        chose = f" (auto chose {sorted(agrees - {'auto'})[0]})" if trained.carrier_recovery == "auto" else ""
        raise UserError(f"--carrier_recovery={given}: the run was trained with --carrier_recovery="
                        f"{trained.carrier_recovery}{chose}, and every stage must see the data alike; drop the flag")


def _normal(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def data_shape(dataset) -> dict:
    """What config.json records of the data a run was trained on."""
    if hasattr(dataset, "spatial_shape"):
        return {"channels": dataset.channels, "spatial_shape": list(dataset.spatial_shape)}
    return {"channels": 2, "signal_length": dataset.signal_length}


def data_section(train_set, training_file: str | Path, validation_file: str | Path,
                 options: DataOptions = DataOptions()) -> dict:
    """The ``data`` section of config.json: the data's shape, files and how they were read (image options,
    carrier recovery)."""
    files = {"training_h5file": str(training_file), "validation_h5file": str(validation_file)}
    return {**data_shape(train_set), **files, **options.section()}
