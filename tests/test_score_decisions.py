"""score.py's receiver-style outputs on a tiny trained run: the SNR estimate column, --integrate, --pfa and SigMF
annotations out (--annotate), the latter on a recording with a planted interferer (tests/test_field.py's)."""
from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import sigmf
import torch
from test_field import HIT, INTERFERER, N_WINDOWS, RATE, WINDOW, tone_stream, with_interferer

from conftest import assert_one_line_error, run_inline, run_ok, tiny_tone_run
from src.dsp import blind_snr_db
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector, metric_groups
from src.ood.ood_folder import read_results
from src.ood.score_functions import fit_score

BATCH, PER_FRAME, CENTRE = 8, 4, 2.4e9


@pytest.fixture(scope="module")
def run(tone_run, tmp_path_factory):
    """The Tone/Noise files of conftest (24 windows of 48 samples each) with frames of 4 windows (frame_index); the
    session's tiny model on Tone (conftest.tone_run: 30 epochs at batch size BATCH, as tests/test_field.py's), val,
    in and out reconstructed at 4 start points."""
    return tiny_tone_run(tmp_path_factory.mktemp("decisions"), BATCH, windows_per_frame=PER_FRAME, trained=tone_run)


def score(run, *args, check=True):
    runner = run_ok if check else run_inline
    return runner("score.py", f"--output_dir={run['runs']}", "--model_name=tiny", f"--batch_size={BATCH}", *args)


def crossfit(run) -> pd.Series:
    """The cross-fitted val scores in window order (val:0, val:1, ...)."""
    val = read_results(run["run"] / "ood" / "results_val.csv")
    scores = fit_detector(val, DEFAULT_METRICS, DEFAULT_SCORE).crossfit_val_scores()
    return scores.iloc[np.argsort(scores.index.str.rsplit(":", n=1).str[-1].astype(int).to_numpy())]


