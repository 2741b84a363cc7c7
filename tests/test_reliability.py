"""Bad inputs, safe checkpoints, atomic writes, training faults, resumable and deterministic runs."""
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_NET, assert_one_line_error, run_cli, write_processed
from src.data.datasets import SignalDataset
from src.errors import UserError
from src.io import load_checkpoint, save_checkpoint
from src.ood.ood_folder import OodFolder
from src.ood.reconstructors import reconstruct_set


def train(files, runs, name="m", *extra, check=True):
    return run_cli("train_ddpm.py", f"--output_dir={runs}", f"--model_name={name}", *TINY_NET,
                   f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}",
                   "--batch_size=8", "--n_epochs=1", *extra, check=check)


def reconstruct(files, runs, name="m", *extra, check=True):
    return run_cli("reconstruct.py", f"--output_dir={runs}", f"--model_name={name}",
                   f"--validation_h5file={files['Tone_val']}", f"--in_ids={files['Tone_test']}",
                   f"--out_ids={files['Noise_test']}", "--inference_skip_factor=33", "--first_n=5", "--first_n_val=6",
                   "--batch_size=2", *extra, check=check)


@pytest.fixture(scope="module")
def trained(processed_module, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    train(processed_module, runs)
    return processed_module, runs


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rfood_pwned",))


def test_a_checkpoint_that_would_run_code_is_refused(trained, tmp_path):
    files, runs = trained
    evil = runs / "evil"
    shutil.copytree(runs / "m", evil, ignore=shutil.ignore_patterns("ood"))
    torch.save({"model": Exploit()}, evil / "checkpoint.pth")
    with pytest.raises(UserError, match="could run code"):
        load_checkpoint(evil / "checkpoint.pth")
    assert_one_line_error(reconstruct(files, runs, "evil", check=False), "refusing to load", "checkpoint.pth")
    assert not os.path.exists("/tmp/rfood_pwned")


def test_a_crash_during_a_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def crash(state, file):
        with open(file, "wb") as handle:
            handle.write(b"half a checkpoi")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]  # no temp file left behind


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(processed, tmp_path):
    train(processed, tmp_path)
    huge = write_processed(tmp_path / "Huge_raw_data_train.h5", np.full((16, 2, 48), 1e30), "Huge")
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m", *TINY_NET,
                     f"--training_h5file={huge}", f"--validation_h5file={processed['Tone_val']}", "--batch_size=8",
                     "--n_epochs=2", check=False)
    assert_one_line_error(result, "training loss became", "lower --learning_rate")
    assert torch.load(tmp_path / "m" / "checkpoint_last.pth", weights_only=True)["epoch"] == 1


def test_two_plus_two_epochs_equal_four(processed, tmp_path):
    train(processed, tmp_path, "split", "--n_epochs=2")
    train(processed, tmp_path, "split", "--n_epochs=4")
    train(processed, tmp_path, "whole", "--n_epochs=4")
    split = torch.load(tmp_path / "split" / "checkpoint_last.pth", weights_only=True)
    whole = torch.load(tmp_path / "whole" / "checkpoint_last.pth", weights_only=True)
    assert split["epoch"] == whole["epoch"] == 4 and split["best_val_loss"] == pytest.approx(whole["best_val_loss"])
    for key, value in whole["model"].items():
        assert torch.allclose(split["model"][key], value, atol=1e-6), key
    for a, b in zip(split["optimizer"]["state"].values(), whole["optimizer"]["state"].values()):
        assert torch.allclose(a["exp_avg"], b["exp_avg"], atol=1e-6)


def test_same_seed_same_results_files(trained, tmp_path):
    files, runs = trained
    reconstruct(files, runs, "m", "--overwrite=1")
    first = {p.name: p.read_bytes() for p in (runs / "m" / "ood").glob("results_*.csv")}
    reconstruct(files, runs, "m", "--overwrite=1")
    second = {p.name: p.read_bytes() for p in (runs / "m" / "ood").glob("results_*.csv")}
    assert first == second and len(first) == 3


class Interrupting:
    """Wraps a reconstructor; raises after ``calls`` batches and counts the signals it was given."""

    def __init__(self, inner, calls=None):
        self.inner, self.calls, self.seen = inner, calls, []
        self.starts, self.settings = inner.starts, inner.settings

    def errors(self, x0, indices):
        if self.calls is not None and len(self.seen) >= self.calls:
            raise KeyboardInterrupt
        self.seen.append(indices.tolist())
        return self.inner.errors(x0, indices)


