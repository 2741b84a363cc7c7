"""score.py: scoring new recordings with a trained run (threshold at a target FPR, parity with ood_detection)."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import (
    assert_one_line_error,
    copy_tone_run,
    flag_count_bounds,
    run_inline,
    run_ok,
    tone_windows,
    write_processed,
)
from src.field.scoring_stage import val_threshold
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector
from src.ood.ood_folder import read_results

FPR = 0.2
BATCH = 8


@pytest.fixture(scope="module")
def run(tone_run, tmp_path_factory):
    """Tone (in) / Noise (out) windows [24, 2, 48]; a copy of the session's tiny run (conftest.tone_run: 30 epochs
    of 3 batches of BATCH) that tells them apart; val, in and out reconstructed at 4 start points."""
    return copy_tone_run(tone_run, tmp_path_factory.mktemp("score"))


@pytest.fixture(scope="module")
def scored(run):
    """One score.py call on the in (Tone test) and out (Noise test) files, as reconstruct.py read them."""
    result = run_ok("score.py", f"--output_dir={run['runs']}", "--model_name=tiny", f"--fpr={FPR}",
                    f"--input={run['data']['Tone_test']},{run['data']['Noise_test']}", f"--batch_size={BATCH}")
    ood = run["run"] / "ood"
    return {"stdout": result.stdout, "in": pd.read_csv(ood / "scores_Tone_raw_data_test.csv"),
            "out": pd.read_csv(ood / "scores_Noise_raw_data_test.csv")}


N_MANY = 960  # val and new in-distribution windows of the flag-rate test


@pytest.fixture(scope="module")
def many(run):
    """The run's model in a copy reconstructed in one-step mode (4 network calls a window, so a thousand windows
    take seconds), on N_MANY new Tone windows as val; score.py on N_MANY more: the flags of each."""
    root = run["root"] / "many"
    (root / "runs" / "tiny").mkdir(parents=True)
    for name in ("config.json", "checkpoint.pth"):
        shutil.copy(run["run"] / name, root / "runs" / "tiny" / name)
    val = write_processed(root / "Tone_raw_data_val.h5", tone_windows(N_MANY, 1), "Tone")
    new = write_processed(root / "New_raw_data_test.h5", tone_windows(N_MANY, 2), "New")
    for argv in (("reconstruct.py", f"--output_dir={root / 'runs'}", "--model_name=tiny", f"--validation_h5file={val}",
                  "--run_in=0", "--run_out=0", "--reconstruction_mode=onestep", "--inference_skip_factor=32",
                  "--num_inference_steps=100", "--batch_size=64"),
                 ("score.py", f"--output_dir={root / 'runs'}", "--model_name=tiny", f"--input={new}", f"--fpr={FPR}",
                  "--batch_size=64")):
        result = run_inline(*argv)
        assert result.returncode == 0, result.stderr
    return pd.read_csv(root / "runs" / "tiny" / "ood" / "scores_New_raw_data_test.csv")


def score(run, *args, check=True):
    runner = run_ok if check else run_inline
    return runner("score.py", f"--output_dir={run['runs']}", "--model_name=tiny", f"--batch_size={BATCH}", *args)


def val_detector(run):
    return fit_detector(read_results(run["run"] / "ood" / "results_val.csv"), DEFAULT_METRICS, DEFAULT_SCORE)


@pytest.mark.parametrize("n", [7, 24, 100, 1001])
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_threshold_flags_the_target_share_of_val(n, fpr):
    values = np.random.default_rng(n).standard_normal(n)
    threshold, achieved = val_threshold(values, fpr)
    assert achieved == np.mean(values > threshold)
    assert abs(achieved - fpr) <= 1 / n + 1e-12


def test_cli_threshold_is_the_crossfitted_val_quantile(run, scored):
    crossfit = val_detector(run).crossfit_val_scores().to_numpy()
    n_val = len(crossfit)
    threshold = scored["in"]["threshold"].iloc[0]
    assert (scored["in"]["threshold"] == threshold).all() and (scored["out"]["threshold"] == threshold).all()
    assert threshold == pytest.approx(np.quantile(crossfit, 1 - FPR), rel=1e-6)
    assert abs(np.mean(crossfit > threshold) - FPR) <= 1 / n_val
    printed = re.findall(r"threshold (\S+), target FPR (\S+), val FPR (\S+)", scored["stdout"])
    assert len(printed) == 2, scored["stdout"]
    for printed_threshold, target, val_fpr in printed:
        assert float(printed_threshold) == pytest.approx(threshold, rel=1e-5)
        assert float(target) == FPR and abs(float(val_fpr) - FPR) <= 1 / n_val
        assert float(val_fpr) == pytest.approx(np.mean(crossfit > threshold), abs=1e-4)


def test_csv_has_one_row_per_window_and_flags_above_threshold(scored):
    for table in (scored["in"], scored["out"]):
        assert list(table.columns) == ["filename", "score", "threshold", "ood", "snr_est_db"]
        assert len(table) == 24
        assert (table["ood"] == (table["score"] > table["threshold"]).astype(int)).all()
    assert list(scored["in"]["filename"]) == [f"Tone_raw_data_test:{i}" for i in range(24)]


def test_in_distribution_is_flagged_at_the_target_rate(many):
    # 960 new windows against a threshold from 960 val windows at FPR 0.2: k = 768, and 99.9% of counts lie in
    # [137, 253] (14.3% to 26.4%) by flag_count_bounds. (24 against 24 would allow 0 to 17 of 24: no check.)
    # The new windows share each index's diffusion noise with the val window of that index, which ties the two
    # sets together and narrows the count's spread: the bound stays valid.
    low, high = flag_count_bounds(N_MANY, len(many), FPR)
    assert (low, high) == (137, 253)
    assert len(many) == N_MANY and low <= many["ood"].sum() <= high, many["ood"].sum()


def test_out_of_distribution_is_flagged_more(scored):
    in_rate, out_rate = scored["in"]["ood"].mean(), scored["out"]["ood"].mean()
    assert out_rate >= 0.5 and out_rate > in_rate, (in_rate, out_rate)
    labels = np.r_[np.zeros(len(scored["in"])), np.ones(len(scored["out"]))]
    assert roc_auc_score(labels, np.r_[scored["in"]["score"], scored["out"]["score"]]) > 0.75
    assert scored["out"]["score"].mean() > scored["in"]["score"].mean()


def test_scores_equal_the_pipeline_detector_on_the_same_signals(run, scored):
    detector = val_detector(run)
    ood = run["run"] / "ood"
    for results, table in (("results_in.csv", scored["in"]), ("results_Noise.csv", scored["out"])):
        expected = detector.score_frame(read_results(ood / results), "in")
        assert sorted(expected.index) == sorted(table["filename"])
        np.testing.assert_allclose(table["score"].to_numpy(), expected.reindex(table["filename"]).to_numpy(),
                                   rtol=1e-5, atol=1e-9)


def test_npy_recording_is_cut_into_windows_of_the_run_length_and_normalised(run, tmp_path):
    n = np.arange(5 * 48 + 7)  # 5 windows of 48 samples, a tail of 7 dropped
    stream = np.exp(1j * (0.3 * n + 0.4)).astype(np.complex64)
    np.save(tmp_path / "tone.npy", stream)
    np.save(tmp_path / "loud.npy", 10 * stream)
    frames = np.stack([stream[:100], stream[100:200]])  # 2-D: frames as given, 2 windows of 48 each
    np.save(tmp_path / "frames.npy", frames)
    # --snr_aware=0: the noiseless tone's blind SNR estimate is float rounding (60-100 dB), which the x10 copy
    # rounds differently; the point here is the normalisation
    score(run, f"--input={tmp_path / 'tone.npy'},{tmp_path / 'loud.npy'},{tmp_path / 'frames.npy'}",
          f"--fpr={FPR}", f"--out={tmp_path / 'all.csv'}", "--snr_aware=0")
    table = pd.read_csv(tmp_path / "all.csv")
    tone = table[table["filename"].str.startswith("tone:")]
    assert list(tone["filename"]) == [f"tone:{i}" for i in range(5)]
    assert (table["filename"].str.startswith("frames:")).sum() == 4
    loud = table[table["filename"].str.startswith("loud:")]
    np.testing.assert_allclose(loud["score"].to_numpy(), tone["score"].to_numpy(), rtol=1e-4, atol=1e-6)
    assert np.isfinite(table["score"]).all()


def test_bad_inputs_get_one_clear_line(run, tmp_path):
    good = str(run["data"]["Tone_test"])
    np.save(tmp_path / "tiny.npy", np.ones(10, np.complex64))
    # a run without config.json, and an input of another window length: tests/test_bad_input.py
    cases = [
        ([f"--input={tmp_path / 'missing.npy'}"], ["missing.npy"]),
        ([f"--input={tmp_path / 'tiny.npy'}"], ["shorter than one window", "48"]),
        ([f"--input={good}", "--fpr=1.5"], ["--fpr"]),
        ([f"--input={good}", "--fpr=0"], ["--fpr"]),
        ([f"--input={good}", "--metric=bogus"], ["bogus"]),
        ([f"--input={good}", f"--out={tmp_path}"], ["--out", "folder"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(score(run, *args, check=False), *fragments)


def test_reconstruction_settings_that_do_not_match_the_val_results_say_run_reconstruct_first(run, tmp_path):
    copy = tmp_path / "runs" / "tiny"
    (copy / "ood").mkdir(parents=True)
    for name in ("config.json", "checkpoint.pth"):
        shutil.copy(run["run"] / name, copy / name)
    shutil.copy(run["run"] / "ood" / "results_val.csv", copy / "ood" / "results_val.csv")
    # without reconstruction.json at all: tests/test_bad_input.py (no_reconstruction_json-score)
    settings = json.loads((run["run"] / "ood" / "reconstruction.json").read_text())
    (copy / "ood" / "reconstruction.json").write_text(json.dumps({**settings, "start_points": [1, 2]}))
    result = run_inline("score.py", f"--output_dir={tmp_path / 'runs'}", "--model_name=tiny",
                        f"--input={run['data']['Tone_test']}")
    assert_one_line_error(result, "results_val.csv", "reconstruct.py")
