"""Detection against SNR: per-frame SNRs carried from the generator through prep, the datasets and the results
files into ood_detection.py's per-SNR tables (checked against sklearn on the selected rows)."""
from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import run_cli
from src.data.datasets import SignalDataset
from src.data.prep import trim_and_unpack
from src.data.synthetic import write_synthetic
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector
from src.ood.reconstructors import reconstruct_set
from src.ood.snr import pd_at_pfa, signal_snrs, snr_table

STARTS = [10, 20]


def fpr_at_95(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Independently: the share of out at or below the lowest in score that accepts 95% of in."""
    ordered = np.sort(in_scores)
    threshold = ordered[int(np.ceil(0.95 * len(ordered))) - 1]
    return float(np.mean(out_scores <= threshold))


# ---------------------------------------------------------------------------------------------- prep and datasets

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("snr")
    raw = write_synthetic(root / "raw", families=["QPSK"], n_frames=10, frame_length=96, snr_db=(0.0, 20.0))[0]
    written = trim_and_unpack(root / "raw", root / "processed", trim_length=32)
    with h5py.File(raw, "r") as handle:
        frame_snrs = handle["snr_db"][()]
    return root, frame_snrs, written


def test_prep_writes_each_windows_frame_snr(prepared):
    _, frame_snrs, written = prepared
    assert len(written) == 3
    for path in written:
        with h5py.File(path, "r") as handle:
            np.testing.assert_array_equal(handle["snr_db"][()], frame_snrs[handle["frame_index"][()]])
            assert handle["snr_db"].dtype == np.float32


def test_dataset_exposes_snr_or_none(prepared, processed):
    _, frame_snrs, written = prepared
    dataset = SignalDataset(written[0], first_n=4)
    with h5py.File(written[0], "r") as handle:
        assert dataset.snr_db == pytest.approx(frame_snrs[handle["frame_index"][:4]].astype(np.float32).tolist())
    assert SignalDataset(processed["Tone_val"]).snr_db is None  # no snr_db in, none out


def test_prep_without_snr_writes_none(processed, tmp_path):
    raw = tmp_path / "raw" / "X_raw_data.h5"
    raw.parent.mkdir()
    with h5py.File(raw, "w") as handle:
        handle["dataset"] = np.ones((6, 64), np.complex64)
    for path in trim_and_unpack(tmp_path / "raw", tmp_path / "out", trim_length=32):
        with h5py.File(path, "r") as handle:
            assert "snr_db" not in handle


class FakeReconstructor:
    """Errors that are functions of the signal, at two start points."""

    starts = STARTS

    def errors(self, x0: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        power = x0.pow(2).mean(dim=(1, 2))
        return {"mse": torch.stack([power, 2 * power])}


def test_results_keep_each_signals_snr(prepared):
    _, _, written = prepared
    dataset = SignalDataset(written[0])
    frame = reconstruct_set(FakeReconstructor(), dataset, "in", batch_size=3)
    snrs = signal_snrs(frame)
    assert list(snrs.index) == dataset.ids
    np.testing.assert_allclose(snrs.to_numpy(), dataset.snr_db)
    assert signal_snrs(frame.drop(columns="snr_db")) is None


# ---------------------------------------------------------------------------------------------- the table

def test_snr_table_matches_sklearn_on_each_bins_rows():
    rng = np.random.default_rng(0)
    n = 300
    in_snr, out_snr = rng.uniform(0, 20, n), rng.uniform(0, 20, n)
    in_scores = pd.Series(rng.standard_normal(n), index=[f"in:{i}" for i in range(n)])
    out_scores = pd.Series(rng.standard_normal(n) + out_snr / 8, index=[f"out:{i}" for i in range(n)])
    table = snr_table(in_scores, {"Out": out_scores}, pd.Series(in_snr, index=in_scores.index),
                      {"Out": pd.Series(out_snr, index=out_scores.index)}, width=5.0)
    assert list(table["snr_lo"]) == [0.0, 5.0, 10.0, 15.0] and list(table["snr_hi"]) == [5.0, 10.0, 15.0, 20.0]
    for row in table.itertuples(index=False):
        in_rows = in_scores[(in_snr >= row.snr_lo) & (in_snr < row.snr_hi)].to_numpy()
        out_rows = out_scores[(out_snr >= row.snr_lo) & (out_snr < row.snr_hi)].to_numpy()
        assert (row.n_in, row.n_out) == (len(in_rows), len(out_rows))
        labels = np.r_[np.zeros(len(in_rows)), np.ones(len(out_rows))]
        assert row.AUROC == pytest.approx(roc_auc_score(labels, np.r_[in_rows, out_rows]), abs=1e-12)
        assert row[-1] == pytest.approx(fpr_at_95(in_rows, out_rows), abs=1e-12)
    assert table["AUROC"].iloc[-1] > table["AUROC"].iloc[0]  # the shift grows with SNR


def test_pd_at_a_set_pfa_is_the_out_share_above_the_in_quantile():
    """400 in signals 0..399 and out signals 380..419 in every bin: at Pfa 1 % the threshold flags the 4 largest
    in (396..399), so out above 395 count (24 of 40); at 5 %, 20 in flagged, out above 379 (all 40). 99 in signals
    cannot set 1 % (NaN); 100 can (threshold below the largest one)."""
    in_scores = pd.Series(np.arange(400.0), index=[f"in:{i}" for i in range(400)])
    out_scores = pd.Series(np.arange(380.0, 420.0), index=[f"out:{i}" for i in range(40)])
    table = snr_table(in_scores, {"Out": out_scores}, pd.Series(1.0, index=in_scores.index),
                      {"Out": pd.Series(1.0, index=out_scores.index)}, width=5.0)
    assert table["Pd@Pfa1%"].iloc[0] == pytest.approx(24 / 40) and table["Pd@Pfa5%"].iloc[0] == 1.0
    assert np.isnan(pd_at_pfa(np.arange(99.0), np.array([200.0]), 0.01))
    assert pd_at_pfa(np.arange(100.0), np.array([98.5, 99.5]), 0.01) == 1.0


def test_snr_table_needs_the_in_sets_snr():
    scores = pd.Series([0.0, 1.0], index=["a", "b"])
    assert snr_table(scores, {"Out": scores}, None, {"Out": None}) is None


# ---------------------------------------------------------------------------------------------- ood_detection.py

def results(set_type: str, name: str, n: int, shift: np.ndarray, snrs: np.ndarray, rng) -> pd.DataFrame:
    """A results file of ``n`` signals at STARTS: log-normal errors, multiplied by exp(shift) per signal."""
    rows = []
    for i in range(n):
        for t in STARTS:
            errors = np.exp(rng.normal(size=4) * 0.3 + shift[i])
            rows.append({"filename": f"{name}_test:{i}", "type": set_type, "dataset": name, "t": t,
                         **dict(zip(("mse", "mae", "env", "lsd"), errors)), "snr_db": snrs[i]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A run folder with val, in and one out set of results that record SNRs (no model needed)."""
    runs = tmp_path_factory.mktemp("runs")
    ood = runs / "fake" / "ood"
    ood.mkdir(parents=True)
    rng = np.random.default_rng(1)
    n = 120
    snr = {name: rng.uniform(0, 20, n) for name in ("val", "in", "Out")}
    results("val", "Val", n, np.zeros(n), snr["val"], rng).to_csv(ood / "results_val.csv", index=False)
    results("in", "In", n, np.zeros(n), snr["in"], rng).to_csv(ood / "results_in.csv", index=False)
    results("out", "Out", n, snr["Out"] / 20, snr["Out"], rng).to_csv(ood / "results_Out.csv", index=False)
    (ood / "reconstruction.json").write_text(json.dumps({"mode": "plms", "start_points": STARTS, "seed": 0}))
    printed = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=fake", "--n_bootstrap=0").stdout
    return runs / "fake", printed


def test_ood_detection_prints_the_per_snr_table_sklearn_gives(fake_run):
    run, printed = fake_run
    ood = run / "ood"
    detector = fit_detector(pd.read_csv(ood / "results_val.csv"), DEFAULT_METRICS, DEFAULT_SCORE)
    inside, out = (pd.read_csv(ood / f"results_{name}.csv") for name in ("in", "Out"))
    in_scores, out_scores = detector.score_frame(inside, "in"), detector.score_frame(out, "Out")
    in_snr, out_snr = signal_snrs(inside).reindex(in_scores.index), signal_snrs(out).reindex(out_scores.index)
    section = printed.split("AUROC per SNR bin")[1].split("FPR@95TPR per SNR bin")[0]
    for lower in (0, 5, 10, 15):
        in_rows = in_scores[(in_snr >= lower) & (in_snr < lower + 5)].to_numpy()
        out_rows = out_scores[(out_snr >= lower) & (out_snr < lower + 5)].to_numpy()
        labels = np.r_[np.zeros(len(in_rows)), np.ones(len(out_rows))]
        expected = roc_auc_score(labels, np.r_[in_rows, out_rows])
        line = re.search(rf"^{lower}\.\.{lower + 5}\s+(\S+)\s+(\d+)$", section, re.MULTILINE)
        assert line is not None, section
        assert float(line.group(1)) == pytest.approx(expected, abs=5e-4) and int(line.group(2)) == len(in_rows)
    written = pd.read_csv(ood / f"snr_{'-'.join(DEFAULT_METRICS)}_{DEFAULT_SCORE}.csv")
    assert list(written.columns) == ["snr_lo", "snr_hi", "dataset", "n_in", "n_out", "AUROC", "Pd@Pfa1%", "Pd@Pfa5%",
                                     "FPR@95TPR"]


def test_report_has_the_snr_section_and_plot(fake_run):
    run, _ = fake_run
    report = (run / "ood" / "report.md").read_text()
    assert "## Detection against SNR" in report and "report/snr.png" in report
    assert (run / "ood" / "report" / "snr.png").read_bytes()[:4] == b"\x89PNG"
