"""Decisions over K windows (--integrate) and false alarms set per SNR band (--pfa): src.ood.decisions, checked on
hand-made scores whose distributions are known, so the expected AUROCs and flag rates follow on paper."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.covariance import LedoitWolf

from conftest import assert_one_line_error, run_cli, run_inline
from src.errors import UserError
from src.ood.decisions import BandThresholds, StreamIntegrator, fit_decider, integrate
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector
from src.ood.evaluation import auroc

# ---------------------------------------------------------------------------------------------- integration


def window_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}:{i}" for i in range(n)]


def test_k8_lifts_the_auroc_of_noisy_window_scores_as_averaging_predicts():
    """Per-window scores N(0, 1) in, N(0.5, 1) out, independent: AUROC Phi(0.5 / sqrt 2) = 0.638 per window; the mean
    of 8 is N(0, 1/8) against N(0.5, 1/8): Phi(0.5 / sqrt(2 / 8)) = Phi(1) = 0.841. 300 frames of 32 windows each
    (2,400 groups of 8 per side): both AUROCs within 0.03 of their values."""
    rng = np.random.default_rng(0)
    n = 300 * 32
    ids_in, ids_out = window_ids("in", n), window_ids("out", n)
    frames_in = pd.Series([f"in:frame{i // 32}" for i in range(n)], index=ids_in)
    frames_out = pd.Series([f"out:frame{i // 32}" for i in range(n)], index=ids_out)
    scores_in = pd.Series(rng.standard_normal(n), index=ids_in)
    scores_out = pd.Series(rng.standard_normal(n) + 0.5, index=ids_out)
    single = auroc(scores_in.to_numpy(), scores_out.to_numpy())
    groups_in, groups_out = integrate(scores_in, frames_in, 8), integrate(scores_out, frames_out, 8)
    assert len(groups_in.scores) == len(groups_out.scores) == n // 8
    eight = auroc(groups_in.scores.to_numpy(), groups_out.scores.to_numpy())
    assert single == pytest.approx(norm.cdf(0.5 / np.sqrt(2)), abs=0.03)
    assert eight == pytest.approx(norm.cdf(1.0), abs=0.03)
    assert groups_in.units.str.startswith("in:frame").all()


def test_groups_are_consecutive_windows_of_a_frame_and_short_tails_are_left_out():
    """Frame A holds windows 0..9 (in file order 9..0), frame B windows 10..14: K = 4 gives A's groups {0..3},
    {4..7} (8, 9 left out) and none in B (5 windows: 10..13 is a group, 14 left out)."""
    ids = window_ids("f", 15)[::-1]
    scores = pd.Series(np.arange(15.0)[::-1], index=ids)  # score = window index
    units = pd.Series(["A"] * 10 + ["B"] * 5, index=window_ids("f", 15))
    groups = integrate(scores, units, 4)
    assert groups.scores.to_dict() == {"A/0+4": 1.5, "A/4+4": 5.5, "B/10+4": 11.5}
    assert groups.left_out == 3 and groups.last.to_dict() == {"A/0+4": "f:3", "A/4+4": "f:7", "B/10+4": "f:13"}
    assert integrate(scores, units, 1).scores.to_numpy().tolist() == sorted(scores.to_numpy().tolist())
    assert integrate(scores, None, 2).scores.empty  # without frames each window is its own


def test_the_stream_integrator_equals_block_means_whatever_the_batches():
    rng = np.random.default_rng(1)
    scores, snrs = rng.standard_normal(23), rng.uniform(0, 20, 23)
    for cuts in ([23], [1, 5, 17], [7, 7, 9]):
        integrator, emitted, start = StreamIntegrator(4), [], 0
        for size in cuts:
            emitted.append(integrator(np.arange(start, start + size), scores[start:start + size],
                                      snrs[start:start + size])[0])
            start += size
        emitted = np.concatenate(emitted)
        expected = np.full(23, np.nan)
        expected[3:20:4] = scores[:20].reshape(5, 4).mean(axis=1)  # windows 20..22: an incomplete tail
        np.testing.assert_allclose(emitted, expected)
    framed = StreamIntegrator(2, per_frame=3)(np.arange(6), np.arange(6.0), np.zeros(6))[0]
    np.testing.assert_allclose(framed, [np.nan, 0.5, np.nan, np.nan, 3.5, np.nan])  # frames of 3: 0-1, 3-4


def test_a_pooling_stream_integrator_equals_pooled_integration_whatever_the_batches():
    """With a pool (the detector's score of a group's mean log errors), streamed groups score as
    :func:`integrate` scores the same windows at once; the stream hands over each window's log-error row."""
    rng = np.random.default_rng(3)
    logs = pd.DataFrame(rng.standard_normal((23, 3)), index=window_ids("s", 23))
    score_of_mean = lambda rows: float(np.square(rows.mean(axis=0)).sum())  # noqa: E731
    pool = lambda members: logs.reindex(members.index).groupby(members.to_numpy(), sort=False).mean().apply(  # noqa: E731
        lambda row: score_of_mean(row.to_numpy()[None]), axis=1)
    at_once = integrate(pd.Series(0.0, index=logs.index), pd.Series("f", index=logs.index), 4, pool)
    for cuts in ([23], [1, 5, 17], [7, 7, 9]):
        integrator, emitted, start = StreamIntegrator(4, pool=score_of_mean), [], 0
        for size in cuts:
            part = slice(start, start + size)
            emitted.append(integrator(np.arange(start, start + size), np.zeros(size), np.zeros(size),
                                      logs.to_numpy()[part])[0])
            start += size
        emitted = np.concatenate(emitted)
        np.testing.assert_allclose(emitted[3:20:4], at_once.scores.to_numpy())
        assert np.isnan(np.delete(emitted, np.arange(3, 20, 4))).all()
        by_hand = [score_of_mean(logs.to_numpy()[start:start + 4]) for start in range(0, 20, 4)]
        np.testing.assert_allclose(emitted[3:20:4], by_hand)


