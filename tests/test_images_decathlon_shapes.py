"""The research README's decathlon command line at its real sizes: ``--is_grayscale=1 --spatial_dimension=3
--image_roi=[160,160,128] --image_size=128``.

The volumes are larger than the ROI along every axis and anisotropic (168 x 176 x 136 voxels of 1 x 1 x 1.5 mm),
so the centre crop (to 160 x 160 x 128) and the resize (to 128^3, squeezing the first two axes by 1.25) both
run; the training volume has two modalities, as BraTS does, of which --is_grayscale keeps the first. Every voxel
outside the ROI is 1e4, far above the ramps inside it, so any of it left in would squash the ramp after the
per-image scaling to [0, 1]. One training step of the first research command (train_vqvae.py, with a tiny
network) shows the command line runs at these sizes; its latents are what the LDM of the second command sees.
"""
from __future__ import annotations

import json
import math
import re

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import run_inline
from src.data.images import ImageDataset
from src.networks import load_trained

SIZE = (168, 176, 136)
ROI = (160, 160, 128)
IMAGE_SIZE = 128
OUTSIDE = 1e4
RESEARCH_FLAGS = ["--is_grayscale=1", "--spatial_dimension=3", "--image_roi=[160,160,128]", "--image_size=128"]


def ramp_volume(axis: int) -> np.ndarray:
    """0, 1, 2, ... along ``axis`` inside the centred ROI (MONAI's centre: size // 2 - roi // 2), OUTSIDE elsewhere."""
    volume = np.full(SIZE, OUTSIDE, dtype=np.float32)
    inside = tuple(slice(size // 2 - roi // 2, size // 2 - roi // 2 + roi) for size, roi in zip(SIZE, ROI))
    shape = [1, 1, 1]
    shape[axis] = ROI[axis]
    volume[inside] = np.arange(ROI[axis], dtype=np.float32).reshape(shape)
    return volume


def area_resized_ramp(length: int, size: int) -> np.ndarray:
    """The ramp 0..length-1 resized to ``size`` by area (each output the mean of the inputs its cell overlaps:
    indices floor(i L / n) to ceil((i + 1) L / n) - 1, so the mean of a ramp is their midpoint), scaled to [0, 1]."""
    i = np.arange(size)
    means = (np.floor(i * length / size) + np.ceil((i + 1) * length / size) - 1) / 2
    return (means - means.min()) / (means.max() - means.min())


@pytest.fixture(scope="module")
def decathlon_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("decathlon")
    affine = np.diag([1.0, 1.0, 1.5, 1.0])  # anisotropic voxels
    modalities = np.stack([ramp_volume(2), np.full(SIZE, 7.0, dtype=np.float32)], axis=-1)  # [X, Y, Z, modality]
    nib.save(nib.Nifti1Image(modalities, affine), str(root / "brats_like.nii"))
    nib.save(nib.Nifti1Image(ramp_volume(0), affine), str(root / "val.nii"))
    splits = root / "data_splits"
    splits.mkdir()
    (splits / "Task01_Like_train.csv").write_text("../brats_like.nii\n")
    (splits / "Task01_Like_val.csv").write_text("../val.nii\n")
    return root, splits / "Task01_Like_train.csv", splits / "Task01_Like_val.csv"


def test_research_roi_and_size_crop_then_resize_to_128_cubed(decathlon_like):
    _, train_csv, val_csv = decathlon_like
    train = ImageDataset(train_csv, spatial_dims=3, is_grayscale=True, image_roi=ROI, image_size=IMAGE_SIZE)
    assert (train.channels, train.spatial_shape) == (1, (128, 128, 128))
    image = train[0]["signal"].numpy()
    assert image.shape == (1, 128, 128, 128) and image.dtype == np.float32
    # axis 2: cropped 136 -> 128 and not resized (128 -> 128): the ramp 0..127 exactly, scaled
    np.testing.assert_allclose(image[0], np.broadcast_to(np.arange(128) / 127, (128, 128, 128)), atol=1e-6)
    val = ImageDataset(val_csv, spatial_dims=3, is_grayscale=True, image_roi=ROI, image_size=IMAGE_SIZE)[0]["signal"]
    # axis 0: cropped 168 -> 160, then resized 160 -> 128 by area
    expected = area_resized_ramp(160, 128)
    np.testing.assert_allclose(val[0].numpy(), np.broadcast_to(expected[:, None, None], (128, 128, 128)), atol=1e-5)


def test_research_vqvae_command_trains_a_step_at_128_cubed(decathlon_like):
    root, train_csv, val_csv = decathlon_like
    runs = root / "runs"
    result = run_inline("train_vqvae.py", f"--output_dir={runs}", "--model_name=decathlon-vqvae",
                        f"--training_h5file={train_csv}", f"--validation_h5file={val_csv}", *RESEARCH_FLAGS,
                        "--n_epochs=1", "--batch_size=1", "--quick_test=1", "--figures=0", "--precision=fp32",
                        "--channels=4,8", "--embedding_dim=2", "--num_embeddings=8")
    assert result.returncode == 0, result.stderr
    run = runs / "decathlon-vqvae"
    config = json.loads((run / "vqvae_config.json").read_text())
    data = config["data"]
    flags = (data["spatial_dims"], data["is_grayscale"], data["image_roi"], data["image_size"])
    assert flags == (3, True, list(ROI), IMAGE_SIZE)
    assert (data["channels"], data["spatial_shape"]) == (1, [128, 128, 128])
    line = next(line for line in (run / "log.txt").read_text().splitlines() if "epoch 1/1 train loss" in line)
    losses = [float(value) for value in re.findall(r"loss (\S+)", line)]  # train, val commitment, val, ...
    assert len(losses) >= 2 and all(math.isfinite(loss) for loss in losses), line
    model = load_trained(config["network"], run / "checkpoint.pth", torch.device("cpu"))
    x = ImageDataset(val_csv, 3, True, ROI, IMAGE_SIZE)[0]["signal"][None]
    with torch.no_grad():
        latents = model.encode_quantized(x)
    assert tuple(latents.shape) == (1, 2, 32, 32, 32)  # 128 / 2^2 levels, 2 = --embedding_dim: the LDM's input
