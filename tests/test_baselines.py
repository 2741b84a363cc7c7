"""The model-free feature baseline as a run, and the training schedule: warm-up, cosine decay, EMA weights."""
import math

import pandas as pd
import pytest
import torch

from conftest import TINY_NET, run_cli
from src.networks import build_model, load_trained, network_config
from src.trainers.base import ema_decay_at, lr_factor, update_ema


@pytest.fixture(scope="module")
def feature_run(processed_module, tmp_path_factory):
    files, runs = processed_module, tmp_path_factory.mktemp("features")
    fitted = run_cli("train_features.py", f"--output_dir={runs}", "--model_name=features",
                     f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}",
                     "--psd_segment=16")
    run_cli("reconstruct.py", f"--output_dir={runs}", "--model_name=features",
            f"--validation_h5file={files['Tone_val']}",
            f"--in_ids={files['Tone_test']}", f"--out_ids={files['Noise_test']}")
    return runs, fitted.stdout


def test_feature_baseline_is_a_run_that_reconstruct_and_ood_detection_read(feature_run):
    runs, fitted = feature_run
    assert "fitted 28 features on 24 training windows" in fitted  # 16 PSD bins + 4 envelope + 4 cumulant features
    results = pd.read_csv(runs / "features" / "ood" / "results_Noise.csv")
    assert list(results["t"].unique()) == [0] and "feat" in results.columns and len(results) == 24
    detected = run_cli("ood_detection.py", f"--output_dir={runs}", "--model_name=features", "--report=0")
    assert "score zmean on feat" in detected.stdout  # the baseline's own default
    table = pd.read_csv(runs / "features" / "ood" / "metrics_feat_zmean.csv", index_col="dataset")
    assert table.loc["Noise", "AUROC"] == 1.0  # white noise against a tone: the spectra alone separate them


def test_score_py_flags_new_windows_with_the_feature_baseline(feature_run, processed_module):
    runs, _ = feature_run
    result = run_cli("score.py", f"--output_dir={runs}", "--model_name=features",
                     f"--input={processed_module['Noise_val']}", "--fpr=0.1")
    scores = pd.read_csv(runs / "features" / "ood" / "scores_Noise_raw_data_val.csv")
    assert scores["ood"].mean() == 1.0, result.stdout


@pytest.mark.parametrize("schedule, step, expected", [
    ("constant", 0, 0.1), ("constant", 9, 1.0), ("constant", 500, 1.0),
    ("cosine", 9, 1.0), ("cosine", 55, 0.5 * (1 + math.cos(math.pi * 45 / 90))), ("cosine", 100, 0.0)])
def test_learning_rate_warms_up_then_follows_the_schedule(schedule, step, expected):
    assert lr_factor(step, total_steps=100, schedule=schedule, warmup_steps=10) == pytest.approx(expected)


def test_ema_moves_towards_the_weights_by_one_minus_decay():
    model = torch.nn.Linear(3, 2)
    ema = torch.nn.Linear(3, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, model, 0.9)
    torch.testing.assert_close(ema.weight, 0.9 * before + 0.1 * model.weight.detach())
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_the_ema_weights_are_saved_validated_and_loaded(processed_module, tmp_path):
    files = processed_module
    result = run_cli("train_ddpm.py", f"--output_dir={tmp_path}", "--model_name=m", *TINY_NET,
                     f"--training_h5file={files['Tone_train']}", f"--validation_h5file={files['Tone_val']}",
                     "--batch_size=4", "--n_epochs=2", "--quick_test=1", "--ema_decay=0.9", "--figures=0")
    state = torch.load(tmp_path / "m" / "checkpoint.pth", weights_only=True)
    assert set(state) >= {"model", "ema"}
    assert any(not torch.equal(state["model"][key], state["ema"][key]) for key in state["model"])
    loaded = load_trained(state["config"]["network"], tmp_path / "m" / "checkpoint.pth", torch.device("cpu"))
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key
    assert "val loss" in result.stdout
    fresh = build_model(network_config("small", channels=[8, 16], attention_levels=[False, True]))
    assert set(fresh.state_dict()) == set(state["ema"])