def correlated_scores(rng, n_frames: int, per_frame: int, prefix: str) -> tuple[pd.Series, pd.Series]:
    """Cross-fitted-like in-family scores: a frame effect N(0, 0.5^2) shared by its windows plus N(0, 1) each, so
    windows of a frame are correlated (0.2) and a mean of 8 has variance 0.25 + 1/8, not (1.25) / 8."""
    effect = np.repeat(rng.normal(0, 0.5, n_frames), per_frame)
    ids = window_ids(prefix, n_frames * per_frame)
    units = pd.Series([f"{prefix}:frame{i // per_frame}" for i in range(len(ids))], index=ids)
    return pd.Series(effect + rng.standard_normal(len(ids)), index=ids), units


def test_the_integrated_threshold_holds_its_false_alarm_rate_on_fresh_in_family_data():
    """Val: 2,000 frames of 16 windows (4,000 groups of 8); fresh: 10,000 frames of 8 windows. The flagged share of
    fresh groups has sampling sd sqrt(p (1 - p) (1 / 10000 + 1 / 4000)) = 0.0041 at p = 0.05 (binomial on fresh, and
    the val quantile's own spread); the bound is 3.5 sd = 0.0144. A threshold that assumed independent windows
    (pooled quantile scaled by 1 / sqrt 8) falls far outside it, as it must: the windows of a frame are correlated."""
    rng = np.random.default_rng(2)
    val, val_units = correlated_scores(rng, 2000, 16, "val")
    decider, achieved = fit_decider(val, val_units, None, 0.05, per_band=False, width=5.0, k=8)
    assert decider.threshold == pytest.approx(np.quantile(val, 0.95)) and abs(achieved - 0.05) <= 1 / len(val)
    fresh, fresh_units = correlated_scores(rng, 10000, 8, "fresh")
    groups = integrate(fresh, fresh_units, 8).scores.to_numpy()
    bound = 3.5 * np.sqrt(0.05 * 0.95 * (1 / 10000 + 1 / 4000))
    rate = np.mean(groups > decider.int_thresholds(np.zeros(len(groups))))
    assert abs(rate - 0.05) <= bound, (rate, bound)
    naive = np.quantile(val, 0.95) / np.sqrt(8)  # as if the 8 windows were independent
    assert abs(np.mean(groups > naive) - 0.05) > bound


def correlated_results(rng, n_frames: int, per_frame: int, name: str) -> pd.DataFrame:
    """Results rows of windows whose log errors (mse, mae at t = 10, 20) share a frame effect N(0, 0.5^2) plus
    N(0, 1) of their own: the windows of a frame are correlated, as those of one emission are."""
    n = n_frames * per_frame
    logs = np.repeat(rng.normal(0, 0.5, (n_frames, 4)), per_frame, axis=0) + rng.standard_normal((n, 4))
    ids = np.array([f"{name}:{i}" for i in range(n)])
    frames = np.array([f"{name}:frame{i // per_frame}" for i in range(n)])
    return pd.concat([pd.DataFrame({"filename": ids, "t": t, "mse": np.exp(logs[:, 2 * j]),
                                    "mae": np.exp(logs[:, 2 * j + 1]), "frame": frames})
                      for j, t in enumerate((10, 20))], ignore_index=True)


