"""torchrun on CPU (gloo): DDP training and sharded reconstruction with 2 processes."""
import pandas as pd
import pytest
import torch

from conftest import TINY_NET, run_cli

TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def train_flags(files, runs, name):
    return (f"--output_dir={runs}", f"--model_name={name}", *TINY_NET, f"--training_h5file={files['Tone_train']}",
            f"--validation_h5file={files['Tone_val']}", "--batch_size=4", "--quick_test=1")


def reconstruct_flags(files, runs, name):
    # 23 val and 7 in/out signals: odd counts, so a padding sampler would repeat one.
    return (f"--output_dir={runs}", f"--model_name={name}", f"--validation_h5file={files['Tone_val']}",
            f"--in_ids={files['Tone_test']}", f"--out_ids={files['Noise_test']}", "--inference_skip_factor=40",
            "--first_n=7", "--first_n_val=23", "--batch_size=3")


@pytest.fixture(scope="module")
def runs(processed_module, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ddp")
    files = processed_module
    run_cli(*TORCHRUN, "train_ddpm.py", *train_flags(files, runs, "ddp"), "--n_epochs=2")
    run_cli("reconstruct.py", *reconstruct_flags(files, runs, "ddp"))
    ood = runs / "ddp" / "ood"
    single = {name: pd.read_csv(ood / f"results_{name}.csv") for name in ("val", "in", "Noise")}
    for name in single:  # the sharded run must write these afresh
        (ood / f"results_{name}.csv").unlink()
    sharded = run_cli(*TORCHRUN, "reconstruct.py", *reconstruct_flags(files, runs, "ddp"))
    return runs, single, sharded.stdout


def test_sharded_reconstruction_really_ran_on_two_processes(runs):
    folder, _, stdout = runs
    assert "2 process(es)" in stdout and "skipped" not in stdout, stdout
    for name, count in (("val", 23), ("in", 7), ("Noise", 7)):
        assert f"results_{name}.csv ({count} signals x 3 start points)" in stdout, stdout
    assert not list((folder / "ddp" / "ood" / ".partial").glob("*.csv"))  # every rank's partial file folded in


def test_sharded_reconstruction_covers_each_sample_once_and_matches_one_process(runs):
    folder, single, _ = runs
    for name, expected in single.items():
        sharded = pd.read_csv(folder / "ddp" / "ood" / f"results_{name}.csv")
        assert not sharded.duplicated(["filename", "t"]).any(), name
        assert sharded.groupby("t")["filename"].nunique().eq(expected["filename"].nunique()).all()
        assert list(sharded["filename"]) == list(expected["filename"]) and list(sharded["t"]) == list(expected["t"])
        # same per-sample noise, so the same errors up to float reordering
        for metric in ("mse", "mae", "env", "lsd"):
            pd.testing.assert_series_equal(sharded[metric], expected[metric], rtol=1e-4)
    assert single["val"]["filename"].nunique() == 23 and single["in"]["filename"].nunique() == 7


def test_ddp_checkpoint_loads_in_one_process_and_the_other_way(runs, processed_module):
    folder, _, _ = runs
    state = torch.load(folder / "ddp" / "checkpoint_last.pth", weights_only=True)
    assert state["epoch"] == 2 and not any(key.startswith("module.") for key in state["model"])
    # a single process resumes the DDP run, and torchrun resumes that one again
    resumed = run_cli("train_ddpm.py", *train_flags(processed_module, folder, "ddp"), "--n_epochs=3")
    assert "resuming" in resumed.stdout and "at epoch 3" in resumed.stdout
    again = run_cli(*TORCHRUN, "train_ddpm.py", *train_flags(processed_module, folder, "ddp"), "--n_epochs=4")
    assert "at epoch 4" in again.stdout
    assert torch.load(folder / "ddp" / "checkpoint_last.pth", weights_only=True)["epoch"] == 4


def test_only_the_main_process_logs(runs):
    folder, _, _ = runs
    log = (folder / "ddp" / "log.txt").read_text()
    assert log.count("epoch 1/2 train loss") == 1
