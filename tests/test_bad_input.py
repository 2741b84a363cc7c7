"""Every row of the bad-input table in docs/troubleshooting.md, through the real command lines.

Each case writes one bad input, runs the script's command line (in this process, through the same
``__main__`` entry and error boundary, to spare an interpreter start per case; one bad input per script
also runs in a new interpreter, below, where a warning printed at import would show) and checks the
table's promise:
exit code 2, exactly one line on stderr starting with ``error:``, no traceback, the message names
the input (file or flag) and, where the table says so, what to do. Cases that touch a run work on
a copy of one tiny trained and reconstructed run; the files it already holds (config.json,
checkpoints, results) must be byte-identical afterwards. Every row of the table has a case (the ids
start with the row's key, :data:`ROW_KEYS`), checked against the table itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import sigmf
import torch

from conftest import ROOT, TINY_RUN_TRAIN, run_inline, tiny_run_reconstruct_args, write_processed

FRAME, TRIM = 64, 32  # raw frames and windows of the prep cases
TRAIN_FLAGS = TINY_RUN_TRAIN  # the flags of conftest's tiny_run
DETECT_FLAGS = ("--n_bootstrap=0", "--report=0")
KEPT = ("config.json", "checkpoint*.pth", "ood/results_*.csv", "ood/reconstruction.json")


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    """An output_dir with run ``m``: one quick epoch of the tiny UNet, val/in/out reconstructed at 3 start points
    (conftest's session ``tiny_run``, trained on ``tiny_run["files"]``).

    Cases never change it; they copy it (``Case.runs``)."""
    return tiny_run["runs"]


@dataclass
class Case:
    """What one case may use: the fixture files, the trained output_dir (copied on first use) and a tmp folder."""
    files: dict[str, Path]
    trained: Path
    tmp: Path
    absent: list[Path] = field(default_factory=list)  # outputs the failing command must not create

    @property
    def runs(self) -> Path:
        copy = self.tmp / "runs"
        if not copy.exists():
            shutil.copytree(self.trained, copy)
        return copy

    @property
    def run(self) -> Path:
        return self.runs / "m"

    @property
    def ood(self) -> Path:
        return self.run / "ood"

    def kept_files(self) -> dict[Path, bytes]:
        """Everything the copied run already holds that a failing command must leave as it is."""
        if not (self.tmp / "runs").exists():
            return {}
        return {path: path.read_bytes() for pattern in KEPT for path in sorted(self.run.glob(pattern))}

    # ------------------------------------------------------------------------------------------ commands

    def train(self, *flags: str, training: Path | None = None, output_dir: Path | None = None) -> list[str]:
        return ["train_ddpm.py", f"--output_dir={output_dir or self.tmp / 'fresh'}", "--model_name=m", *TRAIN_FLAGS,
                f"--training_h5file={training or self.files['Tone_train']}",
                f"--validation_h5file={self.files['Tone_val']}", *flags]

    def reconstruct(self, *flags: str) -> list[str]:
        return [*reconstruct_args(self.runs, self.files), *flags]

    def detect(self, *flags: str) -> list[str]:
        return ["ood_detection.py", f"--output_dir={self.runs}", "--model_name=m", *DETECT_FLAGS, *flags]

    def score(self, *inputs: Path, flags: tuple[str, ...] = ()) -> list[str]:
        return ["score.py", f"--output_dir={self.runs}", "--model_name=m", "--batch_size=8",
                f"--input={','.join(str(path) for path in inputs or [self.files['Tone_test']])}", *flags]

    def prep(self, *flags: str) -> list[str]:
        out = self.tmp / "out"
        self.absent.append(out)
        return ["src/data/signal_trim_and_unpack.py", f"--data_root={self.tmp / 'raw'}", f"--new_data_root={out}",
                f"--trim_length={TRIM}", f"--frame_length={FRAME}", *flags]

    # ------------------------------------------------------------------------------------------ inputs

    def raw_h5(self, frames: np.ndarray | None = None, **datasets: np.ndarray) -> Path:
        """A raw ``X_raw_data.h5`` below ``raw/`` (``dataset`` = ``frames`` unless other entries are given)."""
        path = self.tmp / "raw" / "X_raw_data.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as handle:
            for key, value in (datasets or {"dataset": frames}).items():
                handle[key] = value
        return path

    def sigmf(self, data: bytes, datatype: str = "cf32_le", **extra_global) -> Path:
        """``raw/X.sigmf-meta`` + ``raw/X.sigmf-data`` holding ``data``, written by sigmf (with its hash)."""
        folder = self.tmp / "raw"
        folder.mkdir(parents=True, exist_ok=True)
        data_path = folder / "X.sigmf-data"
        data_path.write_bytes(data)
        recording = sigmf.SigMFFile(global_info={"core:datatype": datatype, "core:sample_rate": 1e6, **extra_global},
                                    data_file=data_path)
        recording.add_capture(0)
        recording.tofile(folder / "X")
        return folder / "X.sigmf-meta"

    def npy(self, array: np.ndarray) -> Path:
        path = self.tmp / "raw" / "X.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array, allow_pickle=True)
        return path

    def synthetic(self, *flags: str) -> list[str]:
        out = self.tmp / "generated"
        self.absent.append(out)
        return ["-m", "src.data.synthetic", f"--out={out}", "--n_frames=4", "--frame_length=64", *flags]

    def processed(self, name: str, signals: np.ndarray) -> Path:
        return write_processed(self.tmp / f"{name}_raw_data_train.h5", signals, name)


def reconstruct_args(runs: Path, files: dict[str, Path]) -> list[str]:
    return tiny_run_reconstruct_args(runs, files)


def stream(n_samples: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(n_samples) + 1j * rng.standard_normal(n_samples)).astype(np.complex64)


def frames(n_frames: int = 5) -> np.ndarray:
    return stream(n_frames * FRAME).reshape(n_frames, FRAME)


class Payload:
    """An object whose unpickling runs code (touches ``marker``): a checkpoint holding one needs a full unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------------------------- the cases
# Each builder gets a Case, writes its bad input and returns (command line, fragments the error line must hold).
# The ids start with the table row they cover.

CASES = []


def case(case_id: str, *args):
    def register(build):
        CASES.append(pytest.param(build, args, id=case_id))
        return build
    return register


# a missing or unreadable file
@case("missing_file-train")
def _(c):
    return c.train(training=c.tmp / "nope.h5"), ["signal file not found", "nope.h5"]


@case("missing_file_sigmf_data-prep")
def _(c):
    c.sigmf(stream(3 * FRAME).tobytes())
    (c.tmp / "raw" / "X.sigmf-data").unlink()
    return c.prep(), ["X.sigmf-meta", "its dataset X.sigmf-data is missing", "put it beside the metadata file"]


@case("unreadable_file-train")
def _(c):
    (c.tmp / "text.h5").write_text("not hdf5")
    return c.train(training=c.tmp / "text.h5"), ["cannot read", "text.h5", "as HDF5", "check the path"]


@case("unreadable_file-prep")
def _(c):
    (c.tmp / "raw").mkdir()
    (c.tmp / "raw" / "X_raw_data.h5").write_text("not hdf5")
    return c.prep(), ["cannot read", "X_raw_data.h5", "as HDF5"]


@case("unreadable_file_sigmf_meta-prep")
def _(c):
    (c.tmp / "raw").mkdir()
    (c.tmp / "raw" / "X.sigmf-meta").write_text("{not json")
    (c.tmp / "raw" / "X.sigmf-data").write_bytes(stream(3 * FRAME).tobytes())
    return c.prep(), ["cannot read", "X.sigmf-meta", "as a SigMF recording", "fix or re-export it"]


# an h5 file without `dataset`
@case("no_dataset-prep")
def _(c):
    c.raw_h5(sig_type=np.bytes_("X"))
    return c.prep(), ["X_raw_data.h5", "has no 'dataset' array", "complex [N_frames, L]"]


@case("no_dataset-train")
def _(c):
    with h5py.File(c.tmp / "other.h5", "w") as handle:
        handle["other"] = np.zeros(3)
    return c.train(training=c.tmp / "other.h5"), ["other.h5", "has no `dataset` entry", "processed signal file"]


# raw data that is real-valued or not [frames, samples]
@case("raw_real_valued-prep")
def _(c):
    c.raw_h5(frames().real)
    return c.prep(), ["X_raw_data.h5", "'dataset' is float32, not complex", "complex IQ"]


@case("raw_rank3-prep")
def _(c):
    c.raw_h5(np.ones((5, 2, FRAME), np.complex64))
    return c.prep(), ["X_raw_data.h5", "expected rank 2 [N_frames, L]"]


# processed data that is not [N, 2, L]
@case("processed_not_N_2_L-train")
def _(c):
    return c.train(training=c.processed("Flat", np.zeros((4, 48)))), [
        "Flat_raw_data_train.h5", "`dataset` has shape (4, 48), expected [N, 2, L]", "signal_trim_and_unpack.py"]


# NaN or Inf in a signal
@case("nan_frame-prep")
def _(c):
    bad = frames()
    bad[2, 7] = np.nan
    c.raw_h5(bad)
    return c.prep(), ["X_raw_data.h5", "frame 2 holds NaN or Inf"]


@case("inf_window-train", np.inf)
@case("nan_window-train", np.nan)
def _(c, value):
    signals = np.random.default_rng(0).standard_normal((6, 2, 48))
    signals[3, 1, 5] = value
    return c.train(training=c.processed("Bad", signals)), ["Bad_raw_data_train.h5", "window 3 holds NaN or Inf"]


# an empty dataset
@case("empty_dataset-train")
def _(c):
    return c.train(training=c.processed("Empty", np.zeros((0, 2, 48)))), [
        "Empty_raw_data_train.h5", "`dataset` is empty"]


# --trim_length longer than the frames
@case("trim_length_too_long-prep")
def _(c):
    c.raw_h5(frames())
    return c.prep("--trim_length=100"), ["--trim_length 100", f"{FRAME} samples", "X_raw_data.h5"]


# --num_samples larger than the windows available, or below the number of splits
@case("num_samples_too_large-prep")
def _(c):
    c.raw_h5(frames())
    return c.prep("--num_samples=1000"), ["--num_samples=1000", "only 10 windows", "lower --num_samples"]


@case("num_samples_below_splits-prep")
def _(c):
    c.raw_h5(frames())
    return c.prep("--num_samples=2"), ["--num_samples", "at least 3", "got 2"]


# --val_split outside (0, 1), --test_split outside [0, 1)
@case("val_split_1.5-prep", "--val_split=1.5", "argument --val_split: must lie strictly between 0 and 1")
@case("val_split_0-prep", "--val_split=0", "argument --val_split: must lie strictly between 0 and 1")
@case("test_split_1-prep", "--test_split=1", "--test_split must lie in [0, 1)")
@case("test_split_negative-prep", "--test_split=-0.1", "--test_split must lie in [0, 1)")
def _(c, flag, message):
    c.raw_h5(frames())
    return c.prep(flag), [message]


# --first_n, --batch_size <= 0
@case("first_n_0-reconstruct", "reconstruct", "--first_n=0")
@case("batch_size_0-reconstruct", "reconstruct", "--batch_size=0")
def _(c, script, flag):
    name = flag.split("=")[0]
    return getattr(c, script)(flag), [f"argument {name}: must be a positive integer"]


# --inference_skip_factor <= 0 or >= the number of steps
@case("skip_factor_0-reconstruct")
def _(c):
    return c.reconstruct("--inference_skip_factor=0"), ["argument --inference_skip_factor: must be a positive integer"]


@case("skip_factor_100-reconstruct")
def _(c):
    return c.reconstruct("--inference_skip_factor=100"), [
        "--inference_skip_factor must lie in 1..99 for 100 inference steps"]


# an out file that is also the in (or val) file
@case("out_is_in-reconstruct")
def _(c):
    return c.reconstruct(f"--out_ids={c.files['Tone_test']}"), [
        "Tone_raw_data_test.h5 is given both as --in_ids and in --out_ids"]


@case("out_is_val-reconstruct")
def _(c):
    return c.reconstruct(f"--out_ids={c.files['Tone_val']}"), [
        "Tone_raw_data_val.h5 is the validation file and also an out set", "choose another out file"]


# an unknown --model_type
@case("unknown_model_type-train")
def _(c):
    return c.train("--model_type=huge"), ["--model_type", "'huge'", "small", "wavenet"]


@case("unknown_model_type-reconstruct")
def _(c):
    return c.reconstruct("--model_type=huge"), ["--model_type", "'huge'", "small", "wavenet"]


# a flag that contradicts the run's config.json
@case("flag_contradicts_config-reconstruct")
def _(c):
    return c.reconstruct("--beta_end=0.03"), ["--beta_end=0.03 (config: 0.0195) clash with", "config.json"]


@case("flag_contradicts_config-train_again")
def _(c):
    return c.train("--beta_end=0.03", output_dir=c.runs), [
        "--beta_end=0.03 (config: 0.0195) clash with", "config.json", "use another --model_name"]


# a --carrier_recovery that contradicts the run's (reconstruct.py, score.py, a training script resuming the run),
# or any with images
@case("carrier_recovery_contradicts_the_run-reconstruct", "reconstruct")
@case("carrier_recovery_contradicts_the_run-score", "score")
@case("carrier_recovery_contradicts_the_run-train_again", "train")
def _(c, script):
    command = {"reconstruct": lambda: c.reconstruct("--carrier_recovery=power4"),
               "score": lambda: c.score(flags=("--carrier_recovery=power4",)),
               "train": lambda: c.train("--carrier_recovery=power4", output_dir=c.runs)}[script]()
    return command, ["--carrier_recovery=power4: the run was trained with --carrier_recovery=off", "drop the flag"]


@case("carrier_recovery_with_images-train")
def _(c):
    return c.train("--spatial_dimension=2", "--carrier_recovery=power4", training=c.tmp / "Img_train.csv"), [
        "--carrier_recovery=power4 applies to RF signals only, not to --spatial_dimension=2", "drop the flag"]


# `--beta_start` above `--beta_end`, or either outside (0, 1): the noise schedule is refused
@case("beta_start_above_beta_end-train", "--beta_start=0.03", "--beta_end=0.01")
@case("beta_end_not_below_1-train", "--beta_end=1.5")
@case("beta_start_not_above_0-train", "--beta_start=0")
def _(c, *flags):
    return c.train(*flags), ["--beta_start", "--beta_end", "noise schedule"]


@case("beta_start_above_beta_end-reconstruct")
def _(c):
    return c.reconstruct("--beta_start=0.03", "--beta_end=0.01"), ["--beta_start", "--beta_end", "noise schedule"]


@case("snr_shift_0-train", "train", "--snr_shift=0", "--snr_shift=0.0")
@case("b_scale_negative-train", "train", "--b_scale=-1", "--b_scale=-1.0")
@case("snr_shift_negative-reconstruct", "reconstruct", "--snr_shift=-2", "--snr_shift=-2.0")
@case("b_scale_0-reconstruct", "reconstruct", "--b_scale=0", "--b_scale=0.0")
def _(c, script, flag, shown):
    return getattr(c, script)(flag), [f"{shown} makes no noise schedule", "it must be positive"]


# a checkpoint of another model type or shape
@case("checkpoint_of_another_shape-reconstruct", "channels", [8, 24])
@case("checkpoint_of_another_type-reconstruct", None, {
    "model_type": "wavenet", "in_channels": 2, "residual_layers": 2, "residual_channels": 8,
    "dilation_cycle_length": 2})
def _(c, key, value):
    config = json.loads((c.run / "config.json").read_text())
    if key is None:
        config["network"] = value
    else:
        config["network"][key] = value
    (c.run / "config.json").write_text(json.dumps(config, indent=2))
    return c.reconstruct(), ["checkpoint.pth does not fit the network in its run's config",
                             "use a checkpoint of this run"]


# a checkpoint holding Python objects
@case("checkpoint_with_python_objects-reconstruct")
def _(c):
    marker = c.tmp / "pwned"
    torch.save({"model": Payload(marker)}, c.run / "checkpoint.pth")
    c.absent.append(marker)  # the code in the pickle never ran
    return c.reconstruct(), ["refusing to load", "checkpoint.pth", "holds Python objects", "could run code"]


# a truncated or corrupt checkpoint (tests/test_fuzz.py tries many more)
@case("checkpoint_truncated-reconstruct", 0.5)
@case("checkpoint_of_random_bytes-reconstruct", None)
def _(c, keep):
    path = c.run / "checkpoint.pth"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)] if keep else np.random.default_rng(0).bytes(2000))
    return c.reconstruct(), ["checkpoint.pth is unreadable, truncated or corrupt", "use another checkpoint"]


# --vqvae_checkpoint without vqvae_config.json beside it
@case("vqvae_checkpoint_without_config-train")
def _(c):
    lonely = c.tmp / "lonely" / "checkpoint.pth"
    lonely.parent.mkdir()
    shutil.copy(c.trained / "m" / "checkpoint.pth", lonely)
    return c.train(f"--vqvae_checkpoint={lonely}"), ["no vqvae_config.json beside", "lonely"]


# a run folder without config.json (or a VQ-VAE run given to reconstruct)
@case("run_without_config-reconstruct")
def _(c):
    return c.reconstruct("--model_name=none"), ["no config.json in", "none", "--model_name"]


@case("vqvae_run-reconstruct")
def _(c):
    (c.runs / "vq").mkdir()
    (c.runs / "vq" / "vqvae_config.json").write_text("{}")
    return c.reconstruct("--model_name=vq"), ["vq is a VQ-VAE run", "the first stage of an LDM", "--vqvae_checkpoint"]


# an ood folder without val (or in, or out) results
@case("no_val_results-ood_detection", "results_val.csv", "--run_val=1")
@case("no_in_results-ood_detection", "results_in.csv", "--run_in=1")
@case("no_out_results-ood_detection", "results_Noise.csv", "--out_ids")
def _(c, name, fix):
    (c.ood / name).unlink()
    return c.detect(), ["ood has no", name.replace("Noise", "<Name>"), f"run reconstruct.py with {fix}"]


