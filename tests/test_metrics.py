import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from src.ood.evaluation import (
    bootstrap_auroc,
    fpr_at_tpr,
    mean_auroc_bootstrap,
    metrics_table,
    ood_metrics,
    percentile_interval,
    rank_auroc,
)


def test_metrics_equal_scikit_learn_on_a_known_case():
    in_scores = np.array([0.1, 0.2, 0.3, 0.35, 0.8])
    out_scores = np.array([0.3, 0.5, 0.9, 1.2])
    values = ood_metrics(in_scores, out_scores, n_bootstrap=0)
    labels = np.r_[np.zeros(5), np.ones(4)]
    scores = np.r_[in_scores, out_scores]
    assert values["AUROC"] == pytest.approx(roc_auc_score(labels, scores))
    assert values["AUPR_Out"] == pytest.approx(average_precision_score(labels, scores))
    assert values["AUPR_In"] == pytest.approx(average_precision_score(1 - labels, -scores))
    # By hand: 0.3 beats 2 in and ties one (half), 0.5 beats 4, 0.9 and 1.2 beat all 5.
    assert values["AUROC"] == pytest.approx((2.5 + 4 + 5 + 5) / 20)
    assert np.isnan(values["AUROC_low"])


def test_fpr_at_95_tpr_counts_out_signals_below_the_in_threshold():
    in_scores = np.arange(100, dtype=float)  # accepting 95 of them needs a threshold at 94
    out_scores = np.array([10.0, 50.0, 93.5, 94.0, 99.0, 200.0])
    assert fpr_at_tpr(in_scores, out_scores) == pytest.approx(4 / 6)  # 10, 50, 93.5 and the tie at 94
    assert fpr_at_tpr(np.zeros(10), np.ones(5)) == 0.0


def test_rank_auroc_matches_scikit_learn_row_by_row():
    rng = np.random.default_rng(0)
    inside, outside = rng.integers(0, 5, size=(7, 12)).astype(float), rng.integers(0, 6, size=(7, 9)).astype(float)
    expected = [roc_auc_score(np.r_[np.zeros(12), np.ones(9)], np.r_[i, o]) for i, o in zip(inside, outside)]
    np.testing.assert_allclose(rank_auroc(inside, outside), expected)


def test_bootstrap_interval_brackets_the_auroc_and_narrows_with_more_signals():
    rng = np.random.default_rng(1)
    small = bootstrap_auroc(rng.normal(0, 1, 30), rng.normal(1, 1, 30), 500)
    large = bootstrap_auroc(rng.normal(0, 1, 600), rng.normal(1, 1, 600), 500)
    assert small[0] < 0.76 < small[1] and large[0] < 0.76 < large[1]  # Phi(1 / sqrt 2) = 0.760
    assert large[1] - large[0] < (small[1] - small[0]) / 2
    assert bootstrap_auroc(np.zeros(5), np.ones(5), 100) == (1.0, 1.0)


def test_metrics_table_has_a_row_per_out_set_and_a_mean():
    inside = pd.Series([0.0, 1.0, 2.0])
    table = metrics_table(inside, {"B": pd.Series([3.0, 4.0]), "A": pd.Series([0.5, 1.5])}, n_bootstrap=50)
    assert list(table.index) == ["A", "B", "mean"]
    assert table.loc["B", "AUROC"] == 1.0 and table.loc["A", "AUROC"] == pytest.approx(0.5)
    assert table.loc["mean", "AUROC"] == pytest.approx(0.75) and np.isnan(table.loc["mean", "AUROC_low"])


def test_frame_bootstrap_of_copied_windows_equals_the_bootstrap_of_one_window_per_frame():
    """8 identical windows per frame carry no more information than one: resampling frames says so."""
    rng = np.random.default_rng(2)
    in_frames, out_frames = rng.normal(0, 1, 10), rng.normal(0.8, 1, 10)
    copies = 8
    in_windows, out_windows = np.repeat(in_frames, copies), np.repeat(out_frames, copies)
    in_units, out_units = np.repeat(np.arange(10), copies), np.repeat(np.arange(10), copies)
    by_frame = bootstrap_auroc(in_windows, out_windows, 400, seed=3, in_units=in_units, out_units=out_units)
    one_per_frame = bootstrap_auroc(in_frames, out_frames, 400, seed=3)
    assert by_frame == pytest.approx(one_per_frame)
    by_window = bootstrap_auroc(in_windows, out_windows, 400, seed=3)
    assert by_window[1] - by_window[0] < 0.6 * (by_frame[1] - by_frame[0])  # treating copies as independent lies