def test_an_interrupted_set_continues_where_it_stopped(trained, tmp_path):
    from src.ood.reconstructors import build_reconstructor
    from src.run import Run
    files, runs = trained
    run = Run(runs, "m")
    inner = build_reconstructor(run, run.load_config(), 100, 33, seed=0, device=torch.device("cpu"))
    dataset = SignalDataset(files["Tone_test"], first_n=9)
    whole = reconstruct_set(inner, dataset, "in", batch_size=2)

    stopping = Interrupting(inner, calls=2)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_set(stopping, dataset, "in", batch_size=2, folder=OodFolder(tmp_path))
    partial = next(OodFolder(tmp_path).partial_dir.glob("*.csv"))
    with open(partial, "a") as handle:
        handle.write("Tone_raw_data_test:4,in,To")  # a line cut by the crash
    continuing = Interrupting(inner)
    resumed = reconstruct_set(continuing, dataset, "in", batch_size=2, folder=OodFolder(tmp_path))
    assert sorted(i for batch in continuing.seen for i in batch) == [4, 5, 6, 7, 8]  # 0-3 were done
    pd.testing.assert_frame_equal(resumed, whole, rtol=1e-5)


def test_finished_sets_are_skipped_and_overwrite_starts_afresh(trained):
    files, runs = trained
    reconstruct(files, runs, "m", "--overwrite=1")
    again = reconstruct(files, runs, "m")
    assert again.stdout.count("already complete") == 3
    fresh = reconstruct(files, runs, "m", "--overwrite=1")
    assert "already complete" not in fresh.stdout
    clash = reconstruct(files, runs, "m", "--reconstruction_mode=ddim", check=False)
    assert_one_line_error(clash, "other settings", "mode", "--overwrite=1")


@pytest.mark.parametrize("flag, fragment", [
    ("--first_n=0", "--first_n"), ("--batch_size=0", "--batch_size"), ("--inference_skip_factor=0", "skip_factor"),
    ("--inference_skip_factor=100", "--inference_skip_factor must lie in 1..99"), ("--model_type=huge", "huge"),
])
def test_bad_reconstruction_flags(trained, flag, fragment):
    files, runs = trained
    assert_one_line_error(reconstruct(files, runs, "m", flag, check=False), fragment)


def test_a_checkpoint_of_another_shape_is_refused(trained):
    files, runs = trained
    other = runs / "other"
    shutil.copytree(runs / "m", other, ignore=shutil.ignore_patterns("ood"))
    config = (other / "config.json").read_text().replace('"channels": [\n      8,\n      16\n    ]',
                                                          '"channels": [\n      8,\n      24\n    ]')
    assert "24" in config
    (other / "config.json").write_text(config)
    assert_one_line_error(reconstruct(files, runs, "other", check=False), "does not fit", "checkpoint.pth")


def test_an_empty_dataset_is_refused(processed, tmp_path):
    empty = write_processed(tmp_path / "Empty_raw_data_train.h5", np.zeros((0, 2, 48)), "Empty")
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m",
                     f"--training_h5file={empty}", f"--validation_h5file={processed['Tone_val']}", check=False)
    assert_one_line_error(result, "Empty_raw_data_train.h5", "empty")


def test_ood_results_missing_a_column_are_refused(trained, tmp_path):
    files, runs = trained
    reconstruct(files, runs, "m", "--overwrite=1")
    ood = runs / "m" / "ood"
    frame = pd.read_csv(ood / "results_Noise.csv")
    frame.drop(columns=["filename"]).to_csv(ood / "results_Noise.csv", index=False)
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=m", check=False)
    assert_one_line_error(result, "results_Noise.csv", "filename")


@pytest.mark.parametrize("flags, fragment", [
    (["--val_split=1.5"], "--val_split"), (["--num_samples=100000"], "--num_samples=100000"),
])
def test_bad_prep_flags(tmp_path, flags, fragment):
    run_cli("-m", "src.data.synthetic", f"--out={tmp_path / 'raw'}", "--n_frames=6", "--frame_length=128",
            "--families=QPSK")
    result = run_cli("src/data/signal_trim_and_unpack.py", f"--data_root={tmp_path / 'raw'}",
                     f"--new_data_root={tmp_path / 'out'}", "--trim_length=32", *flags, check=False)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.h5"))


def test_ood_detection_refuses_unknown_scores_metrics_and_results_without_the_metric(trained):
    files, runs = trained
    reconstruct(files, runs, "m", "--overwrite=1")
    for flag, fragment in (("--metric=mse,foo", "foo"), ("--score=best", "best"), ("--n_bootstrap=x", "n_bootstrap")):
        result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=m", flag, check=False)
        assert_one_line_error(result, fragment)
    val = runs / "m" / "ood" / "results_val.csv"
    pd.read_csv(val).drop(columns=["env"]).to_csv(val, index=False)  # as written before env existed
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=m", "--metric=mse,env", check=False)
    assert_one_line_error(result, "'env'", "--overwrite=1")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomically_written_files_get_the_mode_a_plain_open_would(tmp_path, umask, mode):
    from src.io import save_json
    old = os.umask(umask)
    try:
        save_json({"a": 1}, tmp_path / "reconstruction.json")
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "reconstruction.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode
