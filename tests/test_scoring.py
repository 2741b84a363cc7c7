import numpy as np
import pandas as pd
import pytest

from src.errors import UserError
from src.ood.detection_stage import ood_aurocs, score_run
from src.ood.detector import ScoreOptions, informative_t, kept_t
from src.ood.evaluation import auroc, auroc_table
from src.ood.ood_folder import OodFolder, read_results, results_frame, write_results
from src.ood.score_functions import SCORES, fit_score


def rows(set_type, name, errors_by_t):
    """A results frame from {t: [error per signal]}."""
    ts = sorted(errors_by_t)
    errors = np.array([errors_by_t[t] for t in ts])  # [n_t, n_signals]
    ids = [f"{name}:{i}" for i in range(errors.shape[1])]
    return results_frame(ids, set_type, name, ts, {"mse": errors, "mae": np.sqrt(errors), "env": errors / 2,
                                                    "lsd": np.sqrt(errors) + 1.0})


def write_sets(ood_dir, sets):
    ood_dir.mkdir(parents=True, exist_ok=True)
    for file_name, frame in sets.items():
        write_results(frame, ood_dir / f"results_{file_name}.csv")


def test_results_frame_rows_run_signal_major():
    frame = results_frame(["a:0", "a:1"], "out", "a", [10, 20], {"mse": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert list(frame["filename"]) == ["a:0", "a:0", "a:1", "a:1"]
    assert list(frame["t"]) == [10, 20, 10, 20]
    assert list(frame["mse"]) == [1.0, 3.0, 2.0, 4.0]  # errors[t_index, signal]
    assert set(frame["type"]) == {"out"} and set(frame["dataset"]) == {"a"}


def test_zmean_auroc_on_a_hand_made_case(tmp_path):
    val = rows("val", "Q", {10: [1.0, 3.0], 20: [10.0, 30.0]})  # mean 2 / 20, std sqrt(2) / sqrt(200)
    inside = rows("in", "Q", {10: [2.0, 4.0], 20: [20.0, 20.0]})
    # z(in) = mean([0, 0]) = 0 and mean([1.414, 0]) = 0.707; Far scores 1.414*... all above, Near between.
    far = rows("out", "Far", {10: [6.0, 8.0], 20: [60.0, 80.0]})
    near = rows("out", "Near", {10: [3.0, 1.0], 20: [20.0, 20.0]})  # z = 0.354, -0.354
    write_sets(tmp_path, {"val": val, "in": inside, "Far": far, "Near": near})
    table, ts = ood_aurocs(tmp_path, ScoreOptions("zmean", ["mse"]))
    assert ts == [10, 20]
    assert table["Far"] == 1.0
    # Near's 0.354 beats in's 0 (1 win) and loses to 0.707; -0.354 loses to both: 1 of 4 pairs.
    assert table["Near"] == pytest.approx(0.25)
    assert table["mean"] == pytest.approx(0.625)


def test_auroc_counts_pairs():
    in_scores, out_scores = np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.2, 0.4])
    wins = sum((o > i) + 0.5 * (o == i) for o in out_scores for i in in_scores)
    assert auroc(in_scores, out_scores) == pytest.approx(wins / 9)


@pytest.mark.parametrize("score", list(SCORES))
@pytest.mark.parametrize("auto_t", [False, True])
def test_statistics_come_from_val_only(tmp_path, score, auto_t):
    rng = np.random.default_rng(0)
    ts = [10, 20, 30]
    val = rows("val", "Q", {t: list(rng.uniform(1, 2, 12) * t) for t in ts})
    base = {"val": val, "in": rows("in", "Q", {t: list(rng.uniform(1, 2, 5) * t) for t in ts})}
    out_x = rows("out", "X", {t: list(rng.uniform(1, 3, 4) * t) for t in ts})
    write_sets(tmp_path / "a", {**base, "X": out_x})
    write_sets(tmp_path / "b", {**base, "X": out_x, "Y": rows("out", "Y", {t: [1e3, 1e-3, 7.0] for t in ts})})
    a, b = (score_run(OodFolder(tmp_path / name), ScoreOptions(score, None, auto_t=auto_t)) for name in ("a", "b"))
    assert a.ts == b.ts
    pd.testing.assert_series_equal(a.val, b.val)
    pd.testing.assert_series_equal(a.inside, b.inside)
    pd.testing.assert_series_equal(a.outs["X"], b.outs["X"])


def val_like(rng, n, spread=0.3):
    """Errors [n, 2] whose two start points move together: e2 = 10 e1 times a little noise."""
    first = rng.lognormal(0.0, spread, n)
    return np.c_[first, 10 * first * rng.lognormal(0.0, 0.05, n)]


