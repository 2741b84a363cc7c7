"""Every model family end to end at tiny size: train (quick) -> reconstruct -> one comparison table.

A VQ-VAE run given to reconstruct.py, and a --vqvae_checkpoint without its vqvae_config.json: tests/test_bad_input.py.
"""
import json

import h5py
import pandas as pd
import pytest
import torch

from conftest import run_ok
from src.diffusion.latent import LATENT_SCALE_BATCHES, load_vqvae
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE

SCORED = ["unet", "wavenet", "autoencoder", "ldm"]


@pytest.fixture(scope="module")
def runs(family_runs, processed_module):
    """The session's trained families, the scored ones reconstructed (Tone val and test in, Noise test
    out: the signals the families were trained on)."""
    runs, files = family_runs, processed_module
    for name in SCORED:
        run_ok("reconstruct.py", f"--output_dir={runs}", f"--model_name={name}",
               f"--validation_h5file={files['Tone_val']}", f"--in_ids={files['Tone_test']}",
               f"--out_ids={files['Noise_test']}", "--num_inference_steps=10", "--inference_skip_factor=5",
               "--first_n=6", "--first_n_val=6", "--batch_size=6")  # start points t = 100 and 600: 9 network calls
    return runs


def test_comparison_table_has_a_column_per_run(runs):
    result = run_ok("ood_detection.py", f"--output_dir={runs}", f"--model_name={','.join(SCORED)}")
    header = next(line for line in result.stdout.splitlines() if line.startswith("dataset"))
    assert header.split()[1:] == SCORED
    table = pd.read_csv(runs / f"ood_comparison_{'-'.join(DEFAULT_METRICS)}_{DEFAULT_SCORE}.csv", index_col="dataset")
    assert list(table.columns) == SCORED and list(table.index) == ["Noise", "mean"]
    for name in SCORED:  # the comparison holds each run's own AUROCs, as its metrics file reports them
        own = pd.read_csv(runs / name / "ood" / f"metrics_{'-'.join(DEFAULT_METRICS)}_{DEFAULT_SCORE}.csv",
                          index_col="dataset")
        assert table[name].to_dict() == pytest.approx(own["AUROC"].to_dict(), abs=1e-4)


def test_autoencoder_results_have_the_single_start_point_zero(runs):
    frame = pd.read_csv(runs / "autoencoder" / "ood" / "results_Noise.csv")
    assert set(frame["t"]) == {0} and len(frame) == 6
    settings = json.loads((runs / "autoencoder" / "ood" / "reconstruction.json").read_text())
    assert settings["mode"] == "autoencoder"


def test_diffusion_results_cover_every_start_point(runs):
    for name in ("unet", "wavenet", "ldm"):
        frame = pd.read_csv(runs / name / "ood" / "results_in.csv")
        assert sorted(frame["t"].unique()) == [100, 600], name
        assert frame.groupby("filename").size().eq(2).all()


def test_vqvae_run_writes_its_config_and_codebook_curves(runs):
    config = json.loads((runs / "vqvae" / "vqvae_config.json").read_text())
    assert config["kind"] == "vqvae" and config["network"]["num_embeddings"] == 16
    assert (runs / "vqvae" / "checkpoint.pth").is_file() and not (runs / "vqvae" / "config.json").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(runs / "vqvae" / "train")).Reload().Tags()["scalars"]
    assert {"reconstruction_loss", "commitment_loss", "codebook_perplexity", "codebook_usage"} <= set(tags)


def test_ldm_names_its_vqvae_and_restores_the_latent_scale(runs, processed_module):
    config = json.loads((runs / "ldm" / "config.json").read_text())
    assert config["kind"] == "ldm" and config["network"]["in_channels"] == 4
    assert config["latent"]["vqvae_checkpoint"] == str((runs / "vqvae" / "checkpoint.pth").resolve())
    vqvae, _ = load_vqvae(config["latent"]["vqvae_checkpoint"], torch.device("cpu"))
    with h5py.File(processed_module["Tone_train"], "r") as handle:
        signals = torch.from_numpy(handle["dataset"][: 8 * LATENT_SCALE_BATCHES])
    with torch.no_grad():
        latents = vqvae.encode_quantized(signals)
    assert (latents * config["latent"]["scale_factor"]).std().item() == pytest.approx(1.0, rel=1e-4)
