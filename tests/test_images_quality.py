"""Numbers the 2D/3D path must reach: AUROCs of tiny trained runs, and the ssim error against hand-computed values.

The runs go through the real command lines (train_ddpm.py, reconstruct.py, ood_detection.py), run inside this
process (:func:`conftest.run_inline`, the same ``__main__`` code without a new interpreter) to keep the suite fast.
Reconstruction is one-step from 3 start points (t = 10, 340, 670), the cheapest mode; every run is in fp32 so that
``--precision=auto``'s timing probe cannot make the numbers depend on the machine's load.

AUROC bounds (in = 0, out = 1), with n_in and n_out the images per set:

* same distribution: under exchangeable in and out sets the AUROC (the Mann-Whitney statistic / n_in n_out)
  has mean 0.5 and standard deviation sqrt((n_in + n_out + 1) / (12 n_in n_out)); the bound is 3.5 of those,
  a chance of 5e-4 to fail a correct pipeline. (Image i of either set gets the same noise, common random
  numbers; only n of the n^2 pairs share noise, so the null spread stays that of independent sets.)
* clearly different sets: observed 0.98-1.00 over training seeds 0-2. Near 1 the AUROC's standard error
  (Hanley & McNeil 1982) is below 0.01 for 90 vs 90 images and below 0.02 for 16 vs 16, so a bound of 0.9
  leaves several standard errors for seed and platform differences, while a score of the wrong sign or swapped
  sets land near 0. The inverted sets also need a model that learned: the same command lines with
  --learning_rate=0 (an untrained network) give 0.49 (2D) and 0.72 (3D). Boxes do not: an untrained network's
  errors already depend on the volume's structure (0.97), so that case checks the 3D scoring, not the training.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_inline
from src.data.images import read_split_csv
from src.data.synthetic_images import VOLUME_MAKERS, volume_rng, write_digits, write_nifti, write_split_csv
from src.ood.distances import structural_error

FP32 = "--precision=fp32"
TINY_UNET = ["--model_type=small", "--channels=8,16", "--attention_levels=0,0", "--ema_decay=0", "--warmup_steps=0",
             "--learning_rate=3e-3", "--figures=0", FP32]
ONESTEP = ["--reconstruction_mode=onestep", "--inference_skip_factor=33", FP32]  # t = 10, 340, 670
HIGH_AUROC = 0.9


pytestmark = pytest.mark.usefixtures("one_thread")


def run_here(*args: str) -> str:
    """A command line run in this process; it must succeed. Returns what it printed."""
    result = run_inline(*args)
    assert result.returncode == 0, f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def null_bound(n_in: int, n_out: int, sds: float = 3.5) -> float:
    """Largest |AUROC - 0.5| allowed for exchangeable sets: ``sds`` null standard deviations."""
    return sds * math.sqrt((n_in + n_out + 1) / (12 * n_in * n_out))


def aurocs(runs, model_name: str) -> pd.Series:
    """AUROC per out set as ood_detection.py writes it with the image default score (pooled on mse,ssim)."""
    run_here("ood_detection.py", f"--output_dir={runs}", f"--model_name={model_name}", "--n_bootstrap=0",
             "--report=0")
    return pd.read_csv(runs / model_name / "ood" / "metrics_mse-ssim_pooled.csv", index_col="dataset")["AUROC"]


def set_size(runs, model_name: str, name: str) -> int:
    return pd.read_csv(runs / model_name / "ood" / f"results_{name}.csv")["filename"].nunique()


# --------------------------------------------------------------------------------------------------
# 2D: digits 0-4 in; the same digits (held out) and inverted digits out
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny UNet trained 8 epochs (80 steps) on 320 digits 0-4 (16x16); in = 90 held-out digits 0-4, out = 90 other
    held-out digits 0-4 (Same) and those 90 inverted (Inverted: white background)."""
    root = tmp_path_factory.mktemp("digits_quality")
    splits = write_digits(root, image_size=16, seed=0)  # all ~900 digits 0-4: 631 train, 90 val, 180 test
    test, inverted = (read_split_csv(splits[name]["test"]) for name in ("Digits04", "Digits04Inverted"))
    folder = root / "data_splits"
    inside = write_split_csv(folder / "Digits04In_test.csv", test[:90])
    same = write_split_csv(folder / "Same_test.csv", test[90:180])
    inverted_out = write_split_csv(folder / "Inverted_test.csv", inverted[90:180])
    runs = root / "runs"
    run_here("train_ddpm.py", f"--output_dir={runs}", "--model_name=digits", "--spatial_dimension=2",
             f"--training_ids={splits['Digits04']['train']}", f"--validation_ids={splits['Digits04']['val']}",
             "--first_n=320", "--n_epochs=8", "--batch_size=32", *TINY_UNET)
    run_here("reconstruct.py", f"--output_dir={runs}", "--model_name=digits",
             f"--validation_ids={splits['Digits04']['val']}", f"--in_ids={inside}", f"--out_ids={same},{inverted_out}",
             "--batch_size=90", *ONESTEP)
    return runs, aurocs(runs, "digits")