def test_the_pooled_integrated_threshold_holds_its_false_alarm_rate_on_fresh_in_family_data():
    """As above, with the score of each group's mean log errors: val 1,000 frames of 16 windows (2,000 groups of 8,
    cross-fitted), fresh 5,000 frames of 8. The flagged share of fresh groups has sampling sd
    sqrt(p (1 - p) (1 / 5000 + 1 / 2000)) = 0.0058 at p = 0.05; the bound is 3.5 sd = 0.020."""
    rng = np.random.default_rng(4)
    val = correlated_results(rng, 1000, 16, "val")
    detector = fit_detector(val, ["mse", "mae"], "mahalanobis", snr_aware=False)
    grouped = detector.for_groups(8)
    crossfit = detector.crossfit_val_scores()
    decider, _ = fit_decider(crossfit, detector.val_units, None, 0.05, per_band=False, width=5.0, k=8,
                             pool=lambda members: grouped.crossfit_val_scores(members=members))
    fresh = correlated_results(rng, 5000, 8, "fresh")
    logs = grouped.frame_logs(fresh, "fresh")
    units = fresh.groupby("filename")["frame"].first()
    groups = integrate(grouped.score_logs(logs), units, 8, lambda members: grouped.pooled(logs, members))
    assert len(groups.scores) == 5000
    rate = np.mean(groups.scores.to_numpy() > decider.int_threshold)
    bound = 3.5 * np.sqrt(0.05 * 0.95 * (1 / 5000 + 1 / 2000))
    assert abs(rate - 0.05) <= bound, (rate, bound)


def test_the_k_window_detector_is_fitted_on_val_group_means_and_cross_fitted_on_them():
    """zmean on one feature (mse at t = 10): fitted on val's 8-window mean log errors, its mean and sd are those of
    the groups' geometric mean errors computed here by hand. Cross-fitted Mahalanobis distances of held-out groups
    in 4 dimensions have mean about 4 when each fold is fitted on group means (the statistic scored); fitted on
    single windows, whose variance 0.25 + 1 is 3.3 times the means' 0.25 + 1 / 8, they would average about
    4 / 3.3 = 1.2."""
    rng = np.random.default_rng(6)
    val = correlated_results(rng, 200, 16, "val")
    grouped = fit_detector(val, ["mse"], "zmean", max_t=10, snr_aware=False).for_groups(8)
    table = val[val["t"] == 10].set_index("filename")
    order = table.index.str.rsplit(":", n=1).str[-1].astype(int)
    windows = table["mse"].to_numpy()[np.argsort(order)].reshape(400, 8)  # zmean reads errors: geometric means
    geometric = np.exp(np.log(windows).mean(axis=1))
    assert grouped.scorer.mean[0] == pytest.approx(geometric.mean())
    assert grouped.scorer.std[0] == pytest.approx(geometric.std(ddof=1))
    assert grouped.val_members.nunique() == 400
    distances = fit_detector(val, ["mse", "mae"], "mahalanobis", snr_aware=False).for_groups(8).crossfit_val_scores()
    assert len(distances) == 400 and 3.3 < distances.mean() < 4.8


def test_with_fewer_val_groups_than_half_the_dimensions_the_k_window_score_is_fitted_on_single_windows(caplog):
    """pooled on 2 metrics has 2 dimensions, so it needs 10 groups (two per cross-fitting fold): 9 frames of 8
    windows give 9 groups at K = 8 and the per-window detector itself, 18 at K = 4 a detector fitted on them."""
    val = correlated_results(np.random.default_rng(7), 9, 8, "val")
    detector = fit_detector(val, ["mse", "mae"], "pooled", snr_aware=False)
    with caplog.at_level(logging.INFO, logger="rfood"):
        assert detector.for_groups(8) is detector
    assert any("fitted on single val windows: val holds 9 groups of 8, fewer than the 10" in record.message
               for record in caplog.records)
    assert detector.for_groups(4).val_members.nunique() == 18


