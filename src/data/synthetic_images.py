"""Embedded image and volume data sets for the 2D/3D path: nothing is downloaded.

Both writers use the split-file layout of the research code: image files plus
``<out>/data_splits/<Name>_{train,val,test}.csv``, each CSV ONE line of comma-separated paths
(relative to the CSV's folder, so the tree can be moved). Every set gets all three splits, so any
of them can be the in-distribution set. Same seed, same arguments: byte-identical files.

Digits (:func:`write_digits`): scikit-learn's bundled 8x8 handwritten digits (values 0-16),
upsampled bilinearly to ``image_size`` x ``image_size`` grayscale PNGs, under ``<out>/digits/``.

* ``Digits04``: digits 0-4, the in-distribution set.
* vertically flipped out set: no files of its own; read ``Digits04_test.csv`` with
  ``ImageDataset(..., flip="v")`` (the research code's ``--add_vflip``): same images, upside down.
* ``Digits59``: digits 5-9, another family of shapes with the same intensity statistics.
* ``Digits04Inverted``: exactly the images of ``Digits04`` (same splits), intensities inverted
  (255 - x, white background): the same shapes under another intensity distribution.

Volumes (:func:`write_volumes`): ``volume_size``^3 float32 NIfTI files (``.nii.gz``) under
``<out>/volumes/``, in the Medical Decathlon naming. Objects have random intensity levels over a
uniform noise floor, as drawn by MONAI's ``create_test_image_3d``.

* ``Task01_Spheres``: several small spheres, the in-distribution "organ".
* ``Task02_Boxes``: as many axis-aligned boxes (cubes and elongated cuboids) of similar size:
  another organ with a different shape.
* ``Task03_BigSphere``: one large sphere: another organ of a different size and count.
* ``Task04_NoisySpheres``: the spheres of Task01's generator with 6x the noise floor and a gamma
  of 2: the same anatomy under another intensity distribution (another scanner or sequence).

Example::

    python -m src.data.synthetic_images --out demo_out/images
"""
from __future__ import annotations

import csv
import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data.synthetic import create_test_image_3d
from PIL import Image
from sklearn.datasets import load_digits

from src.cli import Parser, comma_list, positive_int, run_main, setup_logging
from src.errors import UserError
from src.io import atomic_path

log = logging.getLogger("rfood")

SPLITS = ("train", "val", "test")
SPLITS_SUBDIR = "data_splits"
DIGIT_SETS = {"Digits04": (0, 1, 2, 3, 4), "Digits59": (5, 6, 7, 8, 9)}
INVERTED_SET = "Digits04Inverted"
VOLUME_SETS = ("Task01_Spheres", "Task02_Boxes", "Task03_BigSphere", "Task04_NoisySpheres")
MIN_VOLUME_SIZE = 16
NUM_LEVELS = 5  # intensity levels of the objects (MONAI's num_seg_classes)
BASE_NOISE = 0.05  # noise floor of the spheres and boxes, as a fraction of the top level


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def write_split_csv(path: Path, images: list[Path]) -> Path:
    """One line of comma-separated image paths, relative to the CSV's folder (the research layout)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        csv.writer(handle).writerow([os.path.relpath(image, path.parent) for image in images])
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """A grayscale uint8 PNG."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    """A float32 ``.nii.gz`` with an identity affine; gzip time stamp 0 so the bytes depend on the data only."""
    image = nib.Nifti1Image(volume.astype(np.float32), np.eye(4))
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(image.to_bytes(), mtime=0))
    return path


def split_sizes(count: int) -> dict[str, int]:
    """70 / 10 / 20 % of ``count`` for train / val / test (val and test rounded down, at least 1)."""
    val, test = max(1, count // 10), max(1, count // 5)
    return {"train": count - val - test, "val": val, "test": test}


def write_splits(out_dir: Path, name: str, files: dict[str, list[Path]]) -> dict[str, Path]:
    """``<out>/data_splits/<name>_<split>.csv`` for each split; returns split -> CSV path."""
    return {split: write_split_csv(out_dir / SPLITS_SUBDIR / f"{name}_{split}.csv", paths)
            for split, paths in files.items()}


# --------------------------------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------------------------------

def upsample_digit(image: np.ndarray, image_size: int) -> np.ndarray:
    """An 8x8 digit (0-16) as uint8 ``image_size`` x ``image_size`` pixels, bilinear."""
    pixels = Image.fromarray(np.round(image * 255.0 / 16.0).astype(np.uint8))
    return np.asarray(pixels.resize((image_size, image_size), Image.BILINEAR))


def pick_digits(labels: np.ndarray, classes: tuple[int, ...], n_per_set: int | None,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Shuffled indices of the images of ``classes``, cut into train / val / test."""
    chosen = rng.permutation(np.flatnonzero(np.isin(labels, classes)))[:n_per_set]
    sizes = split_sizes(len(chosen))
    bounds = np.cumsum([0] + [sizes[split] for split in SPLITS])
    return {split: chosen[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)}