def test_lower_errors_are_missed_by_zmean_and_caught_by_two_sided_scores():
    rng = np.random.default_rng(1)
    val, inside = val_like(rng, 200), val_like(rng, 100)
    easier = val_like(rng, 100) / 4.0  # reconstructed four times better than the training type
    values = {name: auroc(fit_score(name, val)(inside), fit_score(name, val)(easier)) for name in SCORES}
    assert values["zmean"] < 0.1  # one-sided: better-than-normal looks MORE normal
    assert min(values["zabs"], values["mahalanobis"], values["pooled"]) > 0.95


def test_mahalanobis_catches_an_unusual_profile_shape_that_each_t_alone_misses():
    rng = np.random.default_rng(2)
    val, inside = val_like(rng, 300, spread=0.5), val_like(rng, 100, spread=0.5)
    # Each t alone is typical (same marginals), but the two no longer move together.
    swapped = np.c_[val_like(rng, 100, 0.5)[:, 0], rng.permutation(val_like(rng, 100, 0.5)[:, 1])]
    values = {name: auroc(fit_score(name, val)(inside), fit_score(name, val)(swapped)) for name in SCORES}
    assert values["mahalanobis"] > 0.9
    assert max(values["zabs"], values["zmean"]) < 0.6


def test_zmean_and_zabs_follow_their_formulas():
    val = np.array([[1.0, 10.0], [3.0, 30.0]])  # mean (2, 20), std (sqrt 2, sqrt 200)
    errors = np.array([[2.0 + np.sqrt(2), 20.0 - 2 * np.sqrt(200)]])  # z = (1, -2)
    assert fit_score("zmean", val)(errors) == pytest.approx([-0.5])
    assert fit_score("zabs", val)(errors) == pytest.approx([1.5])


def test_mahalanobis_is_the_squared_distance_under_the_shrunk_covariance():
    from sklearn.covariance import LedoitWolf
    rng = np.random.default_rng(3)
    val, errors = rng.lognormal(size=(50, 3)), rng.lognormal(size=(4, 3))
    fitted = LedoitWolf().fit(np.log(val))
    delta = np.log(errors) - fitted.location_
    expected = np.einsum("ij,jk,ik->i", delta, np.linalg.inv(fitted.covariance_), delta)
    np.testing.assert_allclose(fit_score("mahalanobis", val)(errors), expected, rtol=1e-8)


def test_t_range_and_skip():
    assert kept_t([10, 20, 30, 40, 50], 20, 50, 2) == [20, 40]
    with pytest.raises(UserError, match="no start point"):
        kept_t([10, 20], 30, 40, 1)


def test_missing_sets_and_columns_are_user_errors(tmp_path):
    write_sets(tmp_path, {"in": rows("in", "Q", {10: [1.0, 2.0]})})
    with pytest.raises(UserError, match="results_val.csv"):
        ood_aurocs(tmp_path, ScoreOptions("pooled", ["mse", "env", "lsd"]))
    pd.DataFrame({"filename": ["a"], "t": [1]}).to_csv(tmp_path / "results_val.csv", index=False)
    with pytest.raises(UserError, match="lacks columns"):
        read_results(tmp_path / "results_val.csv")


def test_pooled_with_one_metric_is_the_squared_standardised_zmean():
    rng = np.random.default_rng(4)
    val, errors = rng.lognormal(size=(40, 5)), rng.lognormal(size=(6, 5))
    zmean = fit_score("zmean", val)
    expected = (zmean(errors) - zmean(val).mean()) ** 2 / zmean(val).var()
    np.testing.assert_allclose(fit_score("pooled", val)(errors), expected, rtol=1e-8)


def test_pooled_averages_each_metric_over_t_separately():
    rng = np.random.default_rng(5)
    val, errors = rng.lognormal(0, 0.3, size=(60, 4)), rng.lognormal(0, 0.3, size=(5, 4))
    pooled = fit_score("pooled", val, groups=[0, 0, 1, 1])
    z = (errors - val.mean(axis=0)) / val.std(axis=0, ddof=1)
    np.testing.assert_allclose(pooled.features(errors), np.c_[z[:, :2].mean(axis=1), z[:, 2:].mean(axis=1)])
    shifted = rng.lognormal(0, 0.3, size=(30, 4)) * np.array([1.0, 1.0, 0.5, 0.5])  # metric 1 lower
    assert auroc(pooled(rng.lognormal(0, 0.3, size=(30, 4))), pooled(shifted)) > 0.9