# results files missing columns or rows
@case("results_missing_a_column-ood_detection")
def _(c):
    results = c.ood / "results_Noise.csv"
    pd.read_csv(results).drop(columns=["filename"]).to_csv(results, index=False)
    return c.detect(), ["results_Noise.csv lacks columns ['filename']", "reconstruct.py"]


@case("results_missing_rows-ood_detection")
def _(c):
    results = c.ood / "results_Noise.csv"
    pd.read_csv(results).iloc[1:].to_csv(results, index=False)
    return c.detect(), ["results for Noise miss some (signal, t) rows", "run reconstruct.py again"]


@case("results_without_rows-ood_detection")
def _(c):
    results = c.ood / "results_Noise.csv"
    pd.read_csv(results).iloc[:0].to_csv(results, index=False)
    return c.detect(), ["results_Noise.csv holds no rows", "run reconstruct.py again"]


# earlier results made with other reconstruction settings
@case("other_reconstruction_settings-reconstruct")
def _(c):
    return c.reconstruct("--reconstruction_mode=ddim"), [
        "ood holds results made with other settings (mode differ)", "pass --overwrite=1"]


# an output folder that cannot be written
@case("output_dir_is_a_file-train")
def _(c):
    (c.tmp / "a_file").write_text("not a folder")
    return c.train(output_dir=c.tmp / "a_file"), ["cannot create", "a_file", "choose a writable --output_dir"]


