"""The fused detector: each view standardised against its cross-fitted val scores, the largest z kept."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from src.errors import UserError
from src.ood.evaluation import auroc
from src.ood.fusion import View, fuse, standardise


def series(values, prefix="w"):
    return pd.Series(values, index=[f"{prefix}:{i}" for i in range(len(values))], dtype=float)


def test_positive_scores_are_standardised_on_a_log_scale_others_as_they_are():
    val = series(np.exp([0.0, 1.0, 2.0]))  # logs 0, 1, 2: mean 1, std 1
    assert standardise(series([np.exp(3.0)]), val).iloc[0] == pytest.approx(2.0)
    val = series([-1.0, 0.0, 1.0])  # mean 0, std 1, not all positive
    assert standardise(series([2.5]), val).iloc[0] == pytest.approx(2.5)


def two_views(rng, n: int, shift: float):
    """View A: in ~ N(0, 1), out ~ N(shift, 1); view B: N(0, 1) for both (it sees nothing)."""
    val = series(rng.normal(size=n), "v")
    a = View("a", val, {"in": series(rng.normal(size=n), "i"), "out": series(rng.normal(shift, 1, n), "o")})
    b = View("b", series(rng.normal(size=n), "v"),
             {"in": series(rng.normal(size=n), "i"), "out": series(rng.normal(size=n), "o")})
    return a, b


def test_a_view_that_carries_all_the_signal_is_followed():
    """A separates (AUROC near 1): fused within 0.01 of it; with 2000 windows a side the AUROC's standard
    error near 1 is under 0.002, so 0.01 is several of them."""
    a, b = two_views(np.random.default_rng(0), 2000, 6.0)
    fused = fuse([a, b])
    alone = auroc(a.scores["in"], a.scores["out"])
    assert alone > 0.99 and abs(auroc(fused["in"], fused["out"]) - alone) < 0.01


def test_the_max_dilutes_less_than_a_sum():
    """At a moderate shift (A alone about 0.86) a view that sees nothing costs the max about 0.05 and the sum
    about 0.08 (Gaussian calculation); with 5000 windows a side the standard error is about 0.004."""
    a, b = two_views(np.random.default_rng(1), 5000, 1.5)
    fused = fuse([a, b])
    summed = {name: standardise(a.scores[name], a.val_crossfit) + standardise(b.scores[name], b.val_crossfit)
              for name in ("in", "out")}
    assert auroc(fused["in"], fused["out"]) > auroc(summed["in"], summed["out"]) + 0.015


def test_views_must_score_the_same_windows():
    rng = np.random.default_rng(2)
    a, b = two_views(rng, 10, 1.0)
    b.scores["in"] = series(rng.normal(size=10), "other")
    with pytest.raises(UserError, match="different windows"):
        fuse([a, b])
    with pytest.raises(UserError, match="at least two"):
        fuse([a])


def test_ood_detection_fuse_with_adds_the_fused_column(processed, tmp_path):
    """A run fused with an exact copy of itself is itself (the max of two equal z); the CLI path writes its file."""
    import shutil

    from tests.conftest import run_cli
    runs = tmp_path / "runs"
    assert run_cli("train_features.py", f"--output_dir={runs}", "--model_name=a",
                   f"--training_h5file={processed['Tone_train']}", f"--validation_h5file={processed['Tone_val']}",
                   check=False).returncode == 0
    assert run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=a",
                   f"--validation_h5file={processed['Tone_val']}",
                   f"--in_ids={processed['Tone_test']}", f"--out_ids={processed['Noise_test']}",
                   check=False).returncode == 0
    shutil.copytree(runs / "a", runs / "b")
    result = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=a", "--fuse_with=b", "--report=0",
                     check=False)
    assert result.returncode == 0, result.stderr
    fused = pd.read_csv(runs / "a" / "ood" / "metrics_fused_b.csv", index_col=0)
    alone = pd.read_csv(runs / "a" / "ood" / "metrics_feat_zmean.csv", index_col=0)
    assert fused.loc["Noise", "AUROC"] == pytest.approx(alone.loc["Noise", "AUROC"])
    assert "a+b" in result.stdout
