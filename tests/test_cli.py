"""The pipeline through its command lines: prep -> train -> reconstruct -> ood_detection."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_NET, assert_one_line_error, run_cli, write_processed
from sklearn.metrics import average_precision_score, roc_auc_score

from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, fit_detector
from src.ood.ood_folder import read_results

FAMILIES = ["QPSK", "QAM16", "OFDM", "Chirp"]


def train(processed, runs, name="m", *extra):
    return run_cli("train_ddpm.py", f"--output_dir={runs}", f"--model_name={name}", *TINY_NET,
                   f"--training_h5file={processed['Tone_train']}", f"--validation_h5file={processed['Tone_val']}",
                   "--batch_size=8", "--learning_rate=1e-3", *extra)


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


def test_resume_continues_and_equals_one_go(processed, tmp_path):
    runs = tmp_path / "runs"
    train(processed, runs, "split", "--n_epochs=1")
    resumed = train(processed, runs, "split", "--n_epochs=2")
    assert "resuming" in resumed.stdout and "at epoch 2" in resumed.stdout
    train(processed, runs, "whole", "--n_epochs=2")
    split = torch.load(runs / "split" / "checkpoint_last.pth", weights_only=True)
    whole = torch.load(runs / "whole" / "checkpoint_last.pth", weights_only=True)
    assert split["epoch"] == whole["epoch"] == 2 and split["step"] == whole["step"]
    for key, value in whole["model"].items():
        assert torch.allclose(split["model"][key], value, atol=1e-6), key


def test_flag_that_contradicts_the_config_is_refused(processed, tmp_path):
    train(processed, tmp_path, "m", "--n_epochs=1")
    result = run_cli("reconstruct.py", f"--output_dir={tmp_path}", "--model_name=m", "--beta_end=0.03",
                     f"--validation_h5file={processed['Tone_val']}", f"--in_ids={processed['Tone_test']}",
                     f"--out_ids={processed['Noise_test']}", check=False)
    assert_one_line_error(result, "--beta_end=0.03", "config.json")


def test_bad_inputs_get_one_clear_line(processed, tmp_path):
    missing = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m",
                      f"--training_h5file={tmp_path / 'nope.h5'}", f"--validation_h5file={processed['Tone_val']}",
                      check=False)
    assert_one_line_error(missing, "nope.h5", "not found")

    no_dataset = tmp_path / "empty.h5"
    with h5py.File(no_dataset, "w") as handle:
        handle["other"] = np.zeros(3)
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m",
                     f"--training_h5file={no_dataset}", f"--validation_h5file={processed['Tone_val']}", check=False)
    assert_one_line_error(result, "empty.h5", "dataset")

    wrong_rank = write_processed(tmp_path / "flat.h5", np.zeros((4, 64)), "Flat")
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m",
                     f"--training_h5file={wrong_rank}", f"--validation_h5file={processed['Tone_val']}", check=False)
    assert_one_line_error(result, "flat.h5", "[N, 2, L]")

    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m", "--model_type=huge",
                     f"--training_h5file={processed['Tone_train']}", f"--validation_h5file={processed['Tone_val']}",
                     check=False)
    assert_one_line_error(result, "huge")

    (tmp_path / "runs" / "m" / "ood").mkdir(parents=True)
    result = run_cli("ood_detection.py", f"--output_dir={tmp_path / 'runs'}", "--model_name=m", check=False)
    assert_one_line_error(result, "results_val.csv")

    result = run_cli("reconstruct.py", f"--output_dir={tmp_path / 'runs'}", "--model_name=none", check=False)
    assert_one_line_error(result, "config.json")


def test_out_file_that_is_the_in_file_is_refused(processed, tmp_path):
    train(processed, tmp_path, "m", "--n_epochs=1")
    result = run_cli("reconstruct.py", f"--output_dir={tmp_path}", "--model_name=m",
                     f"--validation_h5file={processed['Tone_val']}", f"--in_ids={processed['Tone_test']}",
                     f"--out_ids={processed['Tone_test']}", check=False)
    assert_one_line_error(result, "Tone_raw_data_test.h5", "--in_ids")


def test_nan_signal_and_unwritable_output_are_refused(processed, tmp_path):
    signals = np.random.default_rng(0).standard_normal((6, 2, 32))
    signals[3, 1, 5] = np.nan
    bad = write_processed(tmp_path / "Bad_raw_data_train.h5", signals, "Bad")
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m",
                     f"--training_h5file={bad}", f"--validation_h5file={processed['Tone_val']}", check=False)
    assert_one_line_error(result, "Bad_raw_data_train.h5", "window 3", "NaN")

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("train_ddpm.py", f"--output_dir={blocker}", "--model_name=m", *TINY_NET,
                     f"--training_h5file={processed['Tone_train']}", f"--validation_h5file={processed['Tone_val']}",
                     check=False)
    assert_one_line_error(result, "a_file", "--output_dir")