# a real-valued, multi-channel, truncated or checksum-failing SigMF recording; a real or object .npy
@case("sigmf_real_valued-prep")
def _(c):
    c.sigmf(stream(3 * FRAME).real.tobytes(), "rf32_le")
    return c.prep(), ["X.sigmf-meta", "real-valued", "complex datatype"]


@case("sigmf_multi_channel-prep")
def _(c):
    c.sigmf(stream(4 * FRAME).tobytes(), **{"core:num_channels": 2})
    return c.prep(), ["X.sigmf-meta", "2 channels", "single-channel", "split the channels"]


@case("sigmf_truncated-prep")
def _(c):
    c.sigmf(stream(3 * FRAME).tobytes())
    data = c.tmp / "raw" / "X.sigmf-data"
    data.write_bytes(data.read_bytes()[:-3])
    return c.prep(), ["X.sigmf-meta", "integer number of samples", "fix or re-export it"]


@case("sigmf_checksum_fails-prep")
def _(c):
    c.sigmf(stream(3 * FRAME).tobytes())
    data = c.tmp / "raw" / "X.sigmf-data"
    data.write_bytes(data.read_bytes()[::-1])
    return c.prep(), ["X.sigmf-meta", "hash", "fix or re-export it"]


@case("npy_real-prep")
def _(c):
    c.npy(frames().real)
    return c.prep(), ["X.npy", "not complex IQ", "save a complex array"]