def test_frame_bootstrap_matches_a_direct_weighted_auroc_per_draw():
    rng = np.random.default_rng(4)
    inside, outside = rng.normal(0, 1, 12), rng.normal(0.5, 1, 9)
    in_units, out_units = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5]), np.arange(9) // 3
    low, high = bootstrap_auroc(inside, outside, 300, seed=5, in_units=in_units, out_units=out_units)
    draws = np.random.default_rng(5)
    values = []
    for _ in range(300):  # the same draws, by hand: frames with replacement, all their windows, in and out apart
        in_pick = draws.integers(0, 6, 6)
        out_pick = draws.integers(0, 3, 3)
        a = np.concatenate([inside[in_units == u] for u in in_pick])
        b = np.concatenate([outside[out_units == u] for u in out_pick])
        values.append(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))
    assert (low, high) == pytest.approx((np.quantile(values, 0.025), np.quantile(values, 0.975)))


def scored_sets(rng, shift: float, n_frames: int = 12, per_frame: int = 4):
    """In and two out sets of scores, ``per_frame`` windows per frame sharing a frame-level offset."""
    def one(name: str, mean: float) -> pd.Series:
        frames = np.repeat(np.arange(n_frames), per_frame)
        values = mean + rng.normal(size=n_frames)[frames] + 0.3 * rng.normal(size=frames.size)
        return pd.Series(values, index=[f"{name}:{i}" for i in range(frames.size)]), \
            pd.Series([f"{name}-frame{f}" for f in frames], index=[f"{name}:{i}" for i in range(frames.size)])
    inside, in_units = one("in", 0.0)
    near, near_units = one("near", shift)
    far, far_units = one("far", 3 * shift)
    return inside, {"near": near, "far": far}, pd.concat([in_units, near_units, far_units])


def test_mean_auroc_bootstrap_point_is_the_mean_of_scikit_learn_aurocs():
    inside, outs, units = scored_sets(np.random.default_rng(0), 1.0)
    points, values = mean_auroc_bootstrap([(inside, outs)], units, n_bootstrap=200)
    expected = np.mean([roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(out))], np.r_[inside, out])
                        for out in outs.values()])
    assert points[0] == pytest.approx(expected)
    assert values.shape == (200, 1)


def test_mean_auroc_bootstrap_resamples_frames_and_pairs_scorings():
    inside, outs, units = scored_sets(np.random.default_rng(1), 1.0)
    _, by_frame = mean_auroc_bootstrap([(inside, outs)], units, n_bootstrap=400)
    _, by_window = mean_auroc_bootstrap([(inside, outs)], None, n_bootstrap=400)
    # windows of a frame share its offset: resampling frames gives the wider (honest) interval
    assert np.ptp(percentile_interval(by_frame[:, 0])) > 1.3 * np.ptp(percentile_interval(by_window[:, 0]))
    # a second scoring = the first plus small noise: the paired difference is far tighter than either
    noise = np.random.default_rng(2)
    second = (inside + 0.05 * noise.normal(size=len(inside)),
              {name: out + 0.05 * noise.normal(size=len(out)) for name, out in outs.items()})
    points, values = mean_auroc_bootstrap([(inside, outs), second], units, n_bootstrap=400)
    difference = values[:, 1] - values[:, 0]
    assert np.ptp(percentile_interval(difference)) < 0.3 * np.ptp(percentile_interval(values[:, 0]))
    assert np.mean(difference) == pytest.approx(points[1] - points[0], abs=0.02)


def test_mean_auroc_bootstrap_refuses_scorings_of_other_signals():
    inside, outs, units = scored_sets(np.random.default_rng(3), 1.0)
    other = (inside.iloc[1:], outs)
    with pytest.raises(ValueError, match="same signals"):
        mean_auroc_bootstrap([(inside, outs), other], units, n_bootstrap=10)
