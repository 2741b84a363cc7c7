"""2D images and 3D volumes listed in CSV split files, as PyTorch datasets.

Split files follow the layout ``data_splits/<Name>_{train,val,test}.csv``: one file per split of
one data set, naming the image files. Two formats are read (see :func:`read_split_csv`):

* the research layout: the whole file is ONE line of comma-separated paths (what
  ``csv.writer(f).writerow(paths)`` writes);
* a friendlier layout: a header row (``image``, ``path``, ``filename`` or ``file``), then one path
  per row; other columns are ignored.

Each item is loaded with MONAI (``.npy``, PNG/JPEG, NIfTI and whatever else ``LoadImage`` reads),
optionally reduced to its first channel, centre-cropped, resized, scaled to [0, 1] and flipped,
and returned as ``{"signal": float32 [C, *spatial], "index": i}``: the same interface as
:class:`src.data.datasets.SignalDataset`, so the pipeline treats signals and images alike.
"""
from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.transforms import CenterSpatialCrop, Flip, LoadImage, Resize, ScaleIntensity
from torch.utils.data import Dataset

from src.cli import flag, int_list, positive_int
from src.errors import UserError

HEADER_NAMES = ("image", "path", "filename", "file")
SPLIT_SUFFIXES = ("_train", "_val", "_test")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
FLIP_AXES = {"v": 0, "h": 1}  # spatial axis reversed by each flip (2D: 0 = rows, 1 = columns)


# --------------------------------------------------------------------------------------------------
# Split files
# --------------------------------------------------------------------------------------------------

def split_name(csv_path: str | Path) -> str:
    """A split file's data set name: its stem before ``_train``/``_val``/``_test``.

    ``Task02_Heart_test.csv`` -> ``Task02_Heart``; a stem without such a suffix is returned whole.
    """
    stem = Path(csv_path).name.removesuffix(".csv")
    for suffix in SPLIT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _read_rows(path: Path) -> list[list[str]]:
    """The CSV's non-empty rows, cells stripped, empty cells dropped."""
    if not path.is_file():
        raise UserError(f"split file not found: {path}; check the CSV path (data_splits/<Name>_<split>.csv)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [[cell.strip() for cell in row if cell.strip()] for row in csv.reader(handle)]
    except (OSError, ValueError, csv.Error) as err:  # ValueError: not UTF-8 text
        raise UserError(f"cannot read split file {path} as UTF-8 CSV text ({err}); write one image path per row, "
                        "or one line of comma-separated paths") from err
    return [row for row in rows if row]


def _header_column(row: list[str]) -> int | None:
    """Index of the first cell naming a path column (image/path/filename/file), or None."""
    for index, cell in enumerate(row):
        if cell.lower() in HEADER_NAMES:
            return index
    return None


def _listed_paths(path: Path, rows: list[list[str]]) -> list[str]:
    """The path strings a split file lists, by the rules of :func:`read_split_csv`."""
    column = _header_column(rows[0])
    if column is not None:
        return [row[column] for row in rows[1:] if len(row) > column]
    if len(rows) == 1:
        return rows[0]
    if all(len(row) == 1 for row in rows):
        return [row[0] for row in rows]
    raise UserError(f"{path}: cannot tell which cells are image paths; write either one line of comma-separated "
                    f"paths, or a header row named one of {'/'.join(HEADER_NAMES)} then one path per row")


def _resolve(entry: str, folder: Path) -> Path:
    candidate = Path(entry).expanduser()
    return candidate if candidate.is_absolute() else (folder / candidate).resolve()


def _check_exist(path: Path, images: list[Path]) -> None:
    missing = [image for image in images if not image.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{path} lists an image that does not exist: {missing[0]}{more}; "
                        "fix the paths in the split file (relative paths start from the CSV's folder)")


def read_split_csv(path: str | Path) -> list[Path]:
    """The image files listed in a split file, in file order.

    Format rules, tried in this order:

    1. Header layout: if any cell of the first row is ``image``, ``path``, ``filename`` or ``file``
       (any case), that row is a header, and every later row gives one path, from that column.
    2. Research layout: if the file has a single non-empty row, every cell of it is a path.
    3. Plain list: if every row has exactly one cell, each row is one path (no header).

    Anything else raises :class:`UserError`. Relative paths are resolved against the CSV's own
    folder; absolute paths are kept. A missing CSV, a CSV listing no paths, or a listed image that
    does not exist raises :class:`UserError` naming it.
    """
    path = Path(path)
    rows = _read_rows(path)
    entries = _listed_paths(path, rows) if rows else []
    if not entries:
        raise UserError(f"split file {path} lists no images; write at least one image path into it")
    try:
        images = [_resolve(entry, path.parent) for entry in entries]
        _check_exist(path, images)
    except (OSError, ValueError, RuntimeError) as err:  # a path the OS refuses (too long, NUL, ~unknown_user)
        raise UserError(f"{path} lists a path that cannot be looked up ({err}); fix the paths in the split "
                        "file") from err
    return images


# --------------------------------------------------------------------------------------------------
# Loading one image
# --------------------------------------------------------------------------------------------------

def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _loader_for(suffix: str) -> LoadImage:
    """A MONAI loader giving channel-first images, spatial axes in the file's array order.

    PNG/JPEG are read with ``reverse_indexing=False`` so that 2D images come out as [C, rows,
    columns], the same order as ``.npy`` arrays (MONAI's default would give [C, columns, rows]).
    """
    if suffix in PIL_SUFFIXES:
        return LoadImage(reader="PILReader", image_only=True, ensure_channel_first=True, reverse_indexing=False)
    if suffix == ".npy":
        return LoadImage(reader="NumpyReader", image_only=True, ensure_channel_first=True)
    if suffix in NIFTI_SUFFIXES:
        return LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)
    return LoadImage(image_only=True, ensure_channel_first=True)