@case("npy_object-prep")
def _(c):
    c.npy(np.array([stream(FRAME), "text"], dtype=object))
    return c.prep(), ["cannot read", "X.npy", "np.save"]


# a recording shorter than one --frame_length
@case("sigmf_shorter_than_a_frame-prep")
def _(c):
    c.sigmf(stream(FRAME - 1).tobytes())
    return c.prep(), ["X.sigmf-meta", f"{FRAME - 1} samples", f"--frame_length {FRAME}"]


@case("npy_shorter_than_a_frame-prep")
def _(c):
    c.npy(stream(FRAME - 1))
    return c.prep(), ["X.npy", f"{FRAME - 1} samples", f"--frame_length {FRAME}"]


# an unknown --score or --metric
@case("unknown_metric-ood_detection", "--metric=mse,foo", ["argument --metric/--score_metric",
                                                            "unknown metric(s) ['foo']", "choose from mse,mae,env,lsd"])
@case("unknown_score-ood_detection", "--score=best", ["argument --score", "'best'", "pooled"])
def _(c, flag, fragments):
    return c.detect(flag), fragments


# results written before a metric existed
@case("results_without_a_metric-ood_detection")
def _(c):
    val = c.ood / "results_val.csv"
    pd.read_csv(val).drop(columns=["env"]).to_csv(val, index=False)
    return c.detect("--metric=mse,env"), ["results for val have no 'env' column (present: mse, mae, lsd)",
                                          "re-run reconstruct.py with --overwrite=1"]