def test_2d_inverted_digits_get_a_high_auroc(digits_run):
    runs, table = digits_run
    assert set_size(runs, "digits", "in") == set_size(runs, "digits", "Inverted") == 90
    assert table["Inverted"] >= HIGH_AUROC, table


def test_2d_held_out_digits_of_the_same_classes_get_an_auroc_near_one_half(digits_run):
    runs, table = digits_run
    n_in, n_out = set_size(runs, "digits", "in"), set_size(runs, "digits", "Same")
    assert n_in == n_out == 90
    bound = null_bound(n_in, n_out)  # 3.5 x 0.0432 = 0.151
    assert abs(table["Same"] - 0.5) <= bound, (table, bound)


# --------------------------------------------------------------------------------------------------
# 3D: small spheres in; boxes (another shape) and inverted spheres (another intensity distribution) out
# --------------------------------------------------------------------------------------------------

def write_volume_set(root, name: str, counts: dict[str, int], invert: bool = False, seed: int = 0) -> dict:
    """``counts`` volumes (16^3) per split of one of the embedded volume sets (``invert``: 1 - each volume, under
    the name ``<name>Inverted``), and their split files."""
    rng, make = volume_rng(seed, name), VOLUME_MAKERS[name]
    name += "Inverted" if invert else ""
    files = {}
    for split, count in counts.items():
        volumes = [write_nifti(root / "volumes" / name / f"{split}_{i:03d}.nii.gz",
                               1 - make(rng, 16) if invert else make(rng, 16)) for i in range(count)]
        files[split] = write_split_csv(root / "data_splits" / f"{name}_{split}.csv", volumes)
    return files


@pytest.fixture(scope="module")
def spheres_run(tmp_path_factory):
    """A tiny 3D UNet trained 4 epochs on 24 volumes of small spheres; in = 16 held-out sphere volumes, out =
    16 volumes of boxes (another shape) and 16 of other spheres inverted (another intensity distribution)."""
    root = tmp_path_factory.mktemp("spheres_quality")
    spheres = write_volume_set(root, "Task01_Spheres", {"train": 24, "val": 16, "test": 16})
    outs = [write_volume_set(root, "Task02_Boxes", {"test": 16})["test"],
            write_volume_set(root, "Task01_Spheres", {"test": 16}, invert=True, seed=1)["test"]]
    runs = root / "runs"
    run_here("train_ddpm.py", f"--output_dir={runs}", "--model_name=spheres", "--spatial_dimension=3",
             f"--training_ids={spheres['train']}", f"--validation_ids={spheres['val']}", "--n_epochs=4",
             "--batch_size=8", *TINY_UNET)
    run_here("reconstruct.py", f"--output_dir={runs}", "--model_name=spheres", f"--validation_ids={spheres['val']}",
             f"--in_ids={spheres['test']}", f"--out_ids={','.join(str(path) for path in outs)}", "--batch_size=16",
             *ONESTEP)
    return runs, aurocs(runs, "spheres")


@pytest.mark.parametrize("out_set", ["Task02_Boxes", "Task01_SpheresInverted"])
def test_3d_boxes_and_inverted_spheres_get_a_high_auroc(spheres_run, out_set):
    runs, table = spheres_run
    assert set_size(runs, "spheres", "in") == set_size(runs, "spheres", out_set) == 16
    assert table[out_set] >= HIGH_AUROC, table


