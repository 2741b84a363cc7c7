"""The reconstruction engine on images [B, C, H, W] and volumes [B, C, H, W, D].

As tests/test_engine.py does for signals [B, C, L]: the batched engine's three modes against the plain
per-start-point loops (MONAI's PNDM and DDIM schedulers, the one-step formula written out), within the same
tolerance (max |difference| <= 1e-5 x max(1, max |expected|)); as tests/test_reliability.py does, an interrupted
set continues where it stopped; as tests/test_distributed.py does, reconstruct.py under torchrun with 2 gloo
processes covers each image once and matches one process. Sizes are anisotropic, so a mixed-up axis shows.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from conftest import Interrupting, run_cli, run_inline
from src.data.images import ImageDataset
from src.diffusion.engine import reconstruct_batched
from src.diffusion.multistart import reconstruct, sample_noise, start_points
from src.diffusion.schedulers import build_pndm_scheduler, scheduler_config
from src.networks import build_model, network_config
from src.ood.distances import reconstruction_errors
from src.ood.ood_folder import OodFolder
from src.ood.reconstructors import DiffusionReconstructor, reconstruct_set

SHAPES = {2: (3, 2, 6, 10), 3: (2, 1, 6, 4, 8)}  # [B, C, *spatial]
DIMS = sorted(SHAPES)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(spatial_dims: int, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(network_config("small", spatial_dims=spatial_dims, in_channels=channels, channels=[8, 16],
                                       attention_levels=[False, False])).eval()
    for parameter in model.parameters():  # a fresh UNet outputs 0 (zero-initialised last layer); give it behaviour
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def setup(spatial_dims: int, prediction_type: str = "epsilon", skip: int = 4, steps: int = 20):
    """Scheduler, start points (20 steps, skip 4: t = 50, 250, 450, 650, 850), images x0 and their noise."""
    shape = SHAPES[spatial_dims]
    scheduler = build_pndm_scheduler(scheduler_config("scaled_linear_beta", 0.0015, 0.0195, prediction_type, 1.0,
                                                      1.0), steps)
    starts = start_points(scheduler, skip)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return scheduler, starts, x0, sample_noise(torch.arange(shape[0]), len(starts), shape[1:], seed=0)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max()))


@pytest.mark.parametrize("spatial_dims", DIMS)
# (v_prediction, 6, 20): t = 50, 350, 650, 950; the last chain starts at the top of the grid
@pytest.mark.parametrize("prediction_type, skip, steps", [("epsilon", 4, 20), ("v_prediction", 6, 20)])
def test_plms_mode_reproduces_the_monai_plms_loop_in_any_chunking(spatial_dims, prediction_type, skip, steps):
    scheduler, starts, x0, noise = setup(spatial_dims, prediction_type, skip, steps)
    model = tiny_model(spatial_dims, x0.shape[1])
    plain = reconstruct(model, scheduler, x0, starts, noise, b_scale=2.0)
    assert plain.shape == (len(starts), *x0.shape)
    for max_chains in (2, 256):  # 2 splits the chains of one start point, and a start point's batch, across calls
        batched = reconstruct_batched(model, scheduler, x0, starts, noise, b_scale=2.0, max_chains=max_chains)
        assert close(batched, plain), max_chains


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_ddim_mode_reproduces_monai_ddim_steps(spatial_dims):
    scheduler, starts, x0, noise = setup(spatial_dims)
    model = tiny_model(spatial_dims, x0.shape[1])
    ddim = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                         beta_end=0.0195, clip_sample=False, set_alpha_to_one=False)
    ddim.set_timesteps(20)  # stepped over the PLMS grid of 20 steps (950, 900, ...), as tests/test_engine.py does
    batch = len(x0)
    expected = []
    with torch.no_grad():
        for start, start_noise in zip(starts, noise):
            x = ddim.add_noise(x0, start_noise, torch.full((batch,), start))
            for t in scheduler.timesteps[scheduler.timesteps <= start]:
                x, _ = ddim.step(model(x, t.expand(batch)), int(t), x)
            expected.append(x)
    assert close(reconstruct_batched(model, scheduler, x0, starts, noise, mode="ddim"), torch.stack(expected))


@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_onestep_mode_is_the_one_step_formula(spatial_dims, prediction_type):
    scheduler, starts, x0, noise = setup(spatial_dims, prediction_type)
    model = tiny_model(spatial_dims, x0.shape[1])
    expected = []
    with torch.no_grad():
        for start, start_noise in zip(starts, noise):
            abar = scheduler.alphas_cumprod[start]
            x_t = abar.sqrt() * 2.0 * x0 + (1 - abar).sqrt() * start_noise  # b_scale 2
            output = model(x_t, torch.full((len(x0),), start))
            if prediction_type == "epsilon":  # x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
                estimate = (x_t - (1 - abar).sqrt() * output) / abar.sqrt()
            else:  # v = sqrt(abar) eps - sqrt(1 - abar) x0, so x0 = sqrt(abar) x_t - sqrt(1 - abar) v
                estimate = abar.sqrt() * x_t - (1 - abar).sqrt() * output
            expected.append(estimate / 2.0)
    onestep = reconstruct_batched(model, scheduler, x0, starts, noise, b_scale=2.0, mode="onestep")
    assert close(onestep, torch.stack(expected))


class Oracle(torch.nn.Module):
    """An ideal epsilon model for images of any spatial dims: the true noise of x_t, given the clean x0 [B, ...]."""

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.abar = x0, alphas_cumprod

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t].reshape(-1, *[1] * (x.dim() - 1))
        clean = self.x0.repeat(len(x) // len(self.x0), *[1] * (x.dim() - 1))
        return (x - abar.sqrt() * clean) / (1 - abar).sqrt()


@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("mode", ["ddim", "onestep", "path"])
def test_an_ideal_denoiser_lands_on_the_image(spatial_dims, mode):
    """Given the true noise, one step gives x0 back (and so does every point of the noise-free path); a DDIM
    chain keeps that noise and its last step lands on abar = 1 - beta_0 = 0.9985 (MONAI's
    set_alpha_to_one=False), not on 1. (Not PLMS: MONAI's skip_prk_steps sampler, which the engine
    reproduces, calls the network one grid step off after its correction step, so even the true noise
    does not land there; PLMS is held to MONAI's loop above instead.)"""
    scheduler, starts, x0, noise = setup(spatial_dims)
    recon = reconstruct_batched(Oracle(x0, scheduler.alphas_cumprod), scheduler, x0, starts, noise, mode=mode)
    final = 1 - 0.0015
    expected = x0 if mode in ("onestep", "path") else final ** 0.5 * x0 + (1 - final) ** 0.5 * noise
    assert recon.shape == (len(starts), *x0.shape)
    assert (recon - expected).abs().max() < 1e-3


# --------------------------------------------------------------------------------------------------
# An interrupted set continues where it stopped
# --------------------------------------------------------------------------------------------------

def write_images(folder, spatial_dims: int, count: int, seed: int = 0, name: str = "Set"):
    """``count`` random images of SHAPES[spatial_dims] (one item's shape), .npy (2D) or NIfTI (3D), and their
    split file ``<name><dims>d_test.csv``. Returns the CSV path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        image = rng.uniform(size=SHAPES[spatial_dims][1:]).astype(np.float32)
        if spatial_dims == 2:
            np.save(folder / f"im{index}.npy", image)  # channel-first [C, H, W]
            paths.append(f"im{index}.npy")
        else:
            nib.save(nib.Nifti1Image(image[0], np.eye(4)), str(folder / f"vol{index}.nii"))
            paths.append(f"vol{index}.nii")
    csv = folder / f"{name}{spatial_dims}d_test.csv"
    csv.write_text(",".join(paths) + "\n")
    return csv


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_an_interrupted_image_set_continues_where_it_stopped(tmp_path, spatial_dims):
    dataset = ImageDataset(write_images(tmp_path / "data", spatial_dims, 9), spatial_dims)
    assert (dataset.channels, *dataset.spatial_shape) == SHAPES[spatial_dims][1:]
    config = {"scheduler": scheduler_config("scaled_linear_beta", 0.0015, 0.0195, "epsilon", 1.0, 1.0)}
    model = tiny_model(spatial_dims, dataset.channels)
    inner = DiffusionReconstructor(model, config, 20, 12, seed=0, device=torch.device("cpu"))  # PLMS, t = 50, 650
    whole = reconstruct_set(inner, dataset, "in", batch_size=2)
    assert len(whole) == 9 * len(inner.starts)
    assert {"mse", "mae", "ssim"} <= set(whole.columns) and not {"env", "lsd"} & set(whole.columns)

    with pytest.raises(KeyboardInterrupt):
        reconstruct_set(Interrupting(inner, calls=2), dataset, "in", batch_size=2, folder=OodFolder(tmp_path))
    partial = next(OodFolder(tmp_path).partial_dir.glob("*.csv"))
    with open(partial, "a") as handle:
        handle.write(f"Set{spatial_dims}d_test:4,in,Se")  # a line cut by the crash
    continuing = Interrupting(inner)
    resumed = reconstruct_set(continuing, dataset, "in", batch_size=2, folder=OodFolder(tmp_path))
    assert sorted(i for batch in continuing.seen for i in batch) == [4, 5, 6, 7, 8]  # 0-3 were done
    pd.testing.assert_frame_equal(resumed, whole, rtol=1e-5)

    # the rows hold the errors of the plain loop's reconstructions, image by image, t ascending
    x0 = torch.stack([dataset[i]["signal"] for i in range(9)])
    noise = sample_noise(torch.arange(9), len(inner.starts), tuple(x0.shape[1:]), seed=0)
    plain = reconstruction_errors(x0, reconstruct(model, inner.scheduler, x0, inner.starts, noise))
    for metric, values in plain.items():
        np.testing.assert_allclose(whole[metric].to_numpy(), values.T.reshape(-1).numpy(), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# torchrun: 2 gloo processes
# --------------------------------------------------------------------------------------------------

FP32 = "--precision=fp32"  # --precision=auto's timing probe could choose differently in the two runs


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory):
    """A 2D and a 3D run (2 quick-test steps of a tiny UNet) and their split files: 23 val and 7 in/out images,
    odd counts, so a padding sampler would repeat one."""
    root = tmp_path_factory.mktemp("engine_images")
    runs = root / "runs"
    sets = {}
    for dims in DIMS:
        sets[dims] = {name: write_images(root / f"{name}{dims}", dims, count, seed, name)
                      for seed, (name, count) in enumerate((("Train", 4), ("Val", 23), ("In", 7), ("Out", 7)))}
        result = run_inline("train_ddpm.py", f"--output_dir={runs}", f"--model_name=u{dims}",
                            f"--spatial_dimension={dims}", f"--training_ids={sets[dims]['Train']}",
                            f"--validation_ids={sets[dims]['Val']}", "--channels=8,16", "--attention_levels=0,0",
                            "--batch_size=2", "--n_epochs=1", "--quick_test=1", "--figures=0", FP32)
        assert result.returncode == 0, result.stderr
    return runs, sets


def reconstruct_flags(runs, files, dims):
    return ("reconstruct.py", f"--output_dir={runs}", f"--model_name=u{dims}", f"--validation_ids={files['Val']}",
            f"--in_ids={files['In']}", f"--out_ids={files['Out']}", "--num_inference_steps=20",
            "--inference_skip_factor=6", "--batch_size=3", FP32)  # t = 50, 350, 650, 950


@pytest.mark.parametrize("dims", DIMS)
def test_torchrun_reconstruction_covers_each_image_once_and_matches_one_process(image_runs, dims):
    runs, sets = image_runs
    single = run_inline(*reconstruct_flags(runs, sets[dims], dims))
    assert single.returncode == 0, single.stderr
    ood = runs / f"u{dims}" / "ood"
    one = {name: pd.read_csv(ood / f"results_{name}.csv") for name in ("val", "in", f"Out{dims}d")}
    for name in one:  # the sharded run must write these afresh
        (ood / f"results_{name}.csv").unlink()
    sharded = run_cli("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                      *reconstruct_flags(runs, sets[dims], dims)).stdout
    assert "2 process(es)" in sharded, sharded
    for name, count in (("val", 23), ("in", 7), (f"Out{dims}d", 7)):
        assert f"results_{name}.csv ({count} signals x 4 start points)" in sharded, sharded
    assert not list((ood / ".partial").glob("*.csv"))  # every rank's partial file folded in
    for name, expected in one.items():
        frame = pd.read_csv(ood / f"results_{name}.csv")
        assert not frame.duplicated(["filename", "t"]).any(), name
        assert list(frame["filename"]) == list(expected["filename"]) and list(frame["t"]) == list(expected["t"])
        for metric in ("mse", "mae", "ssim"):  # the same per-image noise: the same errors up to float reordering
            pd.testing.assert_series_equal(frame[metric], expected[metric], rtol=1e-4)
