import numpy as np
import pandas as pd
import pytest

from src.errors import UserError
from src.ood.results import read_results, results_frame, write_results
from src.ood.scoring import auroc, kept_t, ood_aurocs


def rows(set_type, name, errors_by_t):
    """A results frame from {t: [error per signal]}."""
    ts = sorted(errors_by_t)
    errors = np.array([errors_by_t[t] for t in ts])  # [n_t, n_signals]
    ids = [f"{name}:{i}" for i in range(errors.shape[1])]
    return results_frame(ids, set_type, name, ts, {"mse": errors, "mae": np.sqrt(errors)})


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
    table, ts = ood_aurocs(tmp_path)
    assert ts == [10, 20]
    assert table["Far"] == 1.0
    # Near's 0.354 beats in's 0 (1 win) and loses to 0.707; -0.354 loses to both: 1 of 4 pairs.
    assert table["Near"] == pytest.approx(0.25)
    assert table["mean"] == pytest.approx(0.625)


def test_auroc_counts_pairs():
    in_scores, out_scores = np.array([0.1, 0.4, 0.35]), np.array([0.8, 0.2, 0.4])
    wins = sum((o > i) + 0.5 * (o == i) for o in out_scores for i in in_scores)
    assert auroc(in_scores, out_scores) == pytest.approx(wins / 9)


def test_statistics_come_from_val_only(tmp_path):
    base = {"val": rows("val", "Q", {10: [1.0, 2.0, 4.0]}), "in": rows("in", "Q", {10: [1.0, 2.0]})}
    write_sets(tmp_path / "a", {**base, "X": rows("out", "X", {10: [3.0, 5.0]})})
    write_sets(tmp_path / "b", {**base, "X": rows("out", "X", {10: [3.0, 5.0]}),
                                "Y": rows("out", "Y", {10: [100.0, 0.0]})})
    assert ood_aurocs(tmp_path / "a")[0]["X"] == ood_aurocs(tmp_path / "b")[0]["X"]


def test_t_range_and_skip():
    assert kept_t([10, 20, 30, 40, 50], 20, 50, 2) == [20, 40]
    with pytest.raises(UserError, match="no start point"):
        kept_t([10, 20], 30, 40, 1)


def test_missing_sets_and_columns_are_user_errors(tmp_path):
    write_sets(tmp_path, {"in": rows("in", "Q", {10: [1.0, 2.0]})})
    with pytest.raises(UserError, match="results_val.csv"):
        ood_aurocs(tmp_path)
    pd.DataFrame({"filename": ["a"], "t": [1]}).to_csv(tmp_path / "results_val.csv", index=False)
    with pytest.raises(UserError, match="lacks columns"):
        read_results(tmp_path / "results_val.csv")
