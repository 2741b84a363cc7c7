"""Safe checkpoints, atomic writes, resumable and deterministic runs.

The bad inputs (one `error:` line each) live in tests/test_bad_input.py, one case per input: a checkpoint that
would run code, a non-finite training loss, bad reconstruction and prep flags, a checkpoint of another shape, an
empty dataset, results missing a column or a metric, unknown scores and metrics, other reconstruction settings.
"""
import json
import os
import shutil

import pandas as pd
import pytest
import torch

from conftest import (
    Interrupting,
    assert_one_line_error,
    run_cli,
    run_ok,
    tiny_run_reconstruct_args,
    tiny_run_train_args,
)
from src.data.datasets import SignalDataset
from src.errors import UserError
from src.io import load_checkpoint, save_checkpoint
from src.ood.ood_folder import OodFolder
from src.ood.reconstructors import reconstruct_set


@pytest.fixture
def trained(tiny_run, tmp_path):
    """(files, runs): a copy of conftest's session ``tiny_run`` (run ``m``), for the tests here that write into it."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run["runs"], runs)
    return tiny_run["files"], runs


class Exploit:
    """Unpickling it runs a shell command that touches ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    """load_checkpoint refuses it unrun; reconstruct.py's error line on such a checkpoint: test_bad_input
    (checkpoint_with_python_objects)."""
    marker = tmp_path / "pwned"
    torch.save({"model": Exploit(marker)}, tmp_path / "checkpoint.pth")
    with pytest.raises(UserError, match="could run code"):
        load_checkpoint(tmp_path / "checkpoint.pth")
    assert not marker.exists()


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


def test_resume_continues_and_equals_one_go(tiny_run, tmp_path):
    """One epoch (the session's tiny run, copied) and one more resumed equal two in one go: epoch, step, best val
    loss, weights and optimizer state. Both train in the precision the first epoch recorded: --precision=auto
    measures the CPU anew in each process, and under load it may choose otherwise."""
    files = tiny_run["files"]
    shutil.copytree(tiny_run["runs"] / "m", tmp_path / "split", ignore=shutil.ignore_patterns("ood"))
    precision = f"--precision={json.loads((tmp_path / 'split' / 'config.json').read_text())['training']['precision']}"
    resumed = run_cli(*tiny_run_train_args(tmp_path, files, "split"), "--n_epochs=2", precision)
    assert "resuming" in resumed.stdout and "at epoch 2" in resumed.stdout
    run_cli(*tiny_run_train_args(tmp_path, files, "whole"), "--n_epochs=2", precision)
    split = torch.load(tmp_path / "split" / "checkpoint_last.pth", weights_only=True)
    whole = torch.load(tmp_path / "whole" / "checkpoint_last.pth", weights_only=True)
    assert split["epoch"] == whole["epoch"] == 2 and split["step"] == whole["step"]
    assert split["best_val_loss"] == pytest.approx(whole["best_val_loss"])
    for key, value in whole["model"].items():
        assert torch.allclose(split["model"][key], value, atol=1e-6), key
    assert len(split["optimizer"]["state"]) == len(whole["optimizer"]["state"]) > 0
    for a, b in zip(split["optimizer"]["state"].values(), whole["optimizer"]["state"].values()):
        assert torch.allclose(a["exp_avg"], b["exp_avg"], atol=1e-6)


def test_the_best_checkpoint_is_the_last_one_of_its_epoch(tiny_run):
    """The session's tiny run trained one epoch, which improves on no val loss at all: its best checkpoint is the
    last one, byte for byte (copied, not pickled again)."""
    run = tiny_run["runs"] / "m"
    assert (run / "checkpoint.pth").read_bytes() == (run / "checkpoint_last.pth").read_bytes()


def test_checkpoint_every_keeps_each_epochs_state(tiny_run, tmp_path):
    """--checkpoint_every=1 over two epochs: checkpoint_1.pth holds epoch 1, checkpoint_2.pth is the last one."""
    run_ok(*tiny_run_train_args(tmp_path, tiny_run["files"], "every"), "--n_epochs=2", "--checkpoint_every=1")
    folder = tmp_path / "every"
    assert torch.load(folder / "checkpoint_1.pth", weights_only=True)["epoch"] == 1
    assert (folder / "checkpoint_2.pth").read_bytes() == (folder / "checkpoint_last.pth").read_bytes()


def test_an_interrupted_set_continues_where_it_stopped(tiny_run, tmp_path):
    from src.ood.reconstructors import build_reconstructor
    from src.run import Run
    files = tiny_run["files"]
    run = Run(tiny_run["runs"], "m")  # only read
    # 10 inference steps, skip 5: start points t = 100 and 600, 9 network calls a window
    inner = build_reconstructor(run, run.load_config(), 10, 5, seed=0, device=torch.device("cpu"))
    assert len(inner.starts) == 2
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


def test_finished_sets_are_skipped_and_overwrite_starts_afresh_with_the_same_results(trained):
    """The run's sets, reconstructed by conftest's tiny_run, are skipped when asked again; --overwrite=1 redoes
    them, and the same seed gives the same results files, byte for byte. The redo is pinned to the precision the
    first run recorded: --precision=auto measures the CPU anew in each process, and under load it may choose
    otherwise."""
    files, runs = trained
    ood = runs / "m" / "ood"
    first = {p.name: p.read_bytes() for p in ood.glob("results_*.csv")}
    precision = json.loads((ood / "reconstruction.json").read_text())["precision"]
    again = run_cli(*tiny_run_reconstruct_args(runs, files))
    assert again.stdout.count("already complete") == 3
    fresh = run_cli(*tiny_run_reconstruct_args(runs, files), "--overwrite=1", f"--precision={precision}")
    assert "already complete" not in fresh.stdout
    second = {p.name: p.read_bytes() for p in ood.glob("results_*.csv")}
    assert first == second and len(first) == 3


def test_ood_detection_refuses_a_bad_n_bootstrap(tmp_path):
    result = run_cli("ood_detection.py", f"--output_dir={tmp_path}", "--model_name=m", "--n_bootstrap=x", check=False)
    assert_one_line_error(result, "n_bootstrap")


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