def test_no_val_group_is_a_user_error():
    scores = pd.Series([1.0, 2.0, 3.0], index=window_ids("v", 3))
    with pytest.raises(UserError, match="no val frame holds 4 windows"):
        fit_decider(scores, None, None, 0.05, per_band=False, width=5.0, k=4)


# ---------------------------------------------------------------------------------------------- Pfa per SNR band

BANDS = (0.0, 5.0, 10.0, 15.0)


def snr_results(rng, n: int, name: str, set_type: str = "val") -> tuple[pd.DataFrame, pd.Series]:
    """Results rows (2 metrics x 2 start points) of ``n`` in-family windows of SNR uniform in 0..20 dB whose log errors
    fall with SNR (-SNR / 10, as reconstruction errors do) and scatter more at low SNR (sd 0.35 at 0 dB to 0.1 at
    20 dB): pooled over SNRs, low-SNR windows score high and high-SNR ones low. And each window's SNR estimate: the
    SNR plus N(0, 1) dB."""
    snr = rng.uniform(0, 20, n)
    rows = []
    for i in range(n):
        for t, scale in ((10, 1.0), (20, 0.5)):
            mse, mae = np.exp(-snr[i] / 10 * scale + rng.normal(0, 0.35 - 0.25 * snr[i] / 20, 2))
            rows.append({"filename": f"{name}:{i}", "type": set_type, "dataset": name, "t": t, "mse": mse, "mae": mae})
    estimate = pd.Series(snr + rng.normal(0, 1.0, n), index=window_ids(name, n))
    return pd.DataFrame(rows), estimate


@pytest.fixture(scope="module")
def per_band():
    rng = np.random.default_rng(3)
    val, val_snr = snr_results(rng, 8000, "val")
    detector = fit_detector(val, ["mse", "mae"], "mahalanobis")
    crossfit = detector.crossfit_val_scores()
    decider, _ = fit_decider(crossfit, detector.val_units, val_snr, 0.05, per_band=True, width=5.0, k=1)
    fresh, fresh_snr = snr_results(rng, 8000, "fresh", "in")
    scores = detector.score_frame(fresh, "fresh").reindex(fresh_snr.index).to_numpy()
    return decider, scores, fresh_snr.to_numpy()


def band_rates(scores: np.ndarray, snr: np.ndarray, thresholds: np.ndarray) -> dict[float, tuple[float, int]]:
    edges = np.floor(snr / 5.0) * 5.0
    return {lower: (float(np.mean(scores[edges == lower] > thresholds[edges == lower])), int((edges == lower).sum()))
            for lower in BANDS}


def test_pfa_per_band_holds_in_every_band_of_fresh_windows(per_band):
    """Each of the 4 bands holds ~1,900 fresh and ~1,900 val windows (SNR estimates within 0..20 dB): the flagged
    share's sd is sqrt(p (1 - p) (1 / n_fresh + 1 / n_val)) ~ 0.0071 at p = 0.05; bound 3.5 sd (~0.025). The one
    pooled threshold misses that bound in some band (it flags the SNR extremes, spares the middle)."""
    decider, scores, snr = per_band
    assert set(BANDS) <= set(decider.bands.bands)  # and -5..0, 20..25 dB: estimates stray past the 0..20 dB range
    for lower, (rate, n) in band_rates(scores, snr, decider.thresholds(snr)).items():
        bound = 3.5 * np.sqrt(0.05 * 0.95 * (1 / n + 1 / decider.bands.counts[lower]))
        assert n > 1500 and abs(rate - 0.05) <= bound, (lower, rate, bound)
    pooled = band_rates(scores, snr, np.full(len(snr), decider.bands.pooled))
    assert max(abs(rate - 0.05) - 3.5 * np.sqrt(0.05 * 0.95 * 2 / n) for rate, n in pooled.values()) > 0, pooled


def test_a_band_with_too_few_val_windows_falls_back_to_the_pooled_threshold(caplog):
    """At Pfa 0.05 a band needs 5 / 0.05 = 100 val windows: 0..5 dB has 300, 5..10 dB 99, so 5..10 dB (and an SNR no
    val window had) use the pooled threshold, and the log says so."""
    rng = np.random.default_rng(4)
    snr = np.r_[rng.uniform(0, 5, 300), rng.uniform(5, 10, 99)]
    scores = rng.standard_normal(len(snr)) + (snr > 5)
    with caplog.at_level(logging.INFO, logger="rfood"):
        bands = BandThresholds.fit(scores, snr, 0.05, 5.0)
    assert list(bands.bands) == [0.0] and bands.counts == {0.0: 300, 5.0: 99}
    assert bands.bands[0.0] == pytest.approx(np.quantile(scores[:300], 0.95))
    np.testing.assert_allclose(bands(np.array([2.0, 7.0, 40.0, np.nan])),
                               [bands.bands[0.0], bands.pooled, bands.pooled, bands.pooled])
    assert bands.pooled == pytest.approx(np.quantile(scores, 0.95))
    assert any("pooled threshold" in record.message and "5..10 dB" in record.message for record in caplog.records)


