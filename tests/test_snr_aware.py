"""SNR-aware scoring (--snr_aware=1, src/ood/snr_adjust.py): log errors moved to val's mean SNR along val's lines.

Checked against hand-computed residuals, on a case where out differs from in only at equal SNR, and on results
written before reconstruct.py recorded snr_est_db (estimated from the set's h5 windows, or refused in one line)."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_cli
from src.data.prep import trim_and_unpack
from src.data.synthetic import write_synthetic
from src.dsp import blind_snr_db
from src.errors import UserError
from src.ood.detector import DEFAULT_SNR_AWARE, ScoreOptions, feature_table, fit_detector
from src.ood.evaluation import auroc
from src.ood.ood_folder import SNR_EST_COLUMN, OodFolder, read_results, results_frame, write_results
from src.ood.snr_adjust import SnrAdjust, window_snrs

# ------------------------------------------------------------------------------------------ the lines, by hand

# Two features whose log errors are a + b s + c r: r sums to 0 and is uncorrelated with s, so the least-squares
# slopes are b exactly and the moved logs are a + b m + c r, m = 10 dB (val's mean SNR).
VAL_SNR = np.array([0.0, 5.0, 10.0, 15.0, 20.0])
A, B, C = np.array([1.0, -2.0]), np.array([-0.1, 0.05]), np.array([0.1, 0.2])
R = np.array([1.0, -2.0, 2.0, -2.0, 1.0])
VAL_LOGS = A + np.outer(VAL_SNR, B) + np.outer(R, C)
# by hand: a + b m = [0, -1.5]; plus c r for each window
MOVED_VAL = np.array([[0.1, -1.3], [-0.2, -1.9], [0.2, -1.1], [-0.2, -1.9], [0.1, -1.3]])


def test_slopes_and_moved_val_logs_are_the_hand_computed_residuals():
    adjust = SnrAdjust.fit(np.exp(VAL_LOGS), VAL_SNR)
    np.testing.assert_allclose(adjust.slopes, [-0.1, 0.05], atol=1e-12)
    assert adjust.mean_snr == pytest.approx(10.0) and (adjust.low, adjust.high) == (0.0, 20.0)
    np.testing.assert_allclose(adjust.log_errors(np.exp(VAL_LOGS), VAL_SNR), MOVED_VAL, atol=1e-12)
    np.testing.assert_allclose(adjust(np.exp(VAL_LOGS), VAL_SNR), np.exp(MOVED_VAL), rtol=1e-12)


def test_new_windows_are_moved_along_val_lines_clipped_to_val_range():
    adjust = SnrAdjust.fit(np.exp(VAL_LOGS), VAL_SNR)
    # at 7 dB: logs a + 7 b + [0.3, 0] = [0.6, -1.65] -> moved by b (7 - 10): [0.3, -1.5]
    # at 30 dB (clipped to 20): logs [-2, -0.5] -> moved by b (20 - 10) = [-1, 0.5]: [-1, -1]
    # unknown SNR (NaN): not moved
    logs = np.array([[0.6, -1.65], [-2.0, -0.5], [0.6, -1.65]])
    moved = adjust.log_errors(np.exp(logs), np.array([7.0, 30.0, np.nan]))
    np.testing.assert_allclose(moved, [[0.3, -1.5], [-1.0, -1.0], [0.6, -1.65]], atol=1e-12)


def test_val_without_snr_spread_moves_nothing():
    adjust = SnrAdjust.fit(np.exp(VAL_LOGS), np.full(5, 12.0))
    np.testing.assert_array_equal(adjust.slopes, [0.0, 0.0])
    np.testing.assert_allclose(adjust.log_errors(np.exp(VAL_LOGS), np.full(5, 3.0)), VAL_LOGS, atol=1e-12)


# ------------------------------------------------- out differs from in only at equal SNR: a detector on results

STARTS = [10, 20, 30, 40, 50]


def errors_at(rng: np.random.Generator, snr: np.ndarray, shift: float) -> dict[str, np.ndarray]:
    """mse and mae [n_starts, n] whose logs fall 0.1 per dB of SNR (noise 0.1), plus ``shift``: a window of out
    (shift 0.3) looks like an in window 3 dB noisier, so only its SNR tells them apart."""
    base = {"mse": -1.0, "mae": -0.5}
    return {metric: np.exp(level - 0.1 * snr[None, :] + shift + 0.1 * rng.standard_normal((len(STARTS), len(snr))))
            for metric, level in base.items()}


def results_at(rng: np.random.Generator, n: int, set_type: str, name: str, shift: float) -> pd.DataFrame:
    snr = rng.uniform(0.0, 20.0, n)
    ids = [f"{name}_raw_data_test:{index}" for index in range(n)]
    return results_frame(ids, set_type, name, STARTS, errors_at(rng, snr, shift), snr_est_db=snr)


@pytest.fixture(scope="module")
def shifted_sets():
    rng = np.random.default_rng(0)
    return (results_at(rng, 400, "val", "In", 0.0), results_at(rng, 300, "in", "In", 0.0),
            results_at(rng, 300, "out", "Out", 0.3))


@pytest.mark.parametrize("score", ["bands", "zmean"])
def test_out_at_equal_snr_separates_with_the_option_and_not_without(shifted_sets, score):
    val, inside, out = shifted_sets
    found = {}
    for aware in (False, True):
        detector = fit_detector(val, ["mse", "mae"], score, snr_aware=aware)
        assert (detector.snr_adjust is not None) == aware
        found[aware] = auroc(detector.score_frame(inside, "in").to_numpy(), detector.score_frame(out, "Out").to_numpy())
    assert found[False] < 0.75  # along the SNR, out hides among the in windows
    assert found[True] > 0.97  # at its own SNR, 0.3 above in on every feature (noise 0.1)
    aware = fit_detector(val, ["mse", "mae"], score, snr_aware=True)
    np.testing.assert_allclose(aware.snr_adjust.slopes, -0.1, atol=0.01)  # the lines the errors were drawn on


def test_crossfit_refits_the_lines_without_the_held_out_frames(shifted_sets, monkeypatch):
    val, inside, out = shifted_sets
    detector = fit_detector(val, ["mse", "mae"], "bands", snr_aware=True)
    fitted_on = []
    original = SnrAdjust.fit.__func__

    def recording(cls, errors, snr):
        fitted_on.append(len(snr))
        return original(cls, errors, snr)

    monkeypatch.setattr(SnrAdjust, "fit", classmethod(recording))
    crossfit = detector.crossfit_val_scores(folds=4)
    assert len(fitted_on) == 4 and all(300 - 40 < n < 300 + 40 for n in fitted_on)  # 3 of 4 folds of 400 windows
    assert sum(400 - n for n in fitted_on) == 400  # each window held out once
    threshold = np.quantile(crossfit.to_numpy(), 0.95)
    flagged = np.mean(detector.score_frame(out, "Out").to_numpy() > threshold)
    assert flagged > 0.8  # the SNR-aware threshold flags out at equal SNR


def test_file_suffix_marks_what_differs_from_the_default(monkeypatch):
    assert DEFAULT_SNR_AWARE is True  # the shipped default (docs/benchmarks.md: the rule chose it)
    suffixes = {aware: ScoreOptions(None, None, snr_aware=aware).for_run({}).suffix for aware in (None, True, False)}
    base = "mse-mae-env-lsd_bands"
    assert suffixes == {None: base, True: base, False: f"{base}-plain"}
    monkeypatch.setattr("src.ood.detector.DEFAULT_SNR_AWARE", False)
    suffixes = {aware: ScoreOptions(None, None, snr_aware=aware).for_run({}).suffix for aware in (None, True, False)}
    assert suffixes == {None: base, True: f"{base}-snr", False: base}


def test_default_on_applies_where_estimates_exist_and_never_to_features(shifted_sets, monkeypatch):
    val = shifted_sets[0]
    assert fit_detector(val, ["mse", "mae"], "bands").snr_adjust is not None  # shipped default: on
    assert fit_detector(val, ["mse", "mae"], "bands", snr_aware=False).snr_adjust is None
    monkeypatch.setattr("src.ood.detector.DEFAULT_SNR_AWARE", False)
    assert fit_detector(val, ["mse", "mae"], "bands").snr_adjust is None
    monkeypatch.setattr("src.ood.detector.DEFAULT_SNR_AWARE", True)
    without = val.drop(columns=[SNR_EST_COLUMN])
    assert fit_detector(without, ["mse", "mae"], "bands").snr_adjust is None  # no estimates: plain, no refusal
    with pytest.raises(UserError, match="snr_est_db"):
        fit_detector(without, ["mse", "mae"], "bands", snr_aware=True)  # asked for: refused
    features = val.rename(columns={"mse": "feat"})
    assert fit_detector(features, ["feat"], "zmean").snr_adjust is None
    assert fit_detector(features, ["feat"], "zmean", snr_aware=True).snr_adjust is not None


def test_frame_without_estimates_or_source_is_refused(shifted_sets):
    val = shifted_sets[0].drop(columns=[SNR_EST_COLUMN])
    with pytest.raises(UserError, match="snr_est_db column.*reconstruct.py with --overwrite=1"):
        fit_detector(val, ["mse", "mae"], "bands", snr_aware=True)
    assert fit_detector(val, ["mse", "mae"], "bands").snr_adjust is None  # without the option nothing is needed


def test_a_set_without_estimates_beside_val_with_them_is_scored_unmoved_by_default_and_refused_when_asked(
        shifted_sets, caplog):
    """Results of two reconstruct.py versions: val records snr_est_db, the out set does not (and names no h5 file)."""
    val, _, out = shifted_sets
    old = out.drop(columns=[SNR_EST_COLUMN])
    detector = fit_detector(val, ["mse", "mae"], "bands")
    assert detector.snr_adjust is not None
    with caplog.at_level("WARNING", logger="rfood"):
        scores = detector.score_frame(old, "Out")
    assert "Out is scored without the SNR move" in caplog.text
    features = feature_table(old, ["mse", "mae"], detector.ts, "Out")
    unmoved = detector.scorer(np.maximum(features.to_numpy(), 1e-12))  # the moved val's score of the raw errors
    np.testing.assert_allclose(scores.to_numpy(), unmoved)
    with pytest.raises(UserError, match="snr_est_db"):
        fit_detector(val, ["mse", "mae"], "bands", snr_aware=True).score_frame(old, "Out")


# ------------------------------------------------------------- results without snr_est_db: from the h5 windows

@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory):
    """A run folder whose results (val: QPSK val, in: QPSK test, out: FM test) lack snr_est_db, as reconstruct.py
    wrote them before it recorded it; config.json names the validation file, beside which the test files lie."""
    root = tmp_path_factory.mktemp("legacy")
    write_synthetic(root / "raw", families=["QPSK", "FM"], n_frames=12, frame_length=96, snr_db=(0.0, 20.0))
    written = {path.stem: path for path in trim_and_unpack(root / "raw", root / "processed", trim_length=32)}
    run = root / "runs" / "old"
    (run / "ood").mkdir(parents=True)
    val_file = written["QPSK_raw_data_val"]
    (run / "config.json").write_text(json.dumps({"data": {"channels": 2, "signal_length": 32,
                                                          "validation_h5file": str(val_file)}}))
    (run / "ood" / "reconstruction.json").write_text(json.dumps({"mode": "onestep", "start_points": STARTS}))
    rng = np.random.default_rng(1)
    for set_type, stem, name in (("val", "QPSK_raw_data_val", "QPSK"), ("in", "QPSK_raw_data_test", "QPSK"),
                                 ("out", "FM_raw_data_test", "FM")):
        with h5py.File(written[stem], "r") as handle:
            n, frames, snrs = len(handle["dataset"]), handle["frame_index"][()], handle["snr_db"][()]
        ids = [f"{stem}:{index}" for index in range(n)]
        frame = results_frame(ids, set_type, name, STARTS, errors_at(rng, snrs.astype(float), 0.3 * (name == "FM")),
                              [f"{stem}:frame{int(k)}" for k in frames], list(snrs.astype(float)))
        write_results(frame, OodFolder(run / "ood").results(set_type, name))
    return {"root": root, "run": run, "files": written}


def expected_estimates(path) -> np.ndarray:
    """Independently of the module: every window of the h5 file through blind_snr_db."""
    with h5py.File(path, "r") as handle:
        return blind_snr_db(torch.from_numpy(handle["dataset"][()].astype(np.float32))).numpy()


def test_missing_column_is_estimated_from_the_sets_h5_windows(legacy_run):
    for name, stem in (("val", "QPSK_raw_data_val"), ("FM", "FM_raw_data_test")):
        frame = read_results(OodFolder(legacy_run["run"] / "ood").results("out", name) if name == "FM"
                             else OodFolder(legacy_run["run"] / "ood").results("val"))
        assert SNR_EST_COLUMN not in frame.columns
        found = window_snrs(frame, name)
        expected = expected_estimates(legacy_run["files"][stem])
        assert list(found.index) == [f"{stem}:{index}" for index in range(len(expected))]
        np.testing.assert_allclose(found.to_numpy(), expected, atol=1e-9)


def test_ood_detection_scores_legacy_results_snr_aware(legacy_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(legacy_run["run"], runs / "old")
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=old", "--snr_aware=1",
                     "--metric=mse,mae", "--n_bootstrap=0", "--report=0")
    assert "SNR-aware: log errors moved to val's mean SNR" in result.stdout
    written = json.loads((runs / "old" / "ood" / "auroc_mse-mae_bands.json").read_text())  # the default: no suffix
    assert written["snr_aware"] is True and written["score"] == "bands"


def test_missing_h5_is_refused_in_one_line_naming_the_file(legacy_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(legacy_run["run"], runs / "old")
    data = tmp_path / "data"
    shutil.copytree(legacy_run["files"]["QPSK_raw_data_val"].parent, data)
    config = json.loads((runs / "old" / "config.json").read_text())
    config["data"]["validation_h5file"] = str(data / "QPSK_raw_data_val.h5")
    (runs / "old" / "config.json").write_text(json.dumps(config))
    (data / "FM_raw_data_test.h5").unlink()
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=old", "--snr_aware=1",
                     "--metric=mse,mae", "--n_bootstrap=0", "--report=0", check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "results_FM.csv has no snr_est_db column" in lines[0]
    assert str(data / "FM_raw_data_test.h5") in lines[0] and "re-run reconstruct.py" in lines[0]


def test_another_file_of_the_same_name_is_refused(legacy_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(legacy_run["files"]["QPSK_raw_data_val"].parent, data)
    shutil.copy(data / "QPSK_raw_data_test.h5", data / "QPSK_raw_data_val.h5")  # other frames under val's name
    frame = read_results(OodFolder(legacy_run["run"] / "ood").results("val"))
    run = tmp_path / "runs" / "old"
    shutil.copytree(legacy_run["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["validation_h5file"] = str(data / "QPSK_raw_data_val.h5")
    (run / "config.json").write_text(json.dumps(config))
    frame.attrs["source"] = str(run / "ood" / "results_val.csv")
    with pytest.raises(UserError, match="another file"):
        window_snrs(frame, "val")
