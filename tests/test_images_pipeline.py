"""The 2D and 3D path end to end through the command lines, from CSV split files the tests write."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import assert_one_line_error, run_cli
from src.data.synthetic_images import write_digits, write_volumes

TINY_2D = ["--channels=8,16", "--attention_levels=0,0", "--batch_size=4", "--n_epochs=1", "--quick_test=1",
           "--figures=0"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    splits = write_digits(root, image_size=16, n_per_set=30)
    runs = root / "runs"
    run_cli("train_ddpm.py", f"--output_dir={runs}", "--model_name=u2", "--model_type=small", "--spatial_dimension=2",
            f"--training_ids={splits['Digits04']['train']}", f"--validation_ids={splits['Digits04']['val']}", *TINY_2D)
    outs = [splits["Digits59"]["test"], splits["Digits04Inverted"]["test"], f"{splits['Digits04']['test']}_vflip"]
    reconstructed = run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=u2",
                            f"--validation_h5file={splits['Digits04']['val']}",
                            f"--in_ids={splits['Digits04']['test']}",
                            f"--out_ids={','.join(str(path) for path in outs)}", "--inference_skip_factor=50",
                            "--first_n=3", "--first_n_val=4", "--batch_size=4")
    return splits, runs, reconstructed.stdout


def test_2d_ddpm_from_csv_files_to_an_auroc_table(digits):
    splits, runs, _ = digits
    config = json.loads((runs / "u2" / "config.json").read_text())
    assert config["network"]["spatial_dims"] == 2 and config["data"]["spatial_shape"] == [16, 16]
    ood = runs / "u2" / "ood"
    results = pd.read_csv(ood / "results_Digits04_vflip.csv")
    assert {"mse", "mae", "ssim"} <= set(results.columns) and "env" not in results.columns
    assert results["filename"].nunique() == 3 and sorted(results["t"].unique()) == [10, 510]
    assert (results["ssim"] >= 0).all() and (results["ssim"] <= 2).all()
    detected = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=u2", "--n_bootstrap=20")
    assert "score pooled on mse,ssim" in detected.stdout  # the image default
    table = pd.read_csv(ood / "metrics_mse-ssim_pooled.csv", index_col="dataset")
    assert sorted(table.index) == ["Digits04Inverted", "Digits04_vflip", "Digits59", "mean"]


def test_flipped_out_set_holds_the_in_images_upside_down(digits):
    from src.data.sources import DataOptions, open_set
    splits, _, _ = digits
    options = DataOptions(spatial_dims=2)
    plain = open_set(splits["Digits04"]["test"], options, first_n=2)
    flipped = open_set(f"{splits['Digits04']['test']}_vflip", options, first_n=2)
    assert flipped.name == "Digits04_vflip"
    np.testing.assert_array_equal(flipped[1]["signal"].numpy(), plain[1]["signal"].numpy()[:, ::-1, :])


def test_an_rf_metric_on_image_results_is_one_clear_error(digits):
    _, runs, _ = digits
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=u2", "--metric=env", check=False)
    assert_one_line_error(result, "--metric env", "1D RF signals", "mse, mae and ssim")


def test_another_spatial_dimension_than_the_run_is_one_clear_error(digits):
    splits, runs, _ = digits
    result = run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=u2", "--spatial_dimension=3",
                     f"--validation_h5file={splits['Digits04']['val']}", "--run_in=0", "--run_out=0", check=False)
    assert_one_line_error(result, "--spatial_dimension=3", "trained with 2")


@pytest.mark.parametrize("case", ["missing_csv", "missing_image", "wrong_dims", "roi_length"])
def test_bad_image_inputs_get_one_clear_line(digits, tmp_path, case):
    splits, runs, _ = digits
    train, val = splits["Digits04"]["train"], splits["Digits04"]["val"]
    flags = {"missing_csv": [f"--training_ids={tmp_path / 'Nope_train.csv'}", "--spatial_dimension=2"],
             "missing_image": [f"--training_ids={write_csv(tmp_path, ['gone.png'])}", "--spatial_dimension=2"],
             "wrong_dims": [f"--training_ids={train}", "--spatial_dimension=3"],
             "roi_length": [f"--training_ids={train}", "--spatial_dimension=2", "--image_roi=[8,8,8]"]}[case]
    expected = {"missing_csv": ["Nope_train.csv"], "missing_image": ["gone.png"],
                "wrong_dims": ["--spatial_dimension"], "roi_length": ["--image_roi"]}[case]
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=bad", f"--validation_ids={val}",
                     *flags, *TINY_2D, check=False)
    assert_one_line_error(result, *expected)


def write_csv(folder, names):
    path = folder / "Bad_train.csv"
    path.write_text(",".join(names) + "\n")
    return path


def test_3d_ldm_with_the_research_decathlon_command_line(tmp_path):
    splits = write_volumes(tmp_path, volume_size=16, n_train=4, n_val=3, n_test=2)
    runs = tmp_path / "runs"
    inside = splits["Task01_Spheres"]
    data = ["--spatial_dimension=3", "--is_grayscale=1", "--image_roi=[16,16,16]", "--image_size=16"]
    common = [f"--output_dir={runs}", f"--training_ids={inside['train']}", f"--validation_ids={inside['val']}",
              *data, "--batch_size=2", "--n_epochs=1", "--quick_test=1", "--figures=0",
              "--precision=fp32"]  # --precision=auto follows a load-dependent probe; bf16 on this barely trained
    # VQ-VAE's latents has given a NaN loss at the first step (3 of 14 runs under load): the shapes are tested here
    run_cli("train_vqvae.py", *common, "--model_name=vqvae3d", "--channels=8,16", "--num_embeddings=16")
    vqvae = runs / "vqvae3d" / "checkpoint.pth"
    run_cli("train_ddpm.py", *common, "--model_name=ldm3d", f"--vqvae_checkpoint={vqvae}", "--channels=8,16",
            "--attention_levels=0,0")
    outs = ",".join(str(splits[name]["test"]) for name in ("Task02_Boxes", "Task03_BigSphere"))
    run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=ldm3d", f"--vqvae_checkpoint={vqvae}",
            f"--validation_h5file={inside['val']}", f"--in_ids={inside['test']}", f"--out_ids={outs}", *data,
            "--batch_size=2", "--cache_data=0", "--prediction_type=epsilon", "--beta_schedule=scaled_linear_beta",
            "--beta_start=0.0015", "--beta_end=0.0195", "--b_scale=1.0", "--num_inference_steps=100",
            "--inference_skip_factor=50", "--run_val=1", "--run_in=1", "--run_out=1")
    results = pd.read_csv(runs / "ldm3d" / "ood" / "results_Task02_Boxes.csv")
    assert results["filename"].nunique() == 2 and {"mse", "ssim"} <= set(results.columns)
    detected = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=ldm3d", "--n_bootstrap=0",
                       "--report=0")
    assert "Task02_Boxes" in detected.stdout and "Task03_BigSphere" in detected.stdout