# ---------------------------------------------------------------------------------------------- ood_detection.py

@pytest.fixture(scope="module")
def framed_run(tmp_path_factory):
    """A run folder of results (no model): val, in and one out set of 40 frames x 12 windows; log errors N(0, 0.3^2)
    per window, the out set's shifted by 0.15: noisy per window, clearer over 8."""
    runs = tmp_path_factory.mktemp("runs")
    ood = runs / "fake" / "ood"
    ood.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for set_type, name, shift in (("val", "Val", 0.0), ("in", "In", 0.0), ("out", "Out", 0.15)):
        rows = []
        for i in range(40 * 12):
            for t in (10, 20):
                errors = np.exp(rng.normal(shift, 0.3, 4))
                rows.append({"filename": f"{name}_test:{i}", "type": set_type, "dataset": name, "t": t,
                             **dict(zip(("mse", "mae", "env", "lsd"), errors)), "frame": f"{name}_test:frame{i // 12}"})
        path = ood / f"results_{'Out' if set_type == 'out' else set_type}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
    (ood / "reconstruction.json").write_text(json.dumps({"mode": "plms", "start_points": [10, 20], "seed": 0}))
    return runs


def test_ood_detection_integrate_scores_the_mean_log_errors_of_8_consecutive_windows_per_frame(framed_run):
    result = run_cli("ood_detection.py", f"--output_dir={framed_run}", "--model_name=fake", "--n_bootstrap=0",
                     "--report=0", "--integrate=8")
    ood = framed_run / "fake" / "ood"
    suffix = f"{'-'.join(DEFAULT_METRICS)}_{DEFAULT_SCORE}_k8"
    metrics = pd.read_csv(ood / f"metrics_{suffix}.csv", index_col=0)
    assert json.loads((ood / f"auroc_{suffix}.json").read_text())["integrate"] == 8
    detector = fit_detector(pd.read_csv(ood / "results_val.csv"))

    def group_means(name: str) -> np.ndarray:  # windows 0-7 of each 12-window frame; 8-11 left out
        frame = pd.read_csv(ood / f"results_{name}.csv")
        table = frame.pivot_table(index="filename", columns="t", values=DEFAULT_METRICS)  # [window, (metric, t)]
        table = table[[(metric, t) for metric in DEFAULT_METRICS for t in (10, 20)]]
        index = table.index.str.rsplit(":", n=1).str[-1].astype(int).to_numpy()
        logs = np.log(table.to_numpy())[index % 12 < 8]  # no SNR column: the errors are not moved
        return pd.DataFrame(logs).groupby(index[index % 12 < 8] // 12).mean().to_numpy()

    # bands with 2 start points: each band is one t, so the features are the log errors; Ledoit-Wolf Mahalanobis
    # fitted on val's 40 group means
    fitted = LedoitWolf().fit(group_means("val"))
    in_groups, out_groups = fitted.mahalanobis(group_means("in")), fitted.mahalanobis(group_means("Out"))
    in_windows, out_windows = (detector.score_frame(pd.read_csv(ood / f"results_{name}.csv"), name).to_numpy()
                               for name in ("in", "Out"))
    assert len(in_groups) == 40
    assert metrics.loc["Out", "AUROC"] == pytest.approx(auroc(in_groups, out_groups), abs=1e-4)
    assert metrics.loc["Out", "AUROC"] > auroc(in_windows, out_windows) + 0.1
    assert "decisions over 8 consecutive windows" in result.stdout
    assert "480 windows in frame tails" in result.stdout  # windows 8-11 of 40 frames in each of val, in and out


def test_integrate_longer_than_every_frame_is_one_clear_line(framed_run):
    result = run_inline("ood_detection.py", f"--output_dir={framed_run}", "--model_name=fake", "--n_bootstrap=0",
                        "--report=0", "--integrate=13")
    assert_one_line_error(result, "--integrate 13", "at most 12")