def write_digit_set(out_dir: Path, name: str, pixels: dict[str, list[np.ndarray]]) -> dict[str, Path]:
    """PNGs ``<out>/digits/<name>/<name>_<split>_<i>.png`` and their split files."""
    files = {split: [write_png(out_dir / "digits" / name / f"{name}_{split}_{i:05d}.png", image)
                     for i, image in enumerate(images)]
             for split, images in pixels.items()}
    return write_splits(out_dir, name, files)


def write_digits(out_dir: str | os.PathLike, image_size: int = 32, n_per_set: int | None = None,
                 seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write the digit sets (see the module docstring); returns set name -> split -> CSV path.

    Args:
        out_dir: root of the image tree.
        image_size: side of the square PNGs (at least 8).
        n_per_set: images per set before the 70/10/20 split (None: all ~900 of its classes;
            at least 3).
        seed: the same seed picks and splits the same images.
    """
    if image_size < 8:
        raise UserError(f"--image_size must be at least 8 (the digits are 8x8), got {image_size}")
    if n_per_set is not None and n_per_set < 3:
        raise UserError(f"--n_per_set must be at least 3 (one image per split), got {n_per_set}")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    written = {}
    for name, classes in DIGIT_SETS.items():
        indices = pick_digits(digits.target, classes, n_per_set, rng)
        pixels = {split: [upsample_digit(digits.images[i], image_size) for i in chosen]
                  for split, chosen in indices.items()}
        written[name] = write_digit_set(Path(out_dir), name, pixels)
        if name == "Digits04":
            inverted = {split: [255 - image for image in images] for split, images in pixels.items()}
            written[INVERTED_SET] = write_digit_set(Path(out_dir), INVERTED_SET, inverted)
    for name, csvs in written.items():
        log.info("wrote %s: %s", name, ", ".join(f"{split} {csvs[split]}" for split in SPLITS))
    return written


# --------------------------------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------------------------------

def sphere_radii(size: int) -> tuple[int, int]:
    """(min, max) radius of the in-distribution spheres: small next to the volume."""
    smallest = max(2, size // 10)
    return smallest, max(smallest + 1, size // 5)


def spheres(rng: np.random.RandomState, size: int) -> np.ndarray:
    """Six small spheres (Task01)."""
    rad_min, rad_max = sphere_radii(size)
    return create_test_image_3d(size, size, size, num_objs=6, rad_min=rad_min, rad_max=rad_max,
                                noise_max=BASE_NOISE, num_seg_classes=NUM_LEVELS, random_state=rng)[0]


def boxes(rng: np.random.RandomState, size: int) -> np.ndarray:
    """Six axis-aligned boxes, each half-side drawn like the spheres' radii (Task02).

    Same recipe as ``create_test_image_3d``: each object gets a level in 1..5, a uniform noise floor
    is maxed in, and the result is scaled to [0, 1].
    """
    rad_min, rad_max = sphere_radii(size)
    volume = np.zeros((size, size, size))
    for _ in range(6):
        centre = rng.randint(rad_max, size - rad_max, size=3)
        half = rng.randint(rad_min, rad_max + 1, size=3)
        region = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half))
        volume[region] = np.ceil(rng.random_sample() * NUM_LEVELS)
    volume = np.maximum(volume, rng.uniform(0, NUM_LEVELS * BASE_NOISE, size=volume.shape))
    return (volume - volume.min()) / (volume.max() - volume.min())


def big_sphere(rng: np.random.RandomState, size: int) -> np.ndarray:
    """One sphere of radius between a quarter and 0.4 of the side (Task03)."""
    return create_test_image_3d(size, size, size, num_objs=1, rad_min=size // 4, rad_max=(2 * size) // 5,
                                noise_max=BASE_NOISE, num_seg_classes=NUM_LEVELS, random_state=rng)[0]


def noisy_spheres(rng: np.random.RandomState, size: int) -> np.ndarray:
    """Task01's spheres with a 6x higher noise floor, then gamma 2 (Task04)."""
    rad_min, rad_max = sphere_radii(size)
    volume = create_test_image_3d(size, size, size, num_objs=6, rad_min=rad_min, rad_max=rad_max,
                                  noise_max=6 * BASE_NOISE, num_seg_classes=NUM_LEVELS, random_state=rng)[0]
    return volume ** 2


VOLUME_MAKERS: dict[str, Callable[[np.random.RandomState, int], np.ndarray]] = dict(
    zip(VOLUME_SETS, (spheres, boxes, big_sphere, noisy_spheres)))


def volume_rng(seed: int, name: str) -> np.random.RandomState:
    """A generator seeded from (seed, the set's position), as MONAI's generator needs a RandomState."""
    state = np.random.SeedSequence([seed, VOLUME_SETS.index(name)]).generate_state(1)[0]
    return np.random.RandomState(state)


def write_volumes(out_dir: str | os.PathLike, volume_size: int = 32, n_train: int = 16, n_val: int = 4,
                  n_test: int = 8, seed: int = 0) -> dict[str, dict[str, Path]]:
    """Write the volume sets (see the module docstring); returns set name -> split -> CSV path.

    Args:
        out_dir: root of the image tree.
        volume_size: side of the cubic volumes (at least 16).
        n_train, n_val, n_test: volumes per split, in every set.
        seed: the same seed gives identical files; each set's volumes depend only on
            (seed, the set's position in VOLUME_SETS).
    """
    if volume_size < MIN_VOLUME_SIZE:
        raise UserError(f"--volume_size must be at least {MIN_VOLUME_SIZE}, got {volume_size}")
    counts = dict(zip(SPLITS, (n_train, n_val, n_test)))
    if min(counts.values()) < 1:
        raise UserError(f"--n_train, --n_val and --n_test must be positive, got {n_train}, {n_val}, {n_test}")
    written = {}
    for name, make in VOLUME_MAKERS.items():
        rng = volume_rng(seed, name)
        files = {split: [write_nifti(Path(out_dir) / "volumes" / name / f"{name}_{split}_{i:03d}.nii.gz",
                                     make(rng, volume_size))
                         for i in range(count)]
                 for split, count in counts.items()}
        written[name] = write_splits(Path(out_dir), name, files)
        log.info("wrote %s: %d volumes of %d^3", name, sum(counts.values()), volume_size)
    return written


# --------------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------------

def build_parser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--out", required=True, help="root folder of the image tree")
    parser.add_argument("--kinds", type=comma_list, default=["digits", "volumes"],
                        help="comma-separated: digits, volumes (default: both)")
    parser.add_argument("--image_size", type=positive_int, default=32, help="digit image side (default: %(default)s)")
    parser.add_argument("--n_per_set", type=positive_int, default=None,
                        help="digit images per set before splitting (default: all of its classes)")
    parser.add_argument("--volume_size", type=positive_int, default=32, help="volume side (default: %(default)s)")
    parser.add_argument("--n_train", type=positive_int, default=16, help="volumes per set (default: %(default)s)")
    parser.add_argument("--n_val", type=positive_int, default=4, help="(default: %(default)s)")
    parser.add_argument("--n_test", type=positive_int, default=8, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def main() -> None:
    setup_logging()
    args = build_parser().parse_args()
    unknown = sorted(set(args.kinds) - {"digits", "volumes"})
    if unknown or not args.kinds:
        raise UserError(f"unknown --kinds {unknown or args.kinds}; choose from digits,volumes")
    if "digits" in args.kinds:
        write_digits(args.out, args.image_size, args.n_per_set, args.seed)
    if "volumes" in args.kinds:
        write_volumes(args.out, args.volume_size, args.n_train, args.n_val, args.n_test, args.seed)


if __name__ == "__main__":
    run_main(main)
