"""config.json written when --snr_shift divided the SNR (format_version 1) is converted, never reinterpreted."""
import json
import logging

import pytest

from src.errors import UserError
from src.run import CONFIG_VERSION, Run


def write_config(tmp_path, version, snr_shift):
    folder = tmp_path / "m"
    folder.mkdir()
    config = {"kind": "ddpm", "format_version": version, "network": {"model_type": "small"},
              "scheduler": {"beta_schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195,
                            "prediction_type": "epsilon", "b_scale": 1.0, "snr_shift": snr_shift,
                            "num_train_timesteps": 1000}}
    (folder / "config.json").write_text(json.dumps(config))
    return Run(tmp_path, "m")


def test_an_old_config_with_a_shift_is_read_as_the_same_schedule_with_one_warning(tmp_path, caplog):
    run = write_config(tmp_path, 1, 4.0)
    before = run.config_path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="rfood"):
        config = run.load_config()
    assert config["scheduler"]["snr_shift"] == pytest.approx(0.25)  # divided by 4 then = multiplied by 1/4 now
    assert config["format_version"] == CONFIG_VERSION
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "snr_shift" in warnings[0] and "0.25" in warnings[0]
    assert run.config_path.read_bytes() == before  # the file itself is left as it was


def test_an_old_config_without_a_shift_reads_unchanged_and_silently(tmp_path, caplog):
    run = write_config(tmp_path, 1, 1.0)
    with caplog.at_level(logging.WARNING, logger="rfood"):
        config = run.load_config()
    assert config["scheduler"]["snr_shift"] == 1.0 and not caplog.records


def test_an_unknown_version_is_refused_in_one_line(tmp_path):
    run = write_config(tmp_path, 99, 1.0)
    with pytest.raises(UserError, match="format_version 99"):
        run.load_config()
