"""The paths users run, from the command line: one-step reconstruction and score.py on it, the LDM in one-step
mode, --precision and --compile; score.py's memory on a long recording; DDP training against one process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FRONT_END_OFF, ROOT, make_processed, run_cli, run_inline, run_ok, tone_windows, write_processed

STEPS = 100  # --num_inference_steps: start points t = 10, 20, ..., 990 of the 1000 training steps
START_POINTS = list(range(10, 1000, 10))  # --inference_skip_factor=1 keeps all 99


def copy_run(family_runs, name, runs):
    """A copy of a family run (config and weights only), so reconstructing it leaves the shared run alone."""
    (runs / name).mkdir(parents=True)
    for file in ("config.json", "checkpoint.pth"):
        shutil.copy(family_runs / name / file, runs / name / file)
    return runs / name


def reconstruction(run) -> dict:
    return json.loads((run / "ood" / "reconstruction.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# 4. the headline path from the command line

@pytest.fixture(scope="module")
def headline(family_runs, tmp_path_factory):
    """The tiny U-Net and LDM of family_runs, copied, reconstructed from the command line in one-step mode at every
    start point: the U-Net in fp32 (val 8, in and out 4 signals), the LDM in bf16 (val only); then score.py on
    the U-Net's one-step run."""
    root = tmp_path_factory.mktemp("headline")
    data = make_processed(root / "data")
    runs = root / "runs"
    unet, ldm = copy_run(family_runs, "unet", runs), copy_run(family_runs, "ldm", runs)
    common = (f"--output_dir={runs}", f"--validation_h5file={data['Tone_val']}", "--reconstruction_mode=onestep",
              "--inference_skip_factor=1", f"--num_inference_steps={STEPS}", "--batch_size=8", "--first_n_val=8")
    latent = subprocess.Popen([sys.executable, "reconstruct.py", "--model_name=ldm", *common, "--run_in=0",
                               "--run_out=0", "--precision", "bf16"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    onestep = run_cli("reconstruct.py", "--model_name=unet", *common, f"--in_ids={data['Tone_test']}",
                      f"--out_ids={data['Noise_test']}", "--first_n=4", "--precision", "fp32")
    ldm_log, ldm_err = latent.communicate()  # the LDM ran alongside, on the other core
    assert latent.returncode == 0, ldm_err
    scored = run_cli("score.py", f"--output_dir={runs}", "--model_name=unet", f"--input={data['Noise_test']}",
                     "--fpr=0.25", "--batch_size=8")
    return {"runs": runs, "unet": unet, "ldm": ldm, "data": data, "onestep": onestep.stdout, "ldm_log": ldm_log,
            "scored": scored.stdout}


def test_onestep_reconstruction_from_the_command_line_is_one_network_call_per_start_point(headline):
    recorded = reconstruction(headline["unet"])
    assert recorded["mode"] == "onestep" and recorded["inference_skip_factor"] == 1
    assert recorded["start_points"] == START_POINTS
    # one-step: one evaluation per start point (PLMS would take t/10 steps from each t: thousands per signal)
    assert recorded["model_evaluations_per_signal"] == len(START_POINTS) == 99
    assert "onestep: 99 start points, 99 model evaluations per signal" in headline["onestep"], headline["onestep"]
    for name, count in (("val", 8), ("in", 4), ("Noise", 4)):
        results = pd.read_csv(headline["unet"] / "ood" / f"results_{name}.csv")
        assert results["filename"].nunique() == count, name
        assert results.groupby("filename")["t"].apply(list).map(lambda ts: ts == START_POINTS).all(), name
        assert np.isfinite(results["mse"]).all() and (results["mse"] > 0).all()


def test_path_reconstruction_from_the_command_line_is_ten_calls_and_no_noise(family_runs, tmp_path):
    """--reconstruction_mode=path at skip 10: 10 start points, 10 calls, and the seed changes nothing."""
    data = make_processed(tmp_path / "data")
    errors = []
    for seed in (0, 7):
        runs = tmp_path / f"seed{seed}"
        run = copy_run(family_runs, "unet", runs)
        out = run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=unet", "--reconstruction_mode=path",
                      "--inference_skip_factor=10", f"--validation_h5file={data['Tone_val']}", "--first_n_val=4",
                      "--batch_size=4", "--run_in=0", "--run_out=0", f"--seed={seed}")
        recorded = reconstruction(run)
        assert recorded["mode"] == "path" and recorded["start_points"] == START_POINTS[::10]
        assert recorded["model_evaluations_per_signal"] == 10
        assert "path: 10 start points, 10 model evaluations per signal" in out.stdout, out.stdout
        errors.append(pd.read_csv(run / "ood" / "results_val.csv")[["mse", "lsd"]].to_numpy())
    assert errors[0].shape == (40, 2) and np.array_equal(errors[0], errors[1])


def test_score_py_scores_new_windows_on_a_onestep_run(headline):
    scores = pd.read_csv(headline["unet"] / "ood" / "scores_Noise_raw_data_test.csv")
    assert list(scores["filename"]) == [f"Noise_raw_data_test:{i}" for i in range(24)]  # every window, in order
    assert {"score", "threshold", "ood"} <= set(scores.columns)
    threshold = scores["threshold"].unique()
    assert len(threshold) == 1 and np.isfinite(threshold[0])  # one threshold, set on the one-step val run
    assert (scores["ood"] == (scores["score"] > threshold[0]).astype(int)).all()


def test_ldm_reconstructs_in_onestep_mode_in_bf16_from_the_command_line(headline):
    recorded = reconstruction(headline["ldm"])
    assert recorded["mode"] == "onestep" and recorded["precision"] == "bf16"
    assert recorded["model_evaluations_per_signal"] == 99 and recorded["start_points"] == START_POINTS
    assert "onestep: 99 start points, 99 model evaluations per signal, 1 process(es) on cpu, bf16" in \
        headline["ldm_log"], headline["ldm_log"]
    results = pd.read_csv(headline["ldm"] / "ood" / "results_val.csv")
    assert results["filename"].nunique() == 8 and len(results) == 8 * 99 and np.isfinite(results["mse"]).all()


def test_precision_flag_is_what_ran_and_what_is_recorded(headline):
    assert reconstruction(headline["unet"])["precision"] == "fp32"
    assert "model evaluations per signal, 1 process(es) on cpu, fp32" in headline["onestep"]
    assert reconstruction(headline["ldm"])["precision"] == "bf16"
    # fp32 and bf16 arithmetic give different errors: the flag reached the network, not only the record
    fp32 = pd.read_csv(headline["unet"] / "ood" / "results_val.csv")
    copy_run(headline["runs"], "unet", headline["runs"] / "again")  # the same weights, reconstructed in bf16
    rerun = run_inline("reconstruct.py", f"--output_dir={headline['runs'] / 'again'}", "--model_name=unet",
                       f"--validation_h5file={headline['data']['Tone_val']}", "--reconstruction_mode=onestep",
                       "--inference_skip_factor=1", "--batch_size=8", "--first_n_val=8", "--run_in=0",
                       "--run_out=0", "--precision=bf16")
    assert rerun.returncode == 0, rerun.stderr
    assert reconstruction(headline["runs"] / "again" / "unet")["precision"] == "bf16"
    bf16 = pd.read_csv(headline["runs"] / "again" / "unet" / "ood" / "results_val.csv")
    assert list(bf16["filename"]) == list(fp32["filename"]) and list(bf16["t"]) == list(fp32["t"])
    # the tiny net's noise estimates are ~1e-3, so bf16 moves the errors only in their 7th digit; fp32 on a CPU is
    # deterministic, so any difference is the bf16 arithmetic
    assert (bf16["mse"] != fp32["mse"]).mean() > 0.25, (bf16["mse"] - fp32["mse"]).abs().max()
    np.testing.assert_allclose(bf16["mse"], fp32["mse"], rtol=1e-3)  # the same reconstruction, rounded otherwise


def test_compile_flag_runs_the_network_through_torch_compile(family_runs, headline, tmp_path):
    """--compile=1 from the command line: Inductor writes its generated kernels into TORCHINDUCTOR_CACHE_DIR (a fresh
    folder, so nothing is reused), which an eager run leaves untouched; the results match the eager run's.

    The tiny WaveNet (3 layers of 8 channels) at 3 start points: compiling it costs about 25 s of CPU (the tiny
    U-Net: 88 s), Inductor on one compile thread."""
    runs = tmp_path / "runs"
    copy_run(family_runs, "wavenet", runs)
    flags = (f"--output_dir={runs}", "--model_name=wavenet", f"--validation_h5file={headline['data']['Tone_val']}",
             "--reconstruction_mode=onestep", "--inference_skip_factor=33", "--batch_size=8", "--first_n_val=8",
             "--run_in=0", "--run_out=0", "--precision=fp32")
    run_ok("reconstruct.py", *flags)
    eager = pd.read_csv(runs / "wavenet" / "ood" / "results_val.csv")
    cache = tmp_path / "inductor"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "TORCHINDUCTOR_COMPILE_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "reconstruct.py", *flags, "--compile=1", "--overwrite=1"], cwd=ROOT,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert any(path.suffix == ".py" for path in cache.rglob("*")), sorted(cache.rglob("*"))  # Inductor's code
    compiled = pd.read_csv(runs / "wavenet" / "ood" / "results_val.csv")
    assert len(compiled) == len(eager) == 8 * 3
    np.testing.assert_allclose(compiled["mse"], eager["mse"], rtol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# 5. bounded memory: score.py streams a recording, whatever its length

WINDOW = 1024  # the feature run's window: 8 MiB of complex64 is 1024 windows
SHORT_FRAMES, LONG_FRAMES = 1024, 8 * 1024  # 8 MiB and 64 MiB of complex64, frames of one window each
GROWTH_BOUND_MIB = 24
PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def write_raw_h5(path, frames: int) -> None:
    """An RF Challenge ``*_raw_data.h5``: complex64 ``dataset`` [frames, WINDOW], a noisy tone, written SHORT_FRAMES
    frames (8 MiB) at a time."""
    rng = np.random.default_rng(frames)
    n = np.arange(WINDOW)
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("dataset", (frames, WINDOW), np.complex64)
        for start in range(0, frames, SHORT_FRAMES):
            phase = rng.uniform(0, 2 * np.pi, (SHORT_FRAMES, 1))
            noise = rng.standard_normal((SHORT_FRAMES, WINDOW), np.float32) * np.float32(0.1)
            dataset[start:start + SHORT_FRAMES] = (np.exp(1j * (0.3 * n + phase)) + noise).astype(np.complex64)


def tone_processed(path, count: int, seed: int):
    """``count`` processed windows [count, 2, WINDOW] of the recordings' tone (no noise)."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, (count, 1))
    samples = 0.3 * np.arange(WINDOW) + phase
    return write_processed(path, np.stack([np.cos(samples), np.sin(samples)], axis=1), "Tone")


def test_score_py_peak_memory_does_not_grow_with_the_recording(tmp_path):
    """score.py streams a raw recording in chunks: a recording 8x longer must not need 8x the memory.

    Short: 1024 windows of 1024 complex64 samples = 8 MiB; long: 8x that, 64 MiB. Holding the whole long
    recording would add at least 64 - 8 = 56 MiB to the peak (complex64 alone; a float32 I/Q copy [N, 2, 1024]
    another 56 MiB); streamed, the peak may grow only by what grows per window (a few numbers each: 8192 x 28
    float64 features = 1.75 MiB, the scores table), so the bound is GROWTH_BOUND_MIB = 24 MiB, under half of what
    holding it would add. (Measured once at 8 x 32 MiB: 479 -> 486 MiB, +6 MiB where holding it would add 224 MiB;
    that size takes minutes of CPU here, so the suite runs the 8 MiB one.) The model-free feature baseline keeps
    the run time small (no network). Each peak RSS is read in a wrapper process (getrusage of its one child), so
    this test process's memory plays no part.
    """
    runs = tmp_path / "runs"
    train = tone_processed(tmp_path / "Tone_raw_data_train.h5", 24, 1)
    val = tone_processed(tmp_path / "Tone_raw_data_val.h5", 24, 2)
    for argv in (("train_features.py", f"--output_dir={runs}", "--model_name=features", f"--training_h5file={train}",
                  f"--validation_h5file={val}"),
                 ("reconstruct.py", f"--output_dir={runs}", "--model_name=features", f"--validation_h5file={val}",
                  "--run_in=0", "--run_out=0")):
        result = run_inline(*argv)
        assert result.returncode == 0, result.stderr
    short, long = tmp_path / "Short_raw_data.h5", tmp_path / "Long_raw_data.h5"
    write_raw_h5(short, SHORT_FRAMES)
    write_raw_h5(long, LONG_FRAMES)
    assert long.stat().st_size >= 64 * 2**20
    jobs = {path: subprocess.Popen([sys.executable, "-c", PEAK_RSS, sys.executable, "score.py",
                                    f"--output_dir={runs}", "--model_name=features", f"--input={path}",
                                    f"--out={path.with_suffix('.csv')}"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for path in (short, long)}
    peak_mib, rows = {}, {}
    for path, job in jobs.items():
        stdout, stderr = job.communicate()
        assert job.returncode == 0, stderr
        peak_mib[path] = int(stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux
        rows[path] = len(pd.read_csv(path.with_suffix(".csv"), usecols=["filename"]))
    assert rows == {short: SHORT_FRAMES, long: LONG_FRAMES}  # the whole of each recording was scored
    growth = peak_mib[long] - peak_mib[short]
    print(f"peak RSS: short {peak_mib[short]:.0f} MiB, long {peak_mib[long]:.0f} MiB, growth {growth:.1f} MiB")
    assert growth < GROWTH_BOUND_MIB, peak_mib


# ---------------------------------------------------------------------------------------------------------------
# 6. DDP training under torchrun against one process

LEARNING_RATE = 1e-3
DDP_EPOCHS = 2


def test_two_process_ddp_training_matches_one_process_with_the_same_global_batch(tmp_path):
    """torchrun --nproc_per_node=2 (gloo) against one process, autoencoder, same seed, fp32.

    --batch_size is per process (each process's DataLoader draws --batch_size from its DistributedSampler shard),
    so the global batch is 2 x 4 under torchrun against 8 in one process. The sample order differs (the
    DistributedSampler's permutation is not the one-process loader's), so the training set is exactly one global
    batch of 8 windows: every step of either run sees all 8, in whatever order. The autoencoder's loss is a
    deterministic mean MSE (no noise draws), each process's mean over its 4 averaged by DDP is the mean over the 8,
    so after DDP_EPOCHS steps the weights agree up to float32 summation order: rtol 1e-4, atol 1e-6.

    Left out of that comparison: a conv bias followed by the instance norm of its ADN block. The norm subtracts
    each channel's mean, so that bias's gradient is zero in exact arithmetic and float rounding noise in practice,
    which Adam scales to a step of about the learning rate either way: those biases differ by up to ~lr between
    any two summation orders, and no output depends on them. (Measured: every other tensor within 1.5e-8.)
    """
    train = write_processed(tmp_path / "Tone_raw_data_train.h5", tone_windows(8, 11), "Tone")
    val = write_processed(tmp_path / "Tone_raw_data_val.h5", tone_windows(8, 12), "Tone")

    def flags(name, batch):
        return ("train_autoencoder.py", f"--output_dir={tmp_path}", f"--model_name={name}", "--model_type=autoencoder",
                "--channels=8,8", "--latent_channels=2", f"--training_h5file={train}", f"--validation_h5file={val}",
                f"--n_epochs={DDP_EPOCHS}", f"--batch_size={batch}", "--quick_test=1", "--figures=0",
                "--precision=fp32", f"--learning_rate={LEARNING_RATE}", "--seed=3", FRONT_END_OFF)

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    jobs = {name: subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            for name, argv in (("single", flags("single", 8)),
                               ("ddp", ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                        *flags("ddp", 4), "--dist_backend=gloo")))}
    for name, job in jobs.items():
        stdout, stderr = job.communicate()
        assert job.returncode == 0, (name, stdout, stderr)
    # (one process at --batch_size=4 would take 2 steps an epoch, of 4 windows each, and end elsewhere: the match
    # below needs the two processes' gradients averaged)
    single = torch.load(tmp_path / "single" / "checkpoint_last.pth", weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / "checkpoint_last.pth", weights_only=True)
    assert single["epoch"] == ddp["epoch"] == DDP_EPOCHS
    config = json.loads((tmp_path / "single" / "config.json").read_text())
    from src.networks import build_model
    from src.runtime import seed_everything
    seed_everything(3)
    initial = build_model(config["network"]).state_dict()
    assert single["model"].keys() == ddp["model"].keys() == initial.keys()
    worst, moved, normalised_away = 0.0, [], []
    for key, start in initial.items():
        a, b = single["model"][key], ddp["model"][key]
        if key.endswith("conv.bias") and key[:-len("conv.bias")] + "adn.A.weight" in initial:
            normalised_away.append(key)
            continue
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
        worst = max(worst, (a - b).abs().max().item())
        if start.is_floating_point():
            # AdamW moves each weight by about the learning rate a step (exactly lr * sign(grad) the first):
            # trained, but from these initial weights (a wrong start would be ~0.1 away)
            change = (a - start).abs()
            assert change.max().item() <= 3 * DDP_EPOCHS * LEARNING_RATE, key
            moved.append(change.flatten())
    assert 0 < len(normalised_away) < len(initial) // 3, normalised_away
    moved = torch.cat(moved)
    share_moved = (moved > 0.5 * LEARNING_RATE).float().mean().item()
    print(f"DDP vs one process: max |difference| {worst:.3g}; weights moved by > lr/2: {share_moved:.2%}")
    assert share_moved > 0.5  # most weights trained
