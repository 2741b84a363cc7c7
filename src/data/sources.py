"""Open a data set whatever it holds: processed RF signals (h5, 1D) or images and volumes (CSV split files).

Every set is a Dataset of ``{"signal": float32 [C, *spatial], "index": i}`` items with ``path``,
``name``, ``ids`` and ``channels``; signals also ``signal_length``, images ``spatial_shape``. Which
kind is decided by ``--spatial_dimension``: 1 reads processed h5 files, 2 and 3 read CSV split
files in the research code's layout (:mod:`src.data.images`). As in the research code, an out-set
entry ending in ``_vflip`` or ``_hflip`` (``.../Digits04_test.csv_vflip``) is that CSV's images
flipped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from src.data.datasets import SignalDataset, display_name
from src.data.images import ImageDataset, split_name
from src.errors import UserError

FLIP_SUFFIXES = {"_vflip": "v", "_hflip": "h"}


@dataclass(frozen=True)
class DataOptions:
    """How files become model inputs (the data flags of every stage)."""

    spatial_dims: int = 1
    is_grayscale: bool = False
    image_roi: tuple[int, ...] | None = None
    image_size: int | None = None

    @classmethod
    def from_args(cls, args) -> DataOptions:
        roi = getattr(args, "image_roi", None)
        return cls(getattr(args, "spatial_dimension", 1), bool(getattr(args, "is_grayscale", False)),
                   None if roi is None else tuple(roi), getattr(args, "image_size", None))

    @classmethod
    def from_config(cls, data: dict) -> DataOptions:
        roi = data.get("image_roi")
        return cls(data.get("spatial_dims", 1), bool(data.get("is_grayscale", False)),
                   None if roi is None else tuple(roi), data.get("image_size"))

    def section(self) -> dict:
        """These options as plain values for config.json's ``data`` section."""
        values = asdict(self)
        values["image_roi"] = None if self.image_roi is None else list(self.image_roi)
        return values


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
        return SignalDataset(path, first_n, cache)
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


def options_for_run(data: dict, args) -> DataOptions:
    """The data options a run was trained with; flags given to a later stage must agree with them."""
    trained = DataOptions.from_config(data)
    given = {"spatial_dimension": ("spatial_dims", getattr(args, "spatial_dimension", None)),
             "is_grayscale": ("is_grayscale", getattr(args, "is_grayscale", None)),
             "image_roi": ("image_roi", getattr(args, "image_roi", None)),
             "image_size": ("image_size", getattr(args, "image_size", None))}
    clashes = [f"--{flag}={value}" + f" (trained with {getattr(trained, field)})"
               for flag, (field, value) in given.items()
               if value is not None and _normal(value) != _normal(getattr(trained, field))]
    if clashes:
        raise UserError(f"{', '.join(clashes)}: the run was trained on other data; drop these flags or use a run "
                        "trained with them")
    return trained


def _normal(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def data_shape(dataset) -> dict:
    """What config.json records of the data a run was trained on."""
    if hasattr(dataset, "spatial_shape"):
        return {"channels": dataset.channels, "spatial_shape": list(dataset.spatial_shape)}
    return {"channels": 2, "signal_length": dataset.signal_length}
