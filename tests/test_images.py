"""Tests of the 2D/3D path: split files, image loading, MONAI networks, synthetic image data (tiny sizes)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from src.data import synthetic_images
from src.data.images import ImageDataset, read_split_csv, split_name
from src.data.synthetic_images import write_digits, write_volumes
from src.errors import UserError
from src.io import load_json, save_json
from src.networks import IMAGE_DENOISER_TYPES as DENOISER_TYPES
from src.networks import IMAGE_MODEL_TYPES
from src.networks import build_model as build_image_model
from src.networks import network_config as image_network_config
from src.networks.monai_nets import crop_spatial, pad_to_multiple

REPO_ROOT = Path(__file__).resolve().parents[1]


def scaled(array: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] over the whole array, written out here."""
    array = array.astype(np.float64)
    return (array - array.min()) / (array.max() - array.min())


def write_csv_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def save_npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def save_nifti(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), str(path))
    return path


def one_image_csv(tmp_path: Path, image: Path) -> Path:
    return write_csv_text(tmp_path / "data_splits" / "One_test.csv", str(image))


def ramp(*shape: int) -> np.ndarray:
    """Distinct values 0, 1, 2, ... so that any reordering of pixels shows."""
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


# --------------------------------------------------------------------------------------------------
# Split files
# --------------------------------------------------------------------------------------------------

def test_research_layout_one_line_resolves_relative_paths(tmp_path):
    first = save_npy(tmp_path / "imgs" / "a.npy", ramp(4, 4))
    second = save_npy(tmp_path / "imgs" / "sub" / "b.npy", ramp(4, 4))
    absolute = save_npy(tmp_path / "elsewhere" / "c.npy", ramp(4, 4))
    csv = write_csv_text(tmp_path / "data_splits" / "Set_train.csv",
                         f"../imgs/a.npy,../imgs/sub/b.npy,{absolute}\r\n")
    assert read_split_csv(csv) == [first.resolve(), second.resolve(), absolute]


def test_header_layout_one_path_per_row(tmp_path):
    first = save_npy(tmp_path / "x.npy", ramp(4, 4))
    second = save_npy(tmp_path / "sub" / "y.npy", ramp(4, 4))
    for header in ("image", "Path", "filename"):
        csv = write_csv_text(tmp_path / f"{header}_val.csv", f"{header}\nx.npy\nsub/y.npy\n")
        assert read_split_csv(csv) == [first.resolve(), second.resolve()], header


def test_header_layout_takes_the_named_column(tmp_path):
    image = save_npy(tmp_path / "x.npy", ramp(4, 4))
    csv = write_csv_text(tmp_path / "s_test.csv", "label,image\n3,x.npy\n")
    assert read_split_csv(csv) == [image.resolve()]


def test_headerless_list_of_rows(tmp_path):
    first = save_npy(tmp_path / "x.npy", ramp(4, 4))
    second = save_npy(tmp_path / "y.npy", ramp(4, 4))
    csv = write_csv_text(tmp_path / "s_test.csv", "x.npy\ny.npy\n")
    assert read_split_csv(csv) == [first.resolve(), second.resolve()]


@pytest.mark.parametrize("filename, expected", [
    ("Task02_Heart_test.csv", "Task02_Heart"), ("MNIST_train.csv", "MNIST"), ("CIFAR10_val.csv", "CIFAR10"),
    ("data_splits/Task01_BrainTumour_val.csv", "Task01_BrainTumour"), ("plain.csv", "plain"),
])
def test_split_name(filename, expected):
    assert split_name(filename) == expected


def test_missing_csv_names_it(tmp_path):
    with pytest.raises(UserError, match="Nope_test.csv"):
        read_split_csv(tmp_path / "Nope_test.csv")


@pytest.mark.parametrize("text", ["", "\n\n", "image\n"])
def test_empty_csv_names_it(tmp_path, text):
    csv = write_csv_text(tmp_path / "Empty_test.csv", text)
    with pytest.raises(UserError, match="Empty_test.csv"):
        read_split_csv(csv)