def _channel_first(image: torch.Tensor, suffix: str, spatial_dims: int) -> torch.Tensor:
    """Undo the extra channel axis MONAI puts in front of a channel-first ``.npy`` array.

    A ``.npy`` array with ``spatial_dims`` axes is one channel; with ``spatial_dims + 1`` axes it is
    stored channel-first [C, *spatial] (as the computer-vision data scripts save RGB images).
    MONAI cannot tell the two apart and always prepends a channel axis.
    """
    if suffix == ".npy" and image.ndim == spatial_dims + 2 and image.shape[0] == 1:
        return image[0]
    return image


def _plain(image) -> torch.Tensor:
    """A plain tensor (MONAI returns MetaTensors, whose metadata the pipeline does not need)."""
    return image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)


class ImageLoader:
    """Reads one file and applies the fixed pipeline: channels, crop, resize, [0, 1], flip.

    Picklable, so DataLoader worker processes can each hold a copy.
    """

    def __init__(self, spatial_dims: int, is_grayscale: bool, image_roi: Sequence[int] | None,
                 image_size: int | None, flip: str | None) -> None:
        self.spatial_dims, self.is_grayscale = spatial_dims, is_grayscale
        self.crop = CenterSpatialCrop(list(image_roi)) if image_roi is not None else None
        self.resize = Resize([image_size] * spatial_dims) if image_size is not None else None
        self.scale = ScaleIntensity(minv=0.0, maxv=1.0)
        self.flip = Flip(spatial_axis=FLIP_AXES[flip]) if flip is not None else None
        self._loaders: dict[str, LoadImage] = {}

    def read(self, path: Path) -> torch.Tensor:
        """The file as float32 [C, *spatial], before crop/resize/scale."""
        suffix = _suffix(path)
        if suffix not in self._loaders:
            self._loaders[suffix] = _loader_for(suffix)
        try:
            image = self._loaders[suffix](str(path))
        except (OSError, RuntimeError, ValueError, TypeError) as err:
            raise UserError(f"cannot read image {path} ({type(err).__name__}: {str(err).splitlines()[0]}); "
                            "check that it is a valid .npy, PNG/JPEG or NIfTI file") from err
        image = _channel_first(_plain(image), suffix, self.spatial_dims)
        self._check_dims(path, image)
        return image.float()

    def _check_dims(self, path: Path, image: torch.Tensor) -> None:
        found = image.ndim - 1
        if found != self.spatial_dims:
            raise UserError(f"{path}: image has {found} spatial dimensions (shape {tuple(image.shape)} read as "
                            f"[C, *spatial]) but --spatial_dimension is {self.spatial_dims}; set it to match the data")

    def __call__(self, path: Path) -> torch.Tensor:
        image = self.read(path)
        if self.is_grayscale:
            image = image[:1]  # keeps the first modality of multi-modal volumes (e.g. BraTS)
        for transform in (self.crop, self.resize, self.scale, self.flip):
            if transform is not None:
                image = transform(image)
        image = _plain(image).float().contiguous()
        if not torch.isfinite(image).all():
            raise UserError(f"{path}: image holds NaN or Inf values; clean or drop it from the split file")
        return image


# --------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------