# NaN or infinite val errors (diverged reconstructions)
@case("infinite_val_errors-ood_detection")
def _(c):
    val = c.ood / "results_val.csv"
    frame = pd.read_csv(val)
    last_t = frame["t"].max()
    frame.loc[frame.index[frame["t"] == last_t][0], "mse"] = np.inf
    frame.to_csv(val, index=False)
    return c.detect("--metric=mse"), [f"val errors are NaN or infinite at t = [{last_t}]",
                                      "drop them with --auto_t=1 or --max_t"]


# score.py on a run without reconstruction.json, or an input whose windows are not the run's length
@case("no_reconstruction_json-score")
def _(c):
    (c.ood / "reconstruction.json").unlink()
    return c.score(), ["reconstruction.json not found", "run reconstruct.py on it first"]


@case("input_of_another_length-score")
def _(c):
    short = write_processed(c.tmp / "Short_raw_data_test.h5", np.ones((3, 2, 32)), "Short")
    return c.score(short), ["Short_raw_data_test.h5 holds windows of 32 samples", "trained on 48",
                            "--trim_length=48"]


# a non-finite training loss
@case("non_finite_loss-train_again")
def _(c):
    huge = c.processed("Huge", np.full((16, 2, 48), 1e30))
    return c.train("--n_epochs=2", training=huge, output_dir=c.runs), [
        "training loss became", "at epoch 2", "the last good checkpoint is kept in", "lower --learning_rate"]


# score.py: --hop <= 0, or --hop with a processed h5
@case("hop_0-score", "--hop=0")
@case("hop_negative-score", "--hop=-48")
def _(c, flag):
    return c.score(flags=(flag,)), ["argument --hop: must be a positive integer"]


@case("hop_with_processed_h5-score")
def _(c):
    return c.score(flags=("--hop=24",)), ["--hop applies to raw recordings", "Tone_raw_data_test.h5",
                                          "drop --hop or pass the raw recording"]


# score.py --units=hz on a recording without a sample rate, or --sample_rate against the recording's
@case("units_hz_without_sample_rate-score")
def _(c):
    return c.score(c.npy(stream(4 * 48)), flags=("--units=hz",)), [
        "X.npy records no sample rate", "--units=hz", "pass --sample_rate=<Hz> or --units=cycles"]


@case("sample_rate_against_the_recording-score")
def _(c):
    return c.score(c.sigmf(stream(4 * 48).tobytes()), flags=("--sample_rate=2e6",)), [
        "X.sigmf-meta records a sample rate of 1e+06 Hz but --sample_rate is 2e+06", "drop --sample_rate"]


# score.py on a raw recording with an all-zero window (--normalize rms): no scores file is left
@case("all_zero_window-score")
def _(c):
    samples = stream(6 * 48)
    samples[4 * 48:5 * 48] = 0
    c.absent.append(c.ood / "scores_X.csv")
    # --localise=0: no spectral baseline, which would reconstruct the val set before the first window is read
    return c.score(c.npy(samples), flags=("--localise=0",)), [
        "X.npy: the window at sample 192 is all zeros", "--normalize none"]


# a raw h5 whose snr_db is not one finite value per frame
@case("snr_db_not_one_per_frame-prep")
def _(c):
    c.raw_h5(dataset=frames(), snr_db=np.zeros(3, np.float32))
    return c.prep(), ["X_raw_data.h5", "'snr_db' has shape (3,)", "one finite SNR in dB per frame [5]"]


@case("snr_db_not_finite-prep")
def _(c):
    c.raw_h5(dataset=frames(), snr_db=np.array([10, 12, np.nan, 8, 9], np.float32))
    return c.prep(), ["X_raw_data.h5", "'snr_db' has shape (5,) (or non-finite values)", "fix or delete it"]


# the generator's --snr_db NaN, or a range that is not finite or runs backwards
@case("synthetic_snr_db_nan-synthetic", "--snr_db=nan", "argument --snr_db: must be a number of dB, got nan")
@case("synthetic_snr_db_range_not_finite-synthetic", "--snr_db=0:nan",
      "argument --snr_db: range LO:HI needs finite LO <= HI, got 0:nan")
@case("synthetic_snr_db_range_reversed-synthetic", "--snr_db=20:5",
      "argument --snr_db: range LO:HI needs finite LO <= HI, got 20:5")
def _(c, flag, message):
    return c.synthetic(flag), [message]