def file_snr(path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return blind_snr_db(torch.from_numpy(handle["dataset"][()])).numpy()


def test_results_files_record_each_windows_snr_estimate(run):
    results = read_results(run["run"] / "ood" / "results_in.csv")
    estimates = results.groupby("filename", sort=False)["snr_est_db"].first()
    assert list(estimates.index) == [f"Tone_raw_data_test:{i}" for i in range(24)]
    np.testing.assert_allclose(estimates.to_numpy(), file_snr(run["data"]["Tone_test"]), atol=1e-5)
    noise = read_results(run["run"] / "ood" / "results_Noise.csv").groupby("filename")["snr_est_db"].first()
    assert noise.median() < 0 < estimates.min()  # white noise fills the band: no floor below it; a tone leaves one


def in_window_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[np.argsort(frame.index.str.rsplit(":", n=1).str[-1].astype(int).to_numpy())]


def test_integrate_scores_each_frames_window_pairs_by_their_mean_log_errors_against_their_own_threshold(run):
    """--integrate 2 on frames of 4 windows: groups (0, 1), (2, 3), ... The integrated score sits on each group's
    second row: the score of the pair's mean log errors (not the mean of the two scores), fitted on val's pairs'
    mean log errors; its threshold is the 0.8 quantile of the cross-fitted val pairs scored the same way."""
    score(run, f"--input={run['data']['Tone_test']}", "--fpr=0.2", "--integrate=2")
    table = pd.read_csv(run["run"] / "ood" / "scores_Tone_raw_data_test.csv")
    assert list(table.columns) == ["filename", "score", "threshold", "ood", "snr_est_db", "score_int",
                                   "threshold_int", "ood_int"]
    detector = fit_detector(read_results(run["run"] / "ood" / "results_val.csv"), DEFAULT_METRICS, DEFAULT_SCORE)
    logs = in_window_order(detector.frame_logs(read_results(run["run"] / "ood" / "results_in.csv"), "in"))
    np.testing.assert_allclose(table["score"], detector.score_logs(logs), rtol=1e-5)  # the same windows' errors
    val_logs = in_window_order(detector.frame_logs(read_results(run["run"] / "ood" / "results_val.csv"), "val"))
    pair_means = [np.exp(frame.to_numpy().reshape(-1, 2, frame.shape[1]).mean(axis=1)) for frame in (val_logs, logs)]
    pairs = fit_score(DEFAULT_SCORE, pair_means[0], metric_groups(detector.val_features, detector.metrics))(
        pair_means[1])
    np.testing.assert_allclose(table["score_int"].to_numpy()[1::2], pairs, rtol=1e-5)
    assert not np.allclose(pairs, detector.scorer(pair_means[1]), rtol=1e-3)  # not the single-window fit
    assert not np.allclose(pairs, table["score"].to_numpy().reshape(-1, 2).mean(axis=1), rtol=1e-3)
    assert table["score_int"].iloc[0::2].isna().all() and table["ood_int"].iloc[0::2].isna().all()
    val_ids = crossfit(run).index  # val windows in frame order, 4 per frame
    members = pd.Series([f"pair{i // 2}" for i in range(len(val_ids))], index=val_ids)
    val_pairs = detector.for_groups(2).crossfit_val_scores(members=members)
    assert len(val_pairs) == len(val_ids) // 2
    assert table["threshold_int"].iloc[1] == pytest.approx(np.quantile(val_pairs, 0.8), rel=1e-5)
    assert (table["ood_int"].iloc[1::2] == (table["score_int"] > table["threshold_int"]).iloc[1::2]).all()
    np.testing.assert_allclose(table["snr_est_db"], file_snr(run["data"]["Tone_test"]), atol=1e-5)


def test_integrate_on_a_raw_recording_pools_each_groups_log_errors_as_it_streams(run):
    """A raw recording of 48 windows with the interferer in windows 20-22: --integrate 4 emits a group score on windows
    3, 7, ..., 47, scored from the group's mean log errors (so not the mean of its four scores), and the group of
    windows 20-23 is flagged."""
    recording = run["root"] / "stream_int.npy"
    np.save(recording, with_interferer(tone_stream(N_WINDOWS * WINDOW)))
    out = run["root"] / "stream_int.csv"
    score(run, f"--input={recording}", f"--out={out}", "--fpr=0.05", "--integrate=4", "--localise=0")
    table = pd.read_csv(out)
    ends = np.arange(3, N_WINDOWS, 4)
    assert table["score_int"].notna().to_numpy().nonzero()[0].tolist() == ends.tolist()
    means = table["score"].to_numpy().reshape(-1, 4).mean(axis=1)
    assert not np.allclose(table["score_int"].to_numpy()[ends], means, rtol=1e-3)
    assert table["ood_int"].iloc[23] == 1 and table["score_int"].iloc[23] == table["score_int"].max()


def test_pfa_with_too_few_val_windows_per_band_uses_the_pooled_threshold_and_says_so(run):
    """24 val windows are fewer than the 5 / 0.05 = 100 a band needs: every window gets the pooled threshold."""
    result = score(run, f"--input={run['data']['Tone_test']}", "--pfa=0.05")
    table = pd.read_csv(run["run"] / "ood" / "scores_Tone_raw_data_test.csv")
    assert table["threshold"].to_numpy() == pytest.approx(np.quantile(crossfit(run), 0.95), rel=1e-5)
    assert "thresholds per 5 dB SNR band at Pfa 0.05 (0 band(s) of their own" in result.stdout
    assert "the pooled threshold" in result.stdout and "fewer than 100 val windows" in result.stdout


def test_pfa_needs_snr_estimates_in_val_and_excludes_fpr(run, tmp_path):
    old = tmp_path / "runs" / "tiny"
    shutil.copytree(run["run"], old)
    results = pd.read_csv(old / "ood" / "results_val.csv")
    results.drop(columns="snr_est_db").to_csv(old / "ood" / "results_val.csv", index=False)
    given = [f"--output_dir={tmp_path / 'runs'}", "--model_name=tiny", f"--input={run['data']['Tone_test']}"]
    assert_one_line_error(run_inline("score.py", *given, "--pfa=0.01"), "snr_est_db", "reconstruct.py")
    assert_one_line_error(run_inline("score.py", *given, "--pfa=0.01", "--fpr=0.05"), "--pfa", "--fpr")
    assert_one_line_error(run_inline("score.py", *given, "--annotate=1"), "--annotate", "sigmf-meta")


# ---------------------------------------------------------------------------------------------- SigMF annotations

def write_capture(path, samples: np.ndarray):
    """A SigMF recording at RATE with its centre frequency (core:frequency) and start time."""
    data_path = path.with_suffix(".sigmf-data")
    samples.astype(np.complex64).tofile(data_path)
    meta = sigmf.SigMFFile(global_info={"core:datatype": "cf32_le", "core:sample_rate": RATE}, data_file=data_path)
    meta.add_capture(0, metadata={"core:datetime": "2024-05-01T12:00:00+00:00", "core:frequency": CENTRE})
    meta.tofile(path.with_suffix(".sigmf-meta"))
    return path.with_suffix(".sigmf-meta")


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def annotated(run):
    recording = run["root"] / "capture" / "capture.sigmf-meta"
    recording.parent.mkdir()
    write_capture(recording.with_suffix(""), with_interferer(tone_stream(N_WINDOWS * WINDOW + 5)))
    before = {path.name: digest(path) for path in recording.parent.iterdir()}
    out = run["root"] / "results" / "capture.csv"
    result = score(run, f"--input={recording}", f"--out={out}", "--annotate=1", "--fpr=0.05")
    return recording, before, out, pd.read_csv(out), result


def test_annotations_read_back_valid_with_the_flagged_segments_where_the_interferer_is(annotated):
    recording, before, out, table, result = annotated
    meta_path = out.with_name("capture.sigmf-meta")
    assert f"wrote {meta_path}" in result.stdout
    meta = sigmf.fromfile(meta_path)
    meta.validate()
    annotations = meta.get_annotations()
    flagged = table.index[table["ood"] == 1].to_numpy()
    runs = np.split(flagged, np.flatnonzero(np.diff(flagged) > 1) + 1) if len(flagged) else []
    assert len(annotations) == len(runs) >= 1  # consecutive flagged windows merged into one segment each
    for annotation, windows in zip(annotations, runs):
        assert annotation["core:sample_start"] == windows[0] * WINDOW
        assert annotation["core:sample_count"] == len(windows) * WINDOW
        assert annotation["core:label"] == "ood" and annotation["rfood:windows"] == len(windows)
        assert annotation["rfood:score"] == pytest.approx(table["score"].iloc[windows].max(), rel=1e-6)
        assert annotation["rfood:score"] > annotation["rfood:threshold"] and "score" in annotation["core:comment"]
    hit = [a for a in annotations if a["core:sample_start"] < HIT.stop * WINDOW
           and a["core:sample_start"] + a["core:sample_count"] > HIT.start * WINDOW]
    assert len(hit) == 1 and hit[0]["core:sample_start"] <= HIT.start * WINDOW, annotations
    assert hit[0]["core:sample_start"] + hit[0]["core:sample_count"] >= HIT.stop * WINDOW
    interferer_hz, bin_hz = CENTRE + INTERFERER * RATE, RATE / WINDOW
    assert hit[0]["core:freq_lower_edge"] - bin_hz <= interferer_hz <= hit[0]["core:freq_upper_edge"] + bin_hz
    assert hit[0]["core:freq_upper_edge"] < CENTRE  # the interferer is below the centre, the tone above it


def test_annotations_point_at_the_recordings_samples_and_leave_the_input_untouched(annotated):
    recording, before, out, _, _ = annotated
    assert {path.name: digest(path) for path in recording.parent.iterdir()} == before
    meta = sigmf.fromfile(out.with_name("capture.sigmf-meta"))
    source = sigmf.fromfile(recording)
    np.testing.assert_array_equal(meta.read_samples(0, 100), source.read_samples(0, 100))
    assert meta.get_global_field("core:sample_rate") == RATE
    assert meta.get_captures()[0]["core:frequency"] == CENTRE
    assert {"name": "rfood", "version": "1.0.0", "optional": True} in meta.get_global_field("core:extensions")


def test_annotate_refuses_to_write_onto_its_input(annotated, run):
    recording, *_ = annotated
    result = score(run, f"--input={recording}", f"--out={recording.with_suffix('.csv')}", "--annotate=1",
                   check=False)
    assert_one_line_error(result, "--annotate", "onto the input")