def test_bands_average_the_log_errors_of_each_metric_in_contiguous_t_bands():
    """Two metrics of 20 start points each: 10 bands of two t per metric, the mean of the two logs."""
    errors = np.exp(np.arange(40.0))[None, :]  # log error k at feature k
    bands = fit_score("bands", np.exp(np.random.default_rng(6).normal(size=(50, 40))), groups=[0] * 20 + [1] * 20)
    expected = [0.5 + 2 * band for band in range(10)] + [20.5 + 2 * band for band in range(10)]
    np.testing.assert_allclose(bands.features(errors), [expected])
    assert bands.model.location_.shape == (20,)


def test_bands_with_one_band_per_t_is_mahalanobis():
    rng = np.random.default_rng(7)
    val, errors = rng.lognormal(size=(60, 10)), rng.lognormal(size=(5, 10))
    np.testing.assert_allclose(fit_score("bands", val)(errors), fit_score("mahalanobis", val)(errors), rtol=1e-8)


def table(values_by_t):
    return pd.DataFrame(values_by_t, index=[f"v:{i}" for i in range(len(next(iter(values_by_t.values()))))])


def test_auto_t_drops_diverging_constant_and_non_finite_start_points():
    rng = np.random.default_rng(6)
    ordinary = {t: rng.lognormal(0, 0.2, 50) * t for t in (10, 20, 30, 40, 50)}
    heavy = np.exp(rng.standard_normal(50) * 3.0)  # some reconstructions run away
    val = table({**ordinary, 60: heavy, 70: np.full(50, 2.0), 80: np.r_[np.nan, np.ones(49)]})
    kept, dropped = informative_t({"mse": val})
    assert kept == [10, 20, 30, 40, 50] and dropped == [60, 70, 80]
    # Every metric has a say: a t that diverges in a second metric only is dropped too.
    other = table({**ordinary, 60: rng.lognormal(0, 0.2, 50), 70: rng.lognormal(0, 0.2, 50),
                   80: rng.lognormal(0, 0.2, 50)})
    other[30] = np.exp(rng.standard_normal(50) * 3.0)
    assert informative_t({"mse": val, "mae": other})[1] == [30, 60, 70, 80]


def test_auto_t_refuses_to_drop_everything():
    with pytest.raises(UserError, match="dropped every start point"):
        informative_t({"mse": table({10: np.ones(5), 20: np.ones(5)})})


def test_non_finite_val_errors_need_auto_t_and_out_ones_count_as_unusual(tmp_path):
    val = rows("val", "Q", {10: [1.0, 2.0, 3.0, 1.5], 20: [2.0, np.inf, 5.0, 3.0]})
    inside = rows("in", "Q", {10: [1.0, 2.0], 20: [3.0, 4.0]})
    far = rows("out", "X", {10: [1.5, np.nan], 20: [4.0, 4.0]})
    write_sets(tmp_path, {"val": val, "in": inside, "X": far})
    with pytest.raises(UserError, match=r"t = \[20\].*--auto_t"):
        score_run(OodFolder(tmp_path), ScoreOptions("zabs", None))
    scored = score_run(OodFolder(tmp_path), ScoreOptions("zabs", None, auto_t=True))
    assert scored.ts == [10] and scored.auto_dropped == [20]
    assert scored.outs["X"]["X:1"] == np.finfo(np.float64).max  # a NaN error: the reconstruction diverged
    assert np.isfinite(scored.outs["X"]["X:0"]) and scored.outs["X"]["X:0"] < 10


def test_metrics_are_combined_into_one_feature_vector(tmp_path):
    rng = np.random.default_rng(7)

    def errors(n, mae_scale=1.0):
        mse = {t: rng.lognormal(0, 0.2, n) * t for t in (10, 20)}
        return mse, {t: rng.lognormal(0, 0.2, n) * mae_scale for t in (10, 20)}

    def frame(set_type, name, n, mae_scale=1.0):
        mse, mae = errors(n, mae_scale)
        ids = [f"{name}:{i}" for i in range(n)]
        return results_frame(ids, set_type, name, [10, 20], {"mse": np.array([mse[10], mse[20]]),
                                                             "mae": np.array([mae[10], mae[20]])})

    write_sets(tmp_path, {"val": frame("val", "Q", 60), "in": frame("in", "Q", 40),
                          "X": frame("out", "X", 40, mae_scale=3.0)})  # differs in mae only
    both = auroc_table(*inside_and_outs(score_run(OodFolder(tmp_path), ScoreOptions("mahalanobis", ["mse", "mae"])))
                       )["X"]
    mse_only = auroc_table(*inside_and_outs(score_run(OodFolder(tmp_path), ScoreOptions("mahalanobis", ["mse"]))))["X"]
    assert both > 0.95 and mse_only < 0.75


def inside_and_outs(scored):
    return scored.inside, scored.outs
