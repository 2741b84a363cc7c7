"""Shared fixtures: tiny processed signal files written by the tests, and a CLI runner."""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import runpy
import shutil
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.stats import betabinom

ROOT = Path(__file__).resolve().parents[1]
TINY_NET = ["--channels=8,16", "--attention_levels=0,1"]
# The tests' 'Tone' is a made-up family with a z^2 line, which the training scripts' default front end (auto)
# would take off. The shared runs test everything else on the tone as it is; the front end has its own tests
# (test_carrier.py, test_field_carrier.py).
FRONT_END_OFF = "--carrier_recovery=off"


@pytest.fixture(scope="session", autouse=True)
def precision_cache(tmp_path_factory):
    """``--precision auto`` keeps its bf16 probe per machine (src.runtime); the suite keeps it in a folder of its
    own, shared by every test and the subprocesses they start, never in the user's ~/.cache."""
    os.environ["RFOOD_CACHE_DIR"] = str(tmp_path_factory.mktemp("rfood_cache"))


def write_processed(path: Path, signals: np.ndarray, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["dataset"] = signals.astype(np.float32)
        handle["sig_type"] = np.bytes_(name)
    return path


@pytest.fixture
def processed(tmp_path) -> dict[str, Path]:
    return make_processed(tmp_path)


@pytest.fixture(scope="module")
def processed_module(tmp_path_factory) -> dict[str, Path]:
    return make_processed(tmp_path_factory.mktemp("processed"))


def make_processed(tmp_path: Path) -> dict[str, Path]:
    """Processed files for two made-up types: 'Tone' (in) and 'Noise' (out), [24, 2, 48] each."""
    rng = np.random.default_rng(0)
    n = np.arange(48)
    files = {}
    for split in ("train", "val", "test"):
        phase = rng.uniform(0, 2 * np.pi, (24, 1))
        tone = np.stack([np.cos(0.3 * n + phase), np.sin(0.3 * n + phase)], axis=1)
        files[f"Tone_{split}"] = write_processed(tmp_path / f"Tone_raw_data_{split}.h5", tone, "Tone")
        noise = rng.standard_normal((24, 2, 48)) / np.sqrt(2)
        files[f"Noise_{split}"] = write_processed(tmp_path / f"Noise_raw_data_{split}.h5", noise, "Noise")
    return files


def tone_windows(n: int, seed: int) -> np.ndarray:
    """``n`` more windows [n, 2, 48] of :func:`make_processed`'s 'Tone': a unit tone at 0.3 rad/sample, each at a
    random phase."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (n, 1))
    samples = 0.3 * np.arange(48) + phase
    return np.stack([np.cos(samples), np.sin(samples)], axis=1)


def flag_count_bounds(n_val: int, m: int, fpr: float, level: float = 0.999) -> tuple[int, int]:
    """The central ``level`` range of how many of ``m`` new in-distribution windows score above the threshold set
    at the (1 - fpr) quantile of ``n_val`` val scores, all exchangeable (drawn alike).

    np.quantile puts the threshold between the k-th and (k+1)-th smallest val score, k = floor((n - 1)(1 - fpr))
    + 1. The chance p that a new window scores above the k-th smallest of n is Beta(n + 1 - k, k) (order
    statistics of uniforms), so the count above it is beta-binomial(m, n + 1 - k, k); the count above the
    threshold lies between that and the count above the (k+1)-th, beta-binomial(m, n - k, k + 1). Both the
    threshold's spread (n) and the new windows' (m) are in it; a plain binomial(m, fpr) would leave out the first.
    """
    k = math.floor((n_val - 1) * (1 - fpr)) + 1
    low = betabinom.ppf((1 - level) / 2, m, n_val - k, k + 1)
    return int(low), int(betabinom.ppf((1 + level) / 2, m, n_val + 1 - k, k))


def tiny_tone_run(root: Path, batch_size: int = 8, windows_per_frame: int | None = None,
                  trained: dict | None = None) -> dict:
    """A tiny run on the Tone files of :func:`make_processed` (30 epochs of 3 batches, ~10 s) that tells Tone from
    Noise; val, in and out reconstructed at 4 start points. ``windows_per_frame`` adds a ``frame_index`` to the
    files (frames of that many windows). ``trained``, another such run trained at the same ``batch_size``, lends
    its model (config.json and checkpoints) instead of training the same one again: training reads no
    ``frame_index``. Returns {"runs", "run", "data", "root"}."""
    data = make_processed(root / "data")
    if windows_per_frame:
        for path in data.values():
            with h5py.File(path, "a") as handle:
                handle["frame_index"] = np.repeat(np.arange(len(handle["dataset"]) // windows_per_frame),
                                                  windows_per_frame)
    runs = root / "runs"
    if trained is not None:
        shutil.copytree(trained["run"], runs / "tiny", ignore=shutil.ignore_patterns("ood"))
    else:
        run_ok("train_ddpm.py", f"--output_dir={runs}", "--model_name=tiny", *TINY_NET, "--figures=0", FRONT_END_OFF,
               f"--training_h5file={data['Tone_train']}", f"--validation_h5file={data['Tone_val']}",
               "--n_epochs=30", "--eval_freq=10", f"--batch_size={batch_size}", "--learning_rate=3e-3")
    run_ok("reconstruct.py", f"--output_dir={runs}", "--model_name=tiny", f"--validation_h5file={data['Tone_val']}",
           f"--in_ids={data['Tone_test']}", f"--out_ids={data['Noise_test']}", "--inference_skip_factor=32",
           "--num_inference_steps=100", f"--batch_size={batch_size}")
    return {"runs": runs, "run": runs / "tiny", "data": data, "root": root}


@pytest.fixture(scope="session")
def tone_run(tmp_path_factory) -> dict:
    """:func:`tiny_tone_run` at batch size 8, made once for the session. Read-only: tests that write into the run,
    its data or its root use :func:`copy_tone_run` of it (the ``run`` fixtures of test_field and test_score_cli)."""
    return tiny_tone_run(tmp_path_factory.mktemp("tone_run"), 8)


def copy_tone_run(base: dict, root: Path) -> dict:
    """A copy of a :func:`tiny_tone_run` (its data and runs) under ``root``, in the same dict shape."""
    shutil.copytree(base["data"]["Tone_train"].parent, root / "data")
    shutil.copytree(base["runs"], root / "runs")
    return {"runs": root / "runs", "run": root / "runs" / "tiny", "root": root,
            "data": {key: root / "data" / path.name for key, path in base["data"].items()}}


TINY_RUN_TRAIN = (*TINY_NET, "--quick_test=1", "--n_epochs=1", "--batch_size=4", "--figures=0", FRONT_END_OFF)
TINY_RUN_RECONSTRUCT = ("--inference_skip_factor=40", "--first_n=4", "--first_n_val=6")


def tiny_run_train_args(runs: Path, files: dict[str, Path], name: str = "m") -> list[str]:
    """train_ddpm.py's command line of :func:`tiny_run`'s model (run ``name`` in ``runs``)."""
    return ["train_ddpm.py", f"--output_dir={runs}", f"--model_name={name}", *TINY_RUN_TRAIN,
            f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}"]


def tiny_run_reconstruct_args(runs: Path, files: dict[str, Path], name: str = "m") -> list[str]:
    """reconstruct.py's command line of :func:`tiny_run`: val (Tone val), in (Tone test), out (Noise test)."""
    return ["reconstruct.py", f"--output_dir={runs}", f"--model_name={name}",
            f"--validation_h5file={files['Tone_val']}", f"--in_ids={files['Tone_test']}",
            f"--out_ids={files['Noise_test']}", *TINY_RUN_RECONSTRUCT]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """{"files", "runs"}: run ``m`` of the tiny UNet, one quick epoch (2 batches of 4) on the Tone files of
    :func:`make_processed` (``files``), val/in/out reconstructed at 3 start points (:data:`TINY_RUN_RECONSTRUCT`).
    Made once for the session and shared by test_bad_input, test_fuzz and test_reliability: read-only, so a test
    that writes into the run works on a copy of ``runs``."""
    root = tmp_path_factory.mktemp("tiny_run")
    files, runs = make_processed(root / "data"), root / "runs"
    run_ok(*tiny_run_train_args(runs, files))
    run_ok(*tiny_run_reconstruct_args(runs, files))
    return {"files": files, "runs": runs}


FAMILY_LEARNING_RATE = 3e-4
TINY_FAMILIES = {  # every model family at tiny size, with its training script and flags
    "unet": ("train_ddpm.py", "--model_type=small", "--channels=8,16"),
    "wavenet": ("train_ddpm.py", "--model_type=wavenet", "--residual_layers=3", "--residual_channels=8"),
    "autoencoder": ("train_autoencoder.py", "--model_type=autoencoder", "--channels=8,8", "--latent_channels=2"),
    "autoencoder_no_figures": ("train_autoencoder.py", "--model_type=autoencoder", "--channels=8,8",
                               "--latent_channels=2", "--figures=0"),
    "vqvae": ("train_vqvae.py", "--channels=8,8", "--embedding_dim=4", "--num_embeddings=16", "--eval_freq=1",
              "--cache_data=0", "--spatial_dimension=1"),
    "ldm": ("train_ddpm.py", "--model_type=small", "--channels=8,16", "--vqvae_checkpoint={runs}/vqvae/checkpoint.pth"),
}


@pytest.fixture(scope="session")
def family_runs(tmp_path_factory) -> Path:
    """Every model family of :data:`TINY_FAMILIES` trained once for the session: 2 quick-test epochs
    (2 batches of 8 each) at :data:`FAMILY_LEARNING_RATE` on the Tone files of :func:`make_processed`
    (the same signals as the ``processed`` fixtures)."""
    files = make_processed(tmp_path_factory.mktemp("family_data"))
    runs = tmp_path_factory.mktemp("family_runs")
    for name, (script, *flags) in TINY_FAMILIES.items():
        run_ok(script, f"--output_dir={runs}", f"--model_name={name}", *(f.format(runs=runs) for f in flags),
               FRONT_END_OFF, f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}",
               "--n_epochs=2", "--batch_size=8", "--quick_test=1", f"--learning_rate={FAMILY_LEARNING_RATE}")
    return runs


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command line from the repo root with this interpreter; ``check`` wants exit code 0.

    Without ``check`` the run is expected to stop at an error, before any heavy work: it runs in this
    process (:func:`run_inline`), which gives the same exit code and stderr without starting Python
    and importing torch again.
    """
    if not check:
        return run_inline(*args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_ok(*args: str) -> subprocess.CompletedProcess:
    """Run a command line that must succeed in this process (:func:`run_inline`): no new interpreter and no second
    import of torch and the scripts' libraries (about 6 s a command on 2 cores). The shared fixtures' training and
    reconstruction use it; tests whose point is a command line in a process of its own use :func:`run_cli`."""
    result = run_inline(*args)
    if result.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_inline(*args: str) -> subprocess.CompletedProcess:
    """Run a command line inside this process, as ``python ARGS`` would run it (``-m module`` too).

    The script runs as ``__main__`` with its own error boundary (``src.cli.run_main``), so exit code
    and stderr are what a user sees, without starting an interpreter and importing torch again: the
    bad-input cases use it, as they stop before any heavy work, and the shared fixtures through :func:`run_ok`.
    Other tests use :func:`run_cli`.
    """
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_argv, saved_cwd, saved_path = sys.argv, os.getcwd(), list(sys.path)
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if args[0] == "-m":
                    sys.argv = [args[1], *args[2:]]
                    with warnings.catch_warnings():  # runpy's note that an earlier test imported the module
                        warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
                        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
                else:
                    sys.argv = list(args)
                    runpy.run_path(str(ROOT / args[0]), run_name="__main__")
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except BaseException:  # what a real run would print as a traceback
                traceback.print_exc()
                code = 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        logging.getLogger().handlers.clear()  # the script's handlers wrote to the captured streams
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr starting with 'error:', naming each fragment."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class OracleDenoiser(torch.nn.Module):
    """An ideal epsilon model: the true noise of x_t, given the clean signals x0 [B, C, L].

    Works on any stack of chains [k * B, C, L] that repeats the same B signals.
    """

    def __init__(self, x0: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.abar = x0, alphas_cumprod

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t][:, None, None]
        clean = self.x0.repeat(len(x) // len(self.x0), 1, 1)
        return (x - abar.sqrt() * clean) / (1 - abar).sqrt()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast as two here, and does not spin against other work on a busy machine.
    A module uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interrupting:
    """Wraps a reconstructor; raises after ``calls`` batches and records the indices it was given."""

    def __init__(self, inner, calls=None):
        self.inner, self.calls, self.seen = inner, calls, []
        self.starts, self.settings = inner.starts, inner.settings

    def errors(self, x0, indices):
        if self.calls is not None and len(self.seen) >= self.calls:
            raise KeyboardInterrupt
        self.seen.append(indices.tolist())
        return self.inner.errors(x0, indices)