# score.py on a run whose val results come from one frame: cross-fitting holds out whole frames
@case("one_val_frame-score")
def _(c):
    signals = np.random.default_rng(0).standard_normal((4, 2, 48))
    one = write_processed(c.tmp / "One_raw_data_val.h5", signals, "One")
    with h5py.File(one, "a") as handle:
        handle["frame_index"] = np.zeros(len(signals), np.int64)  # every window cut from frame 0
    reconstructed = run_inline("reconstruct.py", f"--output_dir={c.runs}", "--model_name=m", "--overwrite=1",
                               f"--validation_h5file={one}", "--run_in=0", "--run_out=0", "--first_n_val=2",
                               "--num_inference_steps=10", "--inference_skip_factor=5")  # 2 start points, 9 calls
    assert reconstructed.returncode == 0, reconstructed.stderr
    return c.score(), ["cross-fitting the threshold needs val windows from at least two frames",
                       "2 window(s) of 1 frame", "--first_n_val"]


# ---------------------------------------------------------------------------------------------- the test

@pytest.mark.parametrize("build, args", CASES)
def test_bad_input_gives_one_error_line_and_exit_code_2(build, args, tiny_run, trained, tmp_path):
    c = Case(tiny_run["files"], trained, tmp_path)
    argv, fragments = build(c, *args)
    kept = c.kept_files()
    result = run_inline(*argv)
    assert result.returncode == 2, f"exit code {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    for path, content in kept.items():
        assert path.is_file() and path.read_bytes() == content, f"{path} changed"
    for path in c.absent:
        assert not path.exists(), f"{path} was written"



# ---------------------------------------------------------------------------------------------- every row has a case

TABLE = ROOT / "docs" / "troubleshooting.md"
ROW_KEYS = {  # each row of the bad-input table (its first cell) -> the case id prefixes of its clauses
    "a missing or unreadable file": ("missing_file", "unreadable_file"),
    "an h5 file without `dataset`": ("no_dataset",),
    "raw data that is real-valued or not [frames, samples]": ("raw_real_valued", "raw_rank3"),
    "processed data that is not [N, 2, L]": ("processed_not_N_2_L",),
    "NaN or Inf in a signal": ("nan_frame", "inf_window", "nan_window"),
    "an empty dataset": ("empty_dataset",),
    "`--trim_length` longer than the frames": ("trim_length_too_long",),
    "`--num_samples` larger than the windows available, or below the number of splits": (
        "num_samples_too_large", "num_samples_below_splits"),
    "`--val_split` outside (0, 1), `--test_split` outside [0, 1)": ("val_split", "test_split"),
    "`--first_n`, `--batch_size` <= 0": ("first_n", "batch_size"),
    "`--inference_skip_factor` <= 0 or >= the number of steps": ("skip_factor_0", "skip_factor_100"),
    "an out file that is also the in (or val) file": ("out_is_in", "out_is_val"),
    "an unknown `--model_type`": ("unknown_model_type",),
    "`--beta_start` above `--beta_end`, either outside (0, 1), or `--snr_shift`/`--b_scale` <= 0, at any stage": (
        "beta_start_above_beta_end", "beta_end_not_below_1", "beta_start_not_above_0", "snr_shift", "b_scale"),
    "a flag that contradicts the run's `config.json`": ("flag_contradicts_config",),
    "a `--carrier_recovery` that contradicts the run's (reconstruct.py, score.py, or a training script resuming "
    "a run), or any with images": (
        "carrier_recovery_contradicts_the_run", "carrier_recovery_with_images"),
    "a checkpoint of another model type or shape": ("checkpoint_of_another_shape", "checkpoint_of_another_type"),
    "a checkpoint holding Python objects (a pickle that could run code)": ("checkpoint_with_python_objects",),
    "a truncated or corrupt checkpoint (whatever its bytes)": ("checkpoint_truncated", "checkpoint_of_random_bytes"),
    "`--vqvae_checkpoint` without `vqvae_config.json` beside it": ("vqvae_checkpoint_without_config",),
    "a run folder without `config.json` (or a VQ-VAE run given to reconstruct)": ("run_without_config", "vqvae_run"),
    "an ood folder without val (or in, or out) results": ("no_val_results", "no_in_results", "no_out_results"),
    "results files missing columns or rows": ("results_missing_a_column", "results_missing_rows",
                                              "results_without_rows"),
    "earlier results made with other reconstruction settings": ("other_reconstruction_settings",),
    "an output folder that cannot be written": ("output_dir_is_a_file",),
    "a real-valued, multi-channel, truncated or checksum-failing SigMF recording; a real or object `.npy`": (
        "sigmf_real_valued", "sigmf_multi_channel", "sigmf_truncated", "sigmf_checksum_fails", "npy_real",
        "npy_object"),
    "a recording shorter than one `--frame_length`": ("sigmf_shorter_than_a_frame", "npy_shorter_than_a_frame"),
    "an unknown `--score` or `--metric`": ("unknown_score", "unknown_metric"),
    "results written before a metric existed": ("results_without_a_metric",),
    "NaN or infinite val errors (diverged reconstructions)": ("infinite_val_errors",),
    "`score.py` on a run without `reconstruction.json`, or an input whose windows are not the run's length": (
        "no_reconstruction_json", "input_of_another_length"),
    "`score.py` on a run whose val results come from one frame": ("one_val_frame",),
    "`score.py --hop` <= 0, or `--hop` with a processed h5": ("hop_0", "hop_negative", "hop_with_processed_h5"),
    "`score.py --units=hz` on a recording without a sample rate, or a `--sample_rate` that contradicts the "
    "recording's": ("units_hz_without_sample_rate", "sample_rate_against_the_recording"),
    "`score.py` on a raw recording with an all-zero window (under `--normalize rms`)": ("all_zero_window",),
    "a raw h5 whose `snr_db` is not one finite value per frame": ("snr_db_not_one_per_frame", "snr_db_not_finite"),
    "`-m src.data.synthetic --snr_db` NaN, or a range LO:HI that is not finite or runs backwards": (
        "synthetic_snr_db_nan", "synthetic_snr_db_range_not_finite", "synthetic_snr_db_range_reversed"),
    "a non-finite training loss": ("non_finite_loss",),
}


