"""The pipeline through its command lines: prep -> train -> reconstruct -> ood_detection.

Resuming a training run is tested in tests/test_reliability.py; each bad input (a missing, empty, NaN or
wrong-shaped file, an unknown model type, a flag against the config, an out file that is the in file, an
unwritable output folder, a run or ood folder without its files) in tests/test_bad_input.py.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import TINY_NET, run_cli
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector
from src.ood.ood_folder import read_results

FAMILIES = ["QPSK", "QAM16", "OFDM", "Chirp"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Synthetic raw files -> prep -> 2-epoch quick training -> reconstruction at 4 start points."""
    root = tmp_path_factory.mktemp("pipeline")
    run_cli("-m", "src.data.synthetic", f"--out={root / 'raw'}", "--n_frames=10", "--frame_length=256",
            f"--families={','.join(FAMILIES)}")
    run_cli("src/data/signal_trim_and_unpack.py", f"--data_root={root / 'raw'}",
            f"--new_data_root={root / 'processed'}", "--trim_length=64", "--val_split=0.3", "--test_split=0.3")
    data = root / "processed" / "interferenceset_frame"
    run_cli("train_ddpm.py", f"--output_dir={root / 'runs'}", "--model_name=tiny", *TINY_NET,
            f"--training_h5file={data / 'QPSK_raw_data_train.h5'}",
            f"--validation_h5file={data / 'QPSK_raw_data_val.h5'}", "--n_epochs=2", "--batch_size=8", "--quick_test=1")
    outs = ",".join(str(data / f"{name}_raw_data_test.h5") for name in FAMILIES[1:])
    run_cli("reconstruct.py", f"--output_dir={root / 'runs'}", "--model_name=tiny",
            f"--validation_h5file={data / 'QPSK_raw_data_val.h5'}", f"--in_ids={data / 'QPSK_raw_data_test.h5'}",
            f"--out_ids={outs}", "--inference_skip_factor=32", "--num_inference_steps=100", "--first_n=6",
            "--first_n_val=8", "--batch_size=4")
    return root


def test_prep_writes_a_file_per_family_and_split(pipeline):
    assert sorted(p.name for p in (pipeline / "processed" / "interferenceset_frame").iterdir()) == sorted(
        f"{name}_raw_data_{split}.h5" for name in FAMILIES for split in ["train", "val", "test"])


def test_results_files_have_the_contract_columns(pipeline):
    ood = pipeline / "runs" / "tiny" / "ood"
    assert sorted(p.name for p in ood.glob("results_*.csv")) == sorted(
        ["results_val.csv", "results_in.csv"] + [f"results_{name}.csv" for name in FAMILIES[1:]])
    for path in ood.glob("results_*.csv"):
        frame = pd.read_csv(path)
        assert list(frame.columns[:8]) == ["filename", "type", "dataset", "t", "mse", "mae", "env", "lsd"]
        assert set(frame.columns[8:]) == {"frame", "snr_db", "snr_est_db"}  # the generator SNR, the blind estimate
        assert np.isfinite(frame["snr_est_db"]).all()
        per_frame = frame.drop_duplicates("filename").groupby("frame").size()
        assert (per_frame <= 8).all() and per_frame.index.str.contains(":frame").all()  # 8 windows per frame
        assert sorted(frame["t"].unique()) == [10, 330, 650, 970]
        assert (frame.groupby("filename").size() == 4).all()
        assert np.isfinite(frame[["mse", "mae"]].to_numpy()).all()
    val = pd.read_csv(ood / "results_val.csv")
    assert val["filename"].nunique() == 8 and set(val["type"]) == {"val"} and set(val["dataset"]) == {"QPSK"}
    assert val["filename"].iloc[0] == "QPSK_raw_data_val:0"
    assert json.loads((ood / "reconstruction.json").read_text())["model_evaluations_per_signal"] == 2 + 34 + 66 + 98


def test_ood_detection_lists_every_out_dataset(pipeline):
    result = run_cli("ood_detection.py", f"--output_dir={pipeline / 'runs'}", "--model_name=tiny")
    lines = result.stdout.splitlines()
    for name in FAMILIES[1:] + ["mean"]:
        assert any(line.split()[:1] == [name] for line in lines), result.stdout
    ood = pipeline / "runs" / "tiny" / "ood"
    suffix = f"{'-'.join(DEFAULT_METRICS)}_{DEFAULT_SCORE}"
    table = pd.read_csv(ood / f"metrics_{suffix}.csv", index_col="dataset")
    assert sorted(table.index) == sorted(FAMILIES[1:] + ["mean"])
    assert list(table.columns) == ["AUROC", "AUROC_low", "AUROC_high", "AUPR_In", "AUPR_Out", "FPR@95TPR"]
    detector = fit_detector(read_results(ood / "results_val.csv"), DEFAULT_METRICS, DEFAULT_SCORE)
    inside = detector.score_frame(read_results(ood / "results_in.csv"), "in").to_numpy()
    for name in FAMILIES[1:]:  # the table against scikit-learn on the detector's scores
        out = detector.score_frame(read_results(ood / f"results_{name}.csv"), name).to_numpy()
        labels, scores = np.r_[np.zeros(len(inside)), np.ones(len(out))], np.r_[inside, out]
        assert table.loc[name, "AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
        assert table.loc[name, "AUPR_Out"] == pytest.approx(average_precision_score(labels, scores), abs=1e-4)
        assert table.loc[name, "AUPR_In"] == pytest.approx(average_precision_score(1 - labels, -scores), abs=1e-4)
    assert table.loc["mean", "AUROC"] == pytest.approx(table.drop(index="mean")["AUROC"].mean(), abs=1e-4)
    inside = table.drop(index="mean")
    assert ((inside["AUROC_low"] <= inside["AUROC"] + 1e-9) & (inside["AUROC"] <= inside["AUROC_high"] + 1e-9)).all()
    summary = json.loads((ood / f"auroc_{suffix}.json").read_text())
    assert summary["score"] == DEFAULT_SCORE
    assert summary["auroc"]["mean"] == pytest.approx(table.loc["mean", "AUROC"], abs=1e-4)  # csv has 4 decimals


def test_ood_detection_writes_a_report_with_plots(pipeline):
    run_cli("ood_detection.py", f"--output_dir={pipeline / 'runs'}", "--model_name=tiny", "--score=zabs",
            "--metric=mse,lsd", "--n_bootstrap=50")
    ood = pipeline / "runs" / "tiny" / "ood"
    report = (ood / "report.md").read_text()
    assert "zabs score on mse,lsd" in report and "| QAM16 |" in report
    for png in ("roc.png", "score_histograms.png", "z_against_t.png"):
        assert f"(report/{png})" in report
        assert (ood / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_rebuilds_the_model_and_checkpoints_load_safely(pipeline):
    run = pipeline / "runs" / "tiny"
    config = json.loads((run / "config.json").read_text())
    assert config["network"]["channels"] == [8, 16] and config["scheduler"]["num_train_timesteps"] == 1000
    state = torch.load(run / "checkpoint.pth", weights_only=True)
    assert state["epoch"] >= 1 and "model" in state and state["config"] == config