def _check_options(spatial_dims: int, image_roi, image_size, first_n, flip) -> None:
    if spatial_dims not in (2, 3):
        raise UserError(f"--spatial_dimension must be 2 (images) or 3 (volumes), got {spatial_dims}")
    if image_roi is not None:
        if len(image_roi) != spatial_dims:
            raise UserError(f"--image_roi needs {spatial_dims} sizes (one per spatial dimension), "
                            f"got {list(image_roi)}")
        if any(size == 0 or size < -1 for size in image_roi):
            raise UserError(f"--image_roi sizes must be positive, or -1 to keep a dimension; got {list(image_roi)}")
    if image_size is not None and image_size <= 0:
        raise UserError(f"--image_size must be positive (or left unset to keep the size), got {image_size}")
    if first_n is not None and first_n <= 0:
        raise UserError(f"--first_n must be positive, got {first_n}")
    if flip not in (None, *FLIP_AXES):
        raise UserError(f"flip must be None, 'v' or 'h', got {flip!r}")


class ImageDataset(Dataset):
    """The images of one split file, each as ``{"signal": float32 [C, *spatial], "index": i}``.

    Args:
        csv_path: split file, read by :func:`read_split_csv`.
        spatial_dims: 2 for images, 3 for volumes; every file must have that many spatial axes.
        is_grayscale: keep only the first channel (the first modality of multi-modal volumes).
        image_roi: centre crop, one size per spatial dimension; -1 keeps that dimension whole.
        image_size: resize every spatial dimension to this size (None: keep the size).
        first_n: keep only the first ``first_n`` images (None: all).
        cache: load every image into RAM once (True) or load each one when asked (False, for data
            larger than RAM).
        flip: None, ``"v"`` (reverse spatial axis 0: upside down for 2D images [C, rows, columns])
            or ``"h"`` (reverse spatial axis 1: mirrored left-right); the flipped out sets of the
            research code (``--add_vflip`` / ``--add_hflip``). A flipped set gets ``_vflip`` or
            ``_hflip`` appended to its name and ids.

    Attributes:
        path: the split file; name: its display name (:func:`split_name`, plus the flip suffix);
        ids: ``<csv stem>[_vflip|_hflip]:<index>`` per image; spatial_shape, channels: of every item.
        Pixel values are scaled to [0, 1] per image (min to 0, max to 1) after crop and resize.
    """

    def __init__(self, csv_path: str | Path, spatial_dims: int, is_grayscale: bool = False,
                 image_roi: Sequence[int] | None = None, image_size: int | None = None, first_n: int | None = None,
                 cache: bool = True, flip: str | None = None) -> None:
        _check_options(spatial_dims, image_roi, image_size, first_n, flip)
        self.path = Path(csv_path)
        self.images = read_split_csv(self.path)[:first_n]
        self.loader = ImageLoader(spatial_dims, is_grayscale, image_roi, image_size, flip)
        flip_suffix = f"_{flip}flip" if flip else ""
        self.name = split_name(self.path) + flip_suffix
        self.ids = [f"{self.path.stem}{flip_suffix}:{index}" for index in range(len(self.images))]
        self._cache = [self.loader(image) for image in self.images] if cache else None
        first = self._cache[0] if cache else self.loader(self.images[0])
        self.channels, self.spatial_shape = int(first.shape[0]), tuple(int(s) for s in first.shape[1:])
        if cache:
            for index, image in enumerate(self._cache):
                self._check_shape(index, image)

    def __len__(self) -> int:
        return len(self.images)

    def _check_shape(self, index: int, image: torch.Tensor) -> None:
        if tuple(image.shape) != (self.channels, *self.spatial_shape):
            raise UserError(f"{self.images[index]} has shape {tuple(image.shape)} but the first image of {self.path} "
                            f"has {(self.channels, *self.spatial_shape)}; set --image_size (and --image_roi) "
                            "so that all images match")

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None:
            return {"signal": self._cache[index], "index": index}
        image = self.loader(self.images[index])
        self._check_shape(index, image)
        return {"signal": image, "index": index}


# --------------------------------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------------------------------

def add_image_args(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """How images are read. With ``from_config`` (later stages) None means "as the run was trained"."""
    suffix = " (default: as in the run's config.json)" if from_config else " (default: %(default)s)"
    parser.add_argument("--is_grayscale", type=flag, default=None if from_config else False,
                        help="images: keep the first channel only (e.g. the first MRI modality)" + suffix)
    parser.add_argument("--image_roi", type=int_list, default=None,
                        help="images: central crop, one size per spatial dimension, -1 keeps that dimension, "
                             "e.g. [160,160,128] (default: none)")
    parser.add_argument("--image_size", type=positive_int, default=None,
                        help="images: resize every spatial dimension to this size (default: none)")