def table_rows() -> list[str]:
    """The first cell of every row of the table under ``| input | what you see |``."""
    lines = TABLE.read_text().splitlines()
    start = lines.index("| input | what you see |") + 2  # past the header and its |---|---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


def test_every_row_of_the_table_has_a_case_and_every_case_a_row():
    rows = table_rows()
    assert len(rows) == len(set(rows)) >= 35, rows
    assert sorted(rows) == sorted(ROW_KEYS), set(rows) ^ set(ROW_KEYS)  # a new or reworded row needs its keys
    ids = [param.id for param in CASES]
    for row, keys in ROW_KEYS.items():
        for key in keys:
            assert any(case_id.startswith(key) for case_id in ids), f"no case {key}* for the row {row!r}"
    for case_id in ids:
        owners = [row for row, keys in ROW_KEYS.items() if case_id.startswith(keys)]
        assert len(owners) == 1, (case_id, owners)


# ---------------------------------------------------------------------------------------------- fresh interpreters

def fresh(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_every_script_gives_one_line_in_a_fresh_interpreter(tmp_path):
    """One bad input per script in a new interpreter, so what importing prints (a library's warning) would show:
    the in-process cases above cannot see it. Three at a time, as each mostly waits on imports."""
    missing = tmp_path / "missing_raw_data_train.h5"
    train = [f"--output_dir={tmp_path / 'runs'}", "--model_name=m", f"--training_h5file={missing}",
             f"--validation_h5file={missing}"]
    run = [f"--output_dir={tmp_path / 'runs'}", "--model_name=none"]
    commands = {
        "train_ddpm.py": (["train_ddpm.py", *train], "signal file not found"),
        "train_autoencoder.py": (["train_autoencoder.py", *train, "--n_epochs=0"], "argument --n_epochs"),
        "train_vqvae.py": (["train_vqvae.py", *train], "signal file not found"),
        "train_features.py": (["train_features.py", *train], "signal file not found"),
        "reconstruct.py": (["reconstruct.py", *run, f"--validation_h5file={missing}"], "no config.json in"),
        "ood_detection.py": (["ood_detection.py", *run], "has no results_val.csv"),
        "score.py": (["score.py", *run, f"--input={missing}"], "no config.json in"),
        "signal_trim_and_unpack.py": (["src/data/signal_trim_and_unpack.py", f"--data_root={tmp_path / 'none'}",
                                       f"--new_data_root={tmp_path / 'out'}"], "is not a folder"),
        "src.data.synthetic": (["-m", "src.data.synthetic", f"--out={tmp_path / 'raw'}", "--snr_db=nan"],
                               "argument --snr_db: must be a number of dB, got nan"),
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(commands, pool.map(fresh, [argv for argv, _ in commands.values()])))
    for script, result in results.items():
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (script, result.returncode, result.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error:"), (script, result.stderr[-2000:])
        assert commands[script][1] in lines[0], (script, lines[0])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "raw").exists() and not (tmp_path / "out").exists()