def test_missing_listed_image_names_it(tmp_path):
    save_npy(tmp_path / "there.npy", ramp(4, 4))
    csv = write_csv_text(tmp_path / "S_test.csv", "there.npy,gone.npy")
    with pytest.raises(UserError, match="gone.npy"):
        read_split_csv(csv)


# --------------------------------------------------------------------------------------------------
# Loading images
# --------------------------------------------------------------------------------------------------

def test_npy_channel_first_is_kept_and_scaled(tmp_path):
    array = ramp(3, 6, 8)
    item = ImageDataset(one_image_csv(tmp_path, save_npy(tmp_path / "rgb.npy", array)), spatial_dims=2)[0]
    assert item["index"] == 0
    assert item["signal"].dtype == torch.float32 and tuple(item["signal"].shape) == (3, 6, 8)
    np.testing.assert_allclose(item["signal"].numpy(), scaled(array), atol=1e-6)


def test_npy_without_channel_gets_one(tmp_path):
    array = ramp(6, 8)
    dataset = ImageDataset(one_image_csv(tmp_path, save_npy(tmp_path / "g.npy", array)), spatial_dims=2)
    assert (dataset.channels, dataset.spatial_shape) == (1, (6, 8))
    np.testing.assert_allclose(dataset[0]["signal"][0].numpy(), scaled(array), atol=1e-6)


def test_grayscale_png_rows_then_columns(tmp_path):
    pixels = (ramp(5, 7) * 7).astype(np.uint8)  # 5 rows, 7 columns
    path = tmp_path / "g.png"
    Image.fromarray(pixels).save(path)
    image = ImageDataset(one_image_csv(tmp_path, path), spatial_dims=2)[0]["signal"]
    assert tuple(image.shape) == (1, 5, 7)
    np.testing.assert_allclose(image[0].numpy(), scaled(pixels), atol=1e-6)


