"""score.py localises bands under carrier recovery: a band found in a recovered window is put back at the
recording's frequency by the offset the recovery removed from that window."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

import score
from conftest import TINY_NET, flag_count_bounds, make_processed, run_ok, tone_windows, write_processed
from src.cli import options_from
from src.distributed import Dist
from src.field.localisation import Band, in_recording_frequency
from src.field.scoring_stage import ScoringJob, score_inputs

WINDOW, BATCH, N_WINDOWS = 48, 8, 48
TONE = 0.3 / (2 * np.pi)  # the training tone of conftest's 'Tone' files, cycles/sample
SHIFT = 0.02  # the recording's tone sits this much higher than the training tone's (cycles/sample)
INTERFERER, LEVEL = -0.25, 0.35  # cycles/sample (bin 36 of the 48-bin Welch PSD) and amplitude against the tone's 1
HIT = range(20, 23)


def test_bands_move_by_each_windows_offset_and_wrap():
    bands = [Band(0.1, 0.05, -4.0), Band(0.45, 0.02, 5.0), Band(np.nan, np.nan, 1.0)]
    moved = in_recording_frequency(bands, np.array([-0.03, 0.1, 0.2]))
    assert moved[0].center == pytest.approx(0.07) and moved[0].width == 0.05 and moved[0].z == -4.0
    assert moved[1].center == pytest.approx(-0.45)  # 0.55 wraps to -0.45
    assert np.isnan(moved[2].center)  # no band stays no band
    assert [band.center for band in in_recording_frequency(bands[:2], np.zeros(2))] == [0.1, 0.45]


@pytest.fixture(scope="module")
def located(tmp_path_factory):
    """A tiny run trained with --carrier_recovery=power2 on the Tone files (each window's tone removed to DC),
    scoring a recording whose tone is SHIFT higher, with an interferer in windows HIT at a fixed frequency."""
    root = tmp_path_factory.mktemp("field_carrier")
    data = make_processed(root / "data")
    runs = root / "runs"
    run_ok("train_ddpm.py", f"--output_dir={runs}", "--model_name=tiny", *TINY_NET, "--figures=0",
           f"--training_h5file={data['Tone_train']}", f"--validation_h5file={data['Tone_val']}",
           "--n_epochs=10", "--eval_freq=10", f"--batch_size={BATCH}", "--learning_rate=3e-3",
           "--carrier_recovery=power2")
    val = write_processed(root / "data" / "Tone_raw_data_val.h5", tone_windows(96, 1), "Tone")
    run_ok("reconstruct.py", f"--output_dir={runs}", "--model_name=tiny", f"--validation_h5file={val}",
           "--run_in=0", "--run_out=0", "--inference_skip_factor=32", "--num_inference_steps=100",
           f"--batch_size={BATCH}")
    n = np.arange(N_WINDOWS * WINDOW)
    stream = np.exp(1j * (2 * np.pi * (TONE + SHIFT) * n + 1.0))
    hit = (n >= HIT.start * WINDOW) & (n < HIT.stop * WINDOW)
    stream[hit] += LEVEL * np.exp(2j * np.pi * INTERFERER * n[hit])
    np.save(root / "capture.npy", stream.astype(np.complex64))
    args = score.create_argparser().parse_args([f"--output_dir={runs}", "--model_name=tiny", f"--batch_size={BATCH}",
                                                "--fpr=0.05", f"--input={root / 'capture.npy'}",
                                                f"--out={root / 'capture.csv'}", "--normalize=none"])
    records = Records()
    logging.getLogger("rfood").addHandler(records)
    try:
        score_inputs(options_from(ScoringJob, args), Dist())
    finally:
        logging.getLogger("rfood").removeHandler(records)
    return pd.read_csv(root / "capture.csv"), json.loads((runs / "tiny" / "config.json").read_text()), records.lines


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_the_interferers_band_is_at_its_recording_frequency(located):
    table, config, lines = located
    assert config["data"]["carrier_order"] == 2
    assert any("rebuilding" in line for line in lines)  # the val windows' spectra were rebuilt for the z-scores ...
    assert not any("differ from results_val.csv" in line for line in lines), lines  # ... recovered as reconstructed
    inside = table[table["offset"].between(HIT.start * WINDOW, (HIT.stop - 1) * WINDOW)]
    assert inside["ood"].all(), table[["offset", "score", "threshold", "ood"]].to_string()
    bin_width = 1 / WINDOW  # 48 Welch bins
    # in the recovered windows the interferer sits at INTERFERER - (TONE + SHIFT) = -0.318, 3.3 bins away
    assert (inside["band_center"] - INTERFERER).abs().max() <= bin_width, inside.to_string()
    assert (inside["band_z"] < 0).all()  # power the model does not rebuild
    clean = table[~table["offset"].between((HIT.start - 1) * WINDOW, HIT.stop * WINDOW)]
    # the tone moved by SHIFT is in-family once its carrier is removed: 43 clean windows at a 5% target with a
    # threshold from 96 val windows
    low, high = flag_count_bounds(96, len(clean), 0.05)
    assert len(clean) == N_WINDOWS - 5 and low <= clean["ood"].sum() <= high, clean[["offset", "score"]].to_string()
