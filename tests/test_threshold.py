"""score.py's threshold: cross-fitted val scores, each from a detector fitted without that signal (or its frame)."""
import numpy as np

import src.ood.detector as detector_module
from src.field.scoring_stage import val_threshold
from src.ood.detector import fit_detector
from src.ood.ood_folder import results_frame

STARTS = [10, 170, 330, 490, 650, 810, 970]


def errors_frame(rng, n, set_type="val", frames=None):
    """Log-normal in-distribution errors of n signals at 7 start points for mse, env and lsd."""
    errors = {metric: rng.lognormal(mean, 0.3, size=(len(STARTS), n)) for metric, mean in
              (("mse", -3.0), ("env", -4.0), ("lsd", 1.0))}
    ids = [f"S:{i}" for i in range(n)]
    return results_frame(ids, set_type, "S", STARTS, errors, frames=frames)


def test_every_val_signal_is_scored_by_a_detector_fitted_without_it(monkeypatch):
    val = errors_frame(np.random.default_rng(0), 23)
    detector = fit_detector(val, ["mse", "env", "lsd"], "pooled")
    real_fit = detector_module.fit_score
    leaks, scored = [], []

    def spying_fit(name, fitted, groups):
        scorer = real_fit(name, fitted, groups)
        seen = {row.tobytes() for row in fitted}

        def score(rows):
            leaks.extend(row.tobytes() in seen for row in rows)
            scored.extend(row.tobytes() for row in rows)
            return scorer(rows)
        return score

    monkeypatch.setattr(detector_module, "fit_score", spying_fit)
    detector.crossfit_val_scores()
    assert len(scored) == 23 and len(set(scored)) == 23  # each val signal scored exactly once
    assert not any(leaks)


def test_windows_of_one_frame_are_held_out_together(monkeypatch):
    frames = [f"S:{i // 4}" for i in range(24)]  # 6 frames of 4 windows
    val = errors_frame(np.random.default_rng(1), 24, frames=frames)
    detector = fit_detector(val, ["mse"], "zmean")
    fitted_sizes = []
    real_fit = detector_module.fit_score

    def spying_fit(name, fitted, groups):
        fitted_sizes.append(len(fitted))
        return real_fit(name, fitted, groups)

    monkeypatch.setattr(detector_module, "fit_score", spying_fit)
    detector.crossfit_val_scores(folds=3)
    assert sorted(fitted_sizes) == [16, 16, 16]  # each fold holds out 2 whole frames (8 windows)


def flagged_shares(seed, n_val, fpr, score="mahalanobis"):
    rng = np.random.default_rng(seed)
    detector = fit_detector(errors_frame(rng, n_val), ["mse", "env", "lsd"], score)
    new = detector.score_frame(errors_frame(rng, 4000, "in"), "in").to_numpy()
    crossfit, _ = val_threshold(detector.crossfit_val_scores().to_numpy(), fpr)
    in_sample, _ = val_threshold(detector.scorer(detector.val_features.to_numpy()), fpr)  # the fitted signals
    return np.mean(new > crossfit), np.mean(new > in_sample)


def test_crossfit_threshold_holds_the_target_rate_where_an_in_sample_quantile_does_not():
    """60 val signals, 21 features: a Mahalanobis detector scores its own fitting signals as too typical."""
    fpr, n_val, seeds = 0.1, 60, range(12)
    crossfit, in_sample = np.array([flagged_shares(seed, n_val, fpr) for seed in seeds]).T
    # The mean over 12 draws of the flagged share of 4000 new in-distribution signals; the threshold
    # itself varies from draw to draw like a quantile of 60 values: binomial sd sqrt(p(1-p)/60) / sqrt(12).
    sd = np.sqrt(fpr * (1 - fpr) / n_val / len(seeds))
    assert abs(crossfit.mean() - fpr) < 4 * sd, crossfit
    assert in_sample.mean() > fpr + 4 * sd, in_sample  # in-sample flags measurably more than asked
    assert in_sample.mean() > crossfit.mean() + 0.05