def test_rgb_png_and_is_grayscale_keeps_channel_0(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, 6, 3)).astype(np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    csv = one_image_csv(tmp_path, path)
    colour = ImageDataset(csv, spatial_dims=2)[0]["signal"]
    assert tuple(colour.shape) == (3, 4, 6)
    np.testing.assert_allclose(colour.numpy(), scaled(np.moveaxis(pixels, -1, 0)), atol=1e-6)
    gray = ImageDataset(csv, spatial_dims=2, is_grayscale=True)[0]["signal"]
    assert tuple(gray.shape) == (1, 4, 6)
    np.testing.assert_allclose(gray[0].numpy(), scaled(pixels[..., 0]), atol=1e-6)


def test_nifti_volume_with_centre_crop(tmp_path):
    volume = ramp(6, 7, 8)
    csv = one_image_csv(tmp_path, save_nifti(tmp_path / "v.nii.gz", volume))
    image = ImageDataset(csv, spatial_dims=3, image_roi=[4, -1, 6])[0]["signal"]
    assert tuple(image.shape) == (1, 4, 7, 6)
    np.testing.assert_allclose(image[0].numpy(), scaled(volume[1:5, :, 1:7]), atol=1e-6)


def test_multimodal_nifti_grayscale_keeps_first_modality(tmp_path):
    volume = np.stack([ramp(4, 5, 6), -ramp(4, 5, 6) ** 2], axis=-1)  # [X, Y, Z, modality], as BraTS stores it
    csv = one_image_csv(tmp_path, save_nifti(tmp_path / "brats.nii.gz", volume))
    assert ImageDataset(csv, spatial_dims=3).channels == 2
    image = ImageDataset(csv, spatial_dims=3, is_grayscale=True)[0]["signal"]
    assert tuple(image.shape) == (1, 4, 5, 6)
    np.testing.assert_allclose(image[0].numpy(), scaled(volume[..., 0]), atol=1e-6)


def test_image_size_resizes_every_spatial_dim(tmp_path):
    array = ramp(1, 12, 12)
    image = ImageDataset(one_image_csv(tmp_path, save_npy(tmp_path / "a.npy", array)), 2, image_size=6)[0]["signal"]
    block_means = array[0].reshape(6, 2, 6, 2).mean(axis=(1, 3))  # area resampling by 2
    np.testing.assert_allclose(image[0].numpy(), scaled(block_means), atol=1e-5)
    volume = ImageDataset(one_image_csv(tmp_path / "v", save_nifti(tmp_path / "v.nii", ramp(10, 9, 8))), 3,
                          image_size=4)[0]["signal"]
    assert tuple(volume.shape) == (1, 4, 4, 4)


@pytest.mark.parametrize("flip, axis", [("v", 0), ("h", 1)])
def test_flip_reverses_rows_or_columns(tmp_path, flip, axis):
    array = ramp(5, 7)
    csv = write_csv_text(tmp_path / "data_splits" / "Set_test.csv",
                         str(save_npy(tmp_path / "a.npy", array)))
    dataset = ImageDataset(csv, spatial_dims=2, flip=flip)
    np.testing.assert_allclose(dataset[0]["signal"][0].numpy(), scaled(np.flip(array, axis=axis)), atol=1e-6)
    assert dataset.name == f"Set_{flip}flip"
    assert dataset.ids == [f"Set_test_{flip}flip:0"]


def write_three_npy(tmp_path: Path) -> tuple[Path, list[Path]]:
    images = [save_npy(tmp_path / f"im{i}.npy", ramp(6, 6) * (i + 1) + i) for i in range(3)]
    csv = write_csv_text(tmp_path / "data_splits" / "Three_train.csv", ",".join(str(p) for p in images))
    return csv, images


def test_lazy_and_cached_give_identical_tensors(tmp_path):
    csv, _ = write_three_npy(tmp_path)
    cached, lazy = ImageDataset(csv, 2, cache=True), ImageDataset(csv, 2, cache=False)
    assert len(cached) == len(lazy) == 3
    for index in range(3):
        assert torch.equal(cached[index]["signal"], lazy[index]["signal"])
    assert cached.ids == lazy.ids == ["Three_train:0", "Three_train:1", "Three_train:2"]
    assert cached.name == "Three" and cached.path == csv


def test_lazy_reads_when_asked_and_cached_reads_once(tmp_path):
    csv, images = write_three_npy(tmp_path)
    cached, lazy = ImageDataset(csv, 2, cache=True), ImageDataset(csv, 2, cache=False)
    np.save(images[2], np.flip(ramp(6, 6), axis=1))  # changed on disk after both were built
    expected_new = scaled(np.flip(ramp(6, 6), axis=1))
    np.testing.assert_allclose(lazy[2]["signal"][0].numpy(), expected_new, atol=1e-6)
    assert not np.allclose(cached[2]["signal"][0].numpy(), expected_new)


def test_first_n_and_batching(tmp_path):
    csv, _ = write_three_npy(tmp_path)
    dataset = ImageDataset(csv, 2, first_n=2)
    assert len(dataset) == 2 and dataset.ids == ["Three_train:0", "Three_train:1"]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert tuple(batch["signal"].shape) == (2, 1, 6, 6) and batch["index"].tolist() == [0, 1]


def test_volume_read_as_2d_names_file_and_flag(tmp_path):
    csv = one_image_csv(tmp_path, save_nifti(tmp_path / "vol.nii.gz", ramp(4, 5, 6)))
    with pytest.raises(UserError, match=r"vol\.nii\.gz.*--spatial_dimension"):
        ImageDataset(csv, spatial_dims=2)


def test_image_read_as_3d_names_file(tmp_path):
    csv = one_image_csv(tmp_path, save_npy(tmp_path / "flat.npy", ramp(6, 6)))
    with pytest.raises(UserError, match=r"flat\.npy"):
        ImageDataset(csv, spatial_dims=3)


def test_wrong_roi_length_names_flag(tmp_path):
    csv = one_image_csv(tmp_path, save_npy(tmp_path / "a.npy", ramp(6, 6)))
    with pytest.raises(UserError, match="--image_roi"):
        ImageDataset(csv, spatial_dims=2, image_roi=[4, 4, 4])


def test_images_of_different_sizes_name_the_odd_one(tmp_path):
    images = [save_npy(tmp_path / "a.npy", ramp(6, 6)), save_npy(tmp_path / "odd.npy", ramp(5, 6))]
    csv = write_csv_text(tmp_path / "Mixed_test.csv", ",".join(str(p) for p in images))
    with pytest.raises(UserError, match=r"odd\.npy.*--image_size"):
        ImageDataset(csv, spatial_dims=2)


def test_unreadable_image_names_it(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(UserError, match=r"broken\.png"):
        ImageDataset(one_image_csv(tmp_path, broken), spatial_dims=2)


def test_bad_flip_is_refused(tmp_path):
    csv = one_image_csv(tmp_path, save_npy(tmp_path / "a.npy", ramp(6, 6)))
    with pytest.raises(UserError, match="flip"):
        ImageDataset(csv, spatial_dims=2, flip="x")


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------

def test_pad_and_crop_round_trip():
    x = torch.randn(1, 2, 5, 6)
    padded = pad_to_multiple(x, 4)
    assert tuple(padded.shape) == (1, 2, 8, 8)
    assert torch.equal(padded[:, :, :5, :6], x)
    assert padded[:, :, 5:].abs().sum() == 0 and padded[..., 6:].abs().sum() == 0
    assert torch.equal(crop_spatial(padded, (5, 6)), x)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_keeps_shape(spatial_dims):
    torch.manual_seed(0)
    model = build_image_model(image_network_config("small", spatial_dims, in_channels=1)).eval()
    x = torch.randn(2, 1, *(16,) * spatial_dims)
    with torch.no_grad():
        assert model(x, torch.tensor([10, 500])).shape == x.shape
        assert model(x, torch.tensor(3)).shape == x.shape


def test_unet_any_size_and_channels():
    model = build_image_model(image_network_config("small", 2, in_channels=3)).eval()
    x = torch.randn(2, 3, 13, 11)
    with torch.no_grad():
        assert model(x, torch.tensor([1, 2])).shape == x.shape


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_vqvae_round_trip_shapes(spatial_dims):
    torch.manual_seed(0)
    model = build_image_model(image_network_config("vqvae", spatial_dims, in_channels=1)).eval()
    x = torch.rand(2, 1, *(16,) * spatial_dims)
    with torch.no_grad():
        z = model.encode_quantized(x)
        assert tuple(z.shape) == (2, 8, *(4,) * spatial_dims)  # 8 = embedding_dim, 16 / 2^2 levels
        assert model.decode(z, length=16).shape == x.shape
        assert model.decode(z, length=(13,) * spatial_dims).shape == (2, 1, *(13,) * spatial_dims)
        reconstruction, loss, codes = model(x)
    assert reconstruction.shape == x.shape and loss.ndim == 0
    assert tuple(codes.shape) == (2, *(4,) * spatial_dims) and 0 <= codes.min() and codes.max() < 256


def test_vqvae_codes_index_the_codebook():
    torch.manual_seed(0)
    model = build_image_model(image_network_config("vqvae", 2, in_channels=1)).eval()
    with torch.no_grad():
        z_e = model.encode(torch.rand(2, 1, 13, 11))
        z_q, _, codes = model.quantize(z_e)
    assert tuple(z_e.shape) == (2, 8, 4, 3)  # ceil(13 / 4), ceil(11 / 4)
    codebook = model.net.quantizer.quantizer.embedding.weight
    torch.testing.assert_close(z_q, codebook[codes].permute(0, 3, 1, 2))
    distances = ((z_e.permute(0, 2, 3, 1)[..., None, :] - codebook) ** 2).sum(-1)
    assert torch.equal(codes, distances.argmin(-1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_keeps_shape(spatial_dims):
    model = build_image_model(image_network_config("autoencoder", spatial_dims, in_channels=1)).eval()
    x = torch.rand(2, 1, *(16,) * spatial_dims)
    with torch.no_grad():
        assert model(x).shape == x.shape


@pytest.mark.parametrize("model_type", IMAGE_MODEL_TYPES)
def test_config_json_round_trip_rebuilds_same_network(model_type, tmp_path):
    """A network rebuilt from its config as written to and read from config.json takes the first one's weights
    (every name and shape, strictly) and computes the same output from them."""
    config = image_network_config(model_type, 2, in_channels=1)
    save_json(config, tmp_path / "config.json")
    reloaded = load_json(tmp_path / "config.json")
    torch.manual_seed(0)
    first = build_image_model(config).eval()
    torch.manual_seed(1)
    again = build_image_model(reloaded).eval()
    again.load_state_dict(first.state_dict(), strict=True)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        if model_type in DENOISER_TYPES:
            outputs = first(x, torch.tensor([5])), again(x, torch.tensor([5]))
        else:
            outputs = first(x)[0], again(x)[0]
    assert torch.equal(*outputs)


def documented_sizes() -> dict[tuple[str, int], int]:
    """The UNet presets' parameter counts docs/usage.md states in its images section: (preset, 2 or 3) -> count."""
    text = (REPO_ROOT / "docs" / "usage.md").read_text()
    section = text[text.index("## Images and volumes"):text.index("### The image and volume demos")]
    found = re.findall(r"`(small|medium|big)` ([\d,]+) / ([\d,]+)", " ".join(section.split()))
    return {(name, dims): int(count.replace(",", "")) for name, *counts in found
            for dims, count in zip((2, 3), counts)}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("model_type", DENOISER_TYPES)
def test_unet_preset_sizes_as_documented(model_type, spatial_dims):
    documented = documented_sizes()
    assert len(documented) == 2 * len(DENOISER_TYPES), documented
    model = build_image_model(image_network_config(model_type, spatial_dims, in_channels=1))
    assert sum(p.numel() for p in model.parameters()) == documented[model_type, spatial_dims]


def test_channel_override_stays_consistent():
    config = image_network_config("small", 2, in_channels=1, channels=(24, 48, 96))
    assert config["attention_levels"] == [False, False, True] and config["channels"] == [24, 48, 96]
    assert config["norm_num_groups"] == 8 and config["num_head_channels"] == 96
    model = build_image_model(json.loads(json.dumps(config))).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 8, 8), torch.tensor([1])).shape == (1, 1, 8, 8)


def test_bad_network_options_name_the_flag():
    with pytest.raises(UserError, match="--latent_channels"):
        image_network_config("vqvae", 2, 1, latent_channels=3)
    with pytest.raises(UserError, match="--model_type"):
        image_network_config("wavenet", 2, 1)
    with pytest.raises(UserError, match="unknown image model_type"):
        build_image_model({"model_type": "resnet", "spatial_dims": 2, "in_channels": 1})


# --------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------

def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digits(root, image_size=16, n_per_set=10, seed=3)
    return root


def test_digits_writes_the_splits_it_claims(digits_tree):
    splits = digits_tree / "data_splits"
    expected = {"train": 7, "val": 1, "test": 2}  # 70 / 10 / 20 % of 10
    assert sorted(p.name for p in splits.iterdir()) == sorted(
        f"{name}_{split}.csv" for name in ("Digits04", "Digits59", "Digits04Inverted") for split in expected)
    for csv in splits.iterdir():
        assert len(csv.read_text().strip().splitlines()) == 1  # the research layout: one line
        images = read_split_csv(csv)
        assert len(images) == expected[csv.stem.rsplit("_", 1)[1]], csv.name
        for image in images:
            with Image.open(image) as png:
                assert png.size == (16, 16) and png.mode == "L"
    assert len(list((digits_tree / "digits").rglob("*.png"))) == 30


def test_inverted_digits_are_the_in_set_inverted(digits_tree):
    splits = digits_tree / "data_splits"
    for split in ("train", "test"):
        normal = [np.asarray(Image.open(p)) for p in read_split_csv(splits / f"Digits04_{split}.csv")]
        inverted = [np.asarray(Image.open(p)) for p in read_split_csv(splits / f"Digits04Inverted_{split}.csv")]
        for a, b in zip(normal, inverted):
            np.testing.assert_array_equal(b.astype(int), 255 - a.astype(int))


def test_digits_load_as_a_dataset(digits_tree):
    dataset = ImageDataset(digits_tree / "data_splits" / "Digits59_train.csv", spatial_dims=2)
    assert len(dataset) == 7 and dataset.name == "Digits59"
    assert (dataset.channels, dataset.spatial_shape) == (1, (16, 16))


def test_digits_deterministic_for_a_seed(digits_tree, tmp_path):
    write_digits(tmp_path / "again", image_size=16, n_per_set=10, seed=3)
    assert all_files(tmp_path / "again") == all_files(digits_tree)
    write_digits(tmp_path / "other", image_size=16, n_per_set=10, seed=4)
    assert all_files(tmp_path / "other") != all_files(digits_tree)


def test_volumes_write_what_they_claim_and_repeat(tmp_path):
    written = write_volumes(tmp_path / "a", volume_size=16, n_train=2, n_val=1, n_test=1, seed=0)
    names = ("Task01_Spheres", "Task02_Boxes", "Task03_BigSphere", "Task04_NoisySpheres")
    assert sorted(written) == sorted(names)
    expected = {"train": 2, "val": 1, "test": 1}
    for name in names:
        for split, count in expected.items():
            csv = tmp_path / "a" / "data_splits" / f"{name}_{split}.csv"
            assert written[name][split] == csv
            images = read_split_csv(csv)
            assert len(images) == count
            for image in images:
                volume = np.asarray(nib.load(str(image)).dataobj)
                assert volume.shape == (16, 16, 16) and volume.dtype == np.float32
                assert volume.min() >= 0.0 and volume.max() <= 1.0
    dataset = ImageDataset(written["Task01_Spheres"]["train"], spatial_dims=3)
    assert tuple(dataset[1]["signal"].shape) == (1, 16, 16, 16)
    write_volumes(tmp_path / "b", volume_size=16, n_train=2, n_val=1, n_test=1, seed=0)
    assert all_files(tmp_path / "a") == all_files(tmp_path / "b")


def test_volume_sets_differ_from_the_in_set(tmp_path):
    written = write_volumes(tmp_path, volume_size=16, n_train=1, n_val=1, n_test=1, seed=0)
    first = {name: np.asarray(nib.load(str(read_split_csv(csvs["test"])[0])).dataobj)
             for name, csvs in written.items()}
    for name in ("Task02_Boxes", "Task03_BigSphere", "Task04_NoisySpheres"):
        assert not np.allclose(first[name], first["Task01_Spheres"]), name


def test_script_writes_digits(tmp_path):
    result = subprocess.run([sys.executable, "-m", "src.data.synthetic_images", "--out", str(tmp_path),
                             "--kinds", "digits", "--n_per_set", "5", "--image_size", "8"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert len(read_split_csv(tmp_path / "data_splits" / "Digits04_train.csv")) == 3  # 5 - 1 val - 1 test


def test_script_refuses_unknown_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["synthetic_images", "--out", str(tmp_path), "--kinds", "photos"])
    with pytest.raises(UserError, match="photos"):
        synthetic_images.main()