# --------------------------------------------------------------------------------------------------
# The ssim error against the SSIM formula, worked out by hand
# --------------------------------------------------------------------------------------------------
# SSIM(x, y) = (2 mx my + c1)(2 sxy + c2) / ((mx^2 + my^2 + c1)(sx^2 + sy^2 + c2)), c1 = (0.01 L)^2,
# c2 = (0.03 L)^2 with data range L = 1 (Wang et al. 2004), the moments weighted by a Gaussian window of
# sigma 1.5, averaged over every position where the window fits; the ssim error is 1 - SSIM, averaged over
# channels. On a 3x3 image the window is 3 wide and fits once: the weights are g_i g_j with
# g = (a, 1, a) / (1 + 2a), a = exp(-1 / (2 * 1.5^2)); a one-pixel image x (1 at one pixel of weight w,
# 0 elsewhere) has mean w, E[x^2] = w, variance w (1 - w).

C1, C2 = 0.01 ** 2, 0.03 ** 2
A = math.exp(-1 / (2 * 1.5 ** 2))
CENTRE_2D = 1 / (1 + 2 * A) ** 2  # weight of the centre pixel of a 3x3 window
EDGE_2D = A / (1 + 2 * A) ** 2  # weight of an edge-centre pixel
CENTRE_3D = 1 / (1 + 2 * A) ** 3


def ssim_formula(mx: float, my: float, vx: float, vy: float, cxy: float) -> float:
    return (2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))


def delta_against_affine(w: float, offset: float, gain: float) -> float:
    """SSIM of a one-pixel image x (weight w) and y = offset + gain * x: my = offset + gain w,
    var y = gain^2 var x, cov = gain var x."""
    variance = w * (1 - w)
    return ssim_formula(w, offset + gain * w, variance, gain ** 2 * variance, gain * variance)


def one_pixel(*shape: int, at: tuple[int, ...]) -> torch.Tensor:
    image = torch.zeros(shape)
    image[at] = 1.0
    return image


def test_ssim_error_of_constant_images_is_the_luminance_term():
    x0, reconstruction = torch.full((1, 1, 9, 9), 0.5), torch.full((1, 1, 1, 9, 9), 0.25)
    expected = 1 - (2 * 0.5 * 0.25 + C1) / (0.5 ** 2 + 0.25 ** 2 + C1)  # no variance: c2 / c2 = 1
    assert expected == pytest.approx(0.199936, abs=1e-6)
    assert structural_error(x0, reconstruction).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_error_of_3x3_images_by_hand_in_start_point_and_batch_order():
    delta = one_pixel(1, 3, 3, at=(0, 1, 1))
    x0 = torch.stack([delta, delta])  # [B = 2, C = 1, 3, 3]
    reconstructions = torch.stack([torch.stack([0.25 + 0.5 * delta, 1 - delta]),  # start point 0
                                   torch.stack([delta, torch.full_like(delta, 0.5)])])  # start point 1
    expected = torch.tensor([
        [1 - delta_against_affine(CENTRE_2D, 0.25, 0.5), 1 - delta_against_affine(CENTRE_2D, 1.0, -1.0)],
        [0.0, 1 - ssim_formula(CENTRE_2D, 0.5, CENTRE_2D * (1 - CENTRE_2D), 0.0, 0.0)],
    ])
    assert 1 < expected[0, 1] < 2  # the inverted image: negative covariance, SSIM below 0
    torch.testing.assert_close(structural_error(x0, reconstructions), expected, atol=1e-5, rtol=0)


def test_ssim_error_averages_window_positions_and_channels():
    # 4 rows x 3 columns: the 3x3 window fits at rows 0-2 (the pixel at (1, 1) is its centre) and at rows 1-3
    # (the pixel is the centre of its top edge); channel 1 is the inverted image.
    delta = one_pixel(4, 3, at=(1, 1))
    x0 = torch.stack([delta, delta])[None]  # [1, C = 2, 4, 3]
    reconstruction = torch.stack([0.25 + 0.5 * delta, 1 - delta])[None, None]
    expected = 1 - np.mean([delta_against_affine(w, offset, gain) for w in (CENTRE_2D, EDGE_2D)
                            for offset, gain in ((0.25, 0.5), (1.0, -1.0))])
    assert structural_error(x0, reconstruction).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_error_of_a_3x3x3_volume_by_hand():
    delta = one_pixel(1, 1, 3, 3, 3, at=(0, 0, 1, 1, 1))
    expected = 1 - delta_against_affine(CENTRE_3D, 1.0, -1.0)
    assert structural_error(delta, (1 - delta)[None]).item() == pytest.approx(expected, abs=1e-5)
    expected = 1 - delta_against_affine(CENTRE_3D, 0.25, 0.5)
    assert structural_error(delta, (0.25 + 0.5 * delta)[None]).item() == pytest.approx(expected, abs=1e-5)
