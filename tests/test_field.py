"""score.py in the field: long raw recordings streamed in chunks, --hop, anomalies located in time and band."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import sigmf

import score
from conftest import copy_tone_run, flag_count_bounds, run_cli, run_inline, tone_windows, write_processed
from src.cli import options_from
from src.data.prep import normalize_rms
from src.data.streaming import open_recording
from src.distributed import Dist
from src.field.field_scoring import BAND_COLUMNS, FieldOptions, window_batches
from src.field.localisation import strongest_band
from src.field.scoring_stage import ScoringJob, score_inputs
from src.field.timeline import Timeline

WINDOW, FPR, BATCH = 48, 0.05, 8
TONE = 0.3 / (2 * np.pi)  # the in-distribution tone of conftest's 'Tone' files, cycles/sample
INTERFERER = -0.25  # cycles/sample: bin 36 of the 48-bin Welch PSD
HIT = range(20, 23)  # windows holding the interferer
N_WINDOWS = 48
RATE = 1e6


@pytest.fixture(scope="module")
def run(tone_run, tmp_path_factory):
    """A copy of the session's tiny run on 'Tone' windows [24, 2, 48] (conftest.tone_run: 30 epochs at batch size
    BATCH), val/in/out reconstructed at 4 start points."""
    return copy_tone_run(tone_run, tmp_path_factory.mktemp("field"))


def tone_stream(n_samples: int, seed: int = 0) -> np.ndarray:
    """The in-distribution tone, continuous over the whole stream, with a random start phase."""
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi)
    return np.exp(1j * (2 * np.pi * TONE * np.arange(n_samples) + phase)).astype(np.complex64)


def with_interferer(stream: np.ndarray, hit: range = HIT) -> np.ndarray:
    """A tone at INTERFERER cycles/sample, as strong as the signal, over the windows ``hit``."""
    stream = stream.copy()
    span = np.arange(hit.start * WINDOW, hit.stop * WINDOW)
    stream[span] += np.exp(2j * np.pi * INTERFERER * span).astype(np.complex64)
    return stream


def write_sigmf(path, samples: np.ndarray, **global_info):
    data_path = path.with_suffix(".sigmf-data")
    samples.astype(np.complex64).tofile(data_path)
    meta = sigmf.SigMFFile(global_info={"core:datatype": "cf32_le", **global_info}, data_file=data_path)
    meta.add_capture(0, metadata={"core:datetime": "2024-05-01T12:00:00+00:00"})
    meta.tofile(path.with_suffix(".sigmf-meta"))
    return path.with_suffix(".sigmf-meta")


def score_in_process(run, *flags: str) -> None:
    """score.py's main without a new interpreter (same flags, same code path)."""
    args = score.create_argparser().parse_args([f"--output_dir={run['runs']}", "--model_name=tiny",
                                                f"--batch_size={BATCH}", f"--fpr={FPR}", *flags])
    score_inputs(options_from(ScoringJob, args), Dist())


@pytest.fixture(scope="module")
def located(run):
    """An interferer in windows 20-22 of a 48-window SigMF recording (1 MHz, with a start time), scored with a plot."""
    meta = write_sigmf(run["root"] / "capture", with_interferer(tone_stream(N_WINDOWS * WINDOW + 5)),
                       **{"core:sample_rate": RATE})
    out = run["root"] / "capture.csv"
    score_in_process(run, f"--input={meta}", f"--out={out}", "--plot=1")
    return pd.read_csv(out), out


# ---------------------------------------------------------------------------------------------- localisation

def test_the_interferer_is_flagged_where_it_is_in_time_and_band(located):
    table, _ = located
    flagged = table[table["ood"] == 1]
    hits = flagged[flagged["offset"].between((HIT.start - 1) * WINDOW, HIT.stop * WINDOW)]
    assert len(hits) >= len(HIT), table[["offset", "score", "threshold", "ood"]].to_string()
    inside = flagged[flagged["offset"].between(HIT.start * WINDOW, (HIT.stop - 1) * WINDOW)]
    bin_hz = RATE / WINDOW  # 48-sample windows: 48 Welch bins
    assert (inside["band_center_hz"] - INTERFERER * RATE).abs().max() <= bin_hz, inside.to_string()
    assert (inside["band_z"] < 0).all()  # power the model does not rebuild


N_LONG = 960  # windows of the long recording, and val windows of its run


@pytest.fixture(scope="module")
def long_scored(run) -> pd.DataFrame:
    """A recording of N_LONG windows with the interferer in windows 20-22, streamed through score.py by a copy of
    the run reconstructed in one-step mode (4 network calls a window) with N_LONG new Tone windows as val."""
    root = run["root"] / "long"
    (root / "runs" / "tiny").mkdir(parents=True)
    for name in ("config.json", "checkpoint.pth"):
        shutil.copy(run["run"] / name, root / "runs" / "tiny" / name)
    val = write_processed(root / "Tone_raw_data_val.h5", tone_windows(N_LONG, 1), "Tone")
    result = run_inline("reconstruct.py", f"--output_dir={root / 'runs'}", "--model_name=tiny",
                        f"--validation_h5file={val}", "--run_in=0", "--run_out=0", "--reconstruction_mode=onestep",
                        "--inference_skip_factor=32", "--num_inference_steps=100", "--batch_size=64")
    assert result.returncode == 0, result.stderr
    np.save(root / "long.npy", with_interferer(tone_stream(N_LONG * WINDOW, seed=2)))
    score_in_process({"runs": root / "runs"}, f"--input={root / 'long.npy'}", f"--out={root / 'long.csv'}",
                     "--localise=0", "--batch_size=64")
    return pd.read_csv(root / "long.csv")


def test_elsewhere_flags_stay_near_the_target_rate(long_scored):
    clean = long_scored[~long_scored["offset"].between((HIT.start - 1) * WINDOW, HIT.stop * WINDOW)]
    # 955 clean windows against a threshold from 960 val windows at FPR 0.05: k = 912, and 99.9% of counts lie
    # in [21, 85] (2.2% to 8.9%) by conftest.flag_count_bounds (the threshold's spread and the windows'). With
    # the 43 clean windows of the 48-window capture and 24 val windows it would be 0 to 21 of 43: no check.
    low, high = flag_count_bounds(N_LONG, len(clean), FPR)
    assert len(clean) == N_LONG - 5 and (low, high) == (21, 85)
    assert low <= clean["ood"].sum() <= high, clean["ood"].sum()
    assert long_scored["ood"].iloc[list(HIT)].all()  # the interferer is still seen (the test ran on its windows)


def test_rows_carry_offset_time_and_hz_band_columns(located):
    table, out = located
    assert list(table.columns) == ["filename", "offset", "time_s", "time", "score", "threshold", "ood", "snr_est_db",
                                   *BAND_COLUMNS["hz"]]
    assert list(table["offset"]) == [WINDOW * i for i in range(N_WINDOWS)]
    np.testing.assert_allclose(table["time_s"], table["offset"] / RATE)
    assert table["time"].iloc[1] == "2024-05-01T12:00:00.000048+00:00"
    assert table.loc[table["ood"] == 0, "band_center_hz"].isna().all()  # bands for flagged windows only
    assert (table["ood"] == (table["score"] > table["threshold"])).all()
    png = out.with_name("capture.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- chunks and hop

N_CHUNKED, CHUNKED_HIT = 10, range(4, 7)  # the chunked stream: chunks of 1, 3 (the last one short) and all 10,
# which score.py's --batch_size of 8 cuts into two batches; the interferer in windows 4-6 gives flagged rows bands


@pytest.fixture(scope="module")
def stream_file(run):
    path = run["root"] / "stream.npy"
    np.save(path, with_interferer(tone_stream(N_CHUNKED * WINDOW + 11, seed=1), CHUNKED_HIT))
    return path


def test_chunked_scoring_equals_whole_file_scoring(run, stream_file):
    tables = {}
    for chunk in (1, 3, N_CHUNKED):
        out = run["root"] / f"chunk{chunk}.csv"
        score_in_process(run, f"--input={stream_file}", f"--out={out}", f"--chunk_windows={chunk}")
        tables[chunk] = out.read_bytes()
    assert tables[1] == tables[3] == tables[N_CHUNKED]
    streamed = pd.read_csv(run["root"] / "chunk1.csv")
    assert len(streamed) == N_CHUNKED and streamed["band_z"].notna().any()
    # the same windows as one processed file, scored the way reconstruct.py reads a set
    stream = np.load(stream_file)[:N_CHUNKED * WINDOW].reshape(N_CHUNKED, WINDOW)
    windows = np.stack([stream.real, stream.imag], axis=1).astype(np.float32)
    whole = write_processed(run["root"] / "whole" / "stream.h5", normalize_rms(stream_file, windows,
                                                                               np.zeros(N_CHUNKED, int)), "Stream")
    score_in_process(run, f"--input={whole}", f"--out={run['root'] / 'whole.csv'}")
    np.testing.assert_array_equal(pd.read_csv(run["root"] / "whole.csv")["score"], streamed["score"])


@pytest.mark.parametrize("hop, offsets", [(24, list(range(0, 200, 24))), (60, [0, 60, 120, 180])])
def test_hop_overlaps_or_skips_windows(run, tmp_path, hop, offsets):
    path = tmp_path / "short.npy"
    np.save(path, tone_stream(5 * WINDOW + 7))  # 247 samples
    out = tmp_path / "hop.csv"
    score_in_process(run, f"--input={path}", f"--out={out}", f"--hop={hop}", "--localise=0")
    table = pd.read_csv(out)
    assert list(table["offset"]) == offsets
    assert list(table["filename"]) == [f"short:{i}" for i in range(len(offsets))]
    assert list(table.columns) == ["filename", "offset", "score", "threshold", "ood", "snr_est_db"]


def test_units_follow_the_sample_rate(run, tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, tone_stream(4 * WINDOW))
    score_in_process(run, f"--input={path}", f"--out={tmp_path / 'cycles.csv'}")
    assert list(pd.read_csv(tmp_path / "cycles.csv").columns)[-3:] == list(BAND_COLUMNS["cycles"])
    score_in_process(run, f"--input={path}", f"--out={tmp_path / 'hz.csv'}", "--sample_rate=2e6")
    table = pd.read_csv(tmp_path / "hz.csv")
    assert "time" not in table.columns and list(table.columns)[-3:] == list(BAND_COLUMNS["hz"])
    np.testing.assert_allclose(table["time_s"], np.arange(4) * WINDOW / 2e6)


def test_a_failure_mid_recording_leaves_no_result_file(run, tmp_path):
    stream = tone_stream(30 * WINDOW)
    stream[25 * WINDOW:26 * WINDOW] = 0  # a silent window, refused under --normalize rms after 3 batches
    np.save(tmp_path / "gap.npy", stream)
    result = run_cli("score.py", f"--output_dir={run['runs']}", "--model_name=tiny", f"--batch_size={BATCH}",
                     f"--input={tmp_path / 'gap.npy'}", f"--out={tmp_path / 'gap.csv'}", "--chunk_windows=4",
                     check=False)
    assert result.returncode == 2 and f"window at sample {25 * WINDOW} is all zeros" in result.stderr
    assert list(tmp_path.glob("*.csv")) == [] and list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize("first_n", [None, 7])
def test_batches_do_not_depend_on_the_chunk_size(tmp_path, first_n):
    np.save(tmp_path / "s.npy", tone_stream(20 * 16 + 3))
    batches = {}
    for chunk in (1, 3, 100):
        options = FieldOptions(window=16, hop=12, chunk_windows=chunk, batch_size=4, normalize="rms", first_n=first_n,
                               units="auto", sample_rate=None, band_z=3.0, plot=False)
        with open_recording(tmp_path / "s.npy") as recording:
            total = recording.n_windows(16, 12) if first_n is None else first_n
            batches[chunk] = [(b.indices.tolist(), b.offsets.tolist(), b.iq.tobytes())
                              for b in window_batches(recording, options, total)]
    assert batches[1] == batches[3] == batches[100]
    indices = [index for batch in batches[1] for index in batch[0]]
    assert indices == list(range(first_n or 26)) and all(len(batch[0]) <= 4 for batch in batches[1])


# ---------------------------------------------------------------------------------------------- the band rule

def test_band_is_the_contiguous_run_above_threshold_around_the_peak():
    z = np.zeros(16)
    z[[5, 6, 7]] = [3.5, -6.0, 4.0]
    z[10] = 5.0  # above threshold but not contiguous with the peak
    band = strongest_band(z, threshold=3.0)
    assert band.center == pytest.approx(6 / 16) and band.width == pytest.approx(3 / 16) and band.z == -6.0


def test_a_strong_peak_keeps_only_the_bins_above_half_its_z():
    z = np.zeros(16)
    z[[3, 4, 5, 6, 7]] = [4.0, 12.0, 20.0, 9.0, 5.0]  # leakage of a strong tone around bin 5
    band = strongest_band(z, threshold=3.0)
    assert band.center == pytest.approx(4.5 / 16) and band.width == pytest.approx(2 / 16) and band.z == 20.0


def test_band_wraps_around_the_spectrum_edge():
    z = np.zeros(16)
    z[[15, 0, 1]] = [4.0, 9.0, 4.0]  # -1/16, 0, +1/16
    assert strongest_band(z, 3.0).center == pytest.approx(0.0)
    z = np.zeros(16)
    z[[7, 8]] = [5.0, 5.0]  # +7/16 and -8/16: a band across +-1/2
    band = strongest_band(z, 3.0)
    assert band.center == pytest.approx(-0.5 + 0.5 / 16) or band.center == pytest.approx(0.5 - 0.5 / 16)
    assert band.width == pytest.approx(2 / 16)


def test_no_bin_above_threshold_gives_no_band():
    band = strongest_band(np.array([0.5, -2.0, 1.0]), 3.0)
    assert np.isnan(band.center) and np.isnan(band.width) and band.z == -2.0


# ---------------------------------------------------------------------------------------------- the plot's memory

def test_timeline_stays_bounded_and_keeps_flags_and_their_bands():
    timeline = Timeline(n_bins=4, max_columns=4)
    n = 100
    scores = np.linspace(0.0, 1.0, n)
    flagged = np.zeros(n, bool)
    flagged[[37, 38]] = True
    centers = np.where(flagged, np.arange(n) / 1000, np.nan)
    for first in range(0, n, 7):  # batches of 7
        part = slice(first, first + 7)
        timeline.add(np.arange(n)[part] * 10, 10, np.ones((len(scores[part]), 4)), scores[part], flagged[part],
                     centers[part], np.full(len(scores[part]), 0.1))
        assert len(timeline.columns["start"]) < 8
    columns = timeline.finished()
    assert columns["count"].sum() == n and columns["start"][0] == 0 and columns["stop"][-1] == 1000
    assert columns["flagged"].sum() >= 1 and np.nanmax(columns["center"]) == pytest.approx(0.038)
    assert columns["score"].max() == 1.0


def test_snr_aware_scoring_reaches_raw_recordings(run, tmp_path, monkeypatch):
    """score.py --snr_aware=1 on a raw recording: each streamed window's blind SNR estimate reaches the detector's
    SNR adjustment (before, raw recordings carried none and were refused)."""
    from src.ood.snr_adjust import SnrAdjust
    seen = []
    adjust = SnrAdjust.__call__

    def recording(self, errors, snr):
        seen.append(None if snr is None else np.asarray(snr))
        return adjust(self, errors, snr)

    monkeypatch.setattr(SnrAdjust, "__call__", recording)
    np.save(tmp_path / "capture.npy", tone_stream(10 * WINDOW, seed=5))
    score_in_process(run, f"--input={tmp_path / 'capture.npy'}", f"--out={tmp_path / 'capture.csv'}", "--localise=0",
                     "--snr_aware=1")
    table = pd.read_csv(tmp_path / "capture.csv")
    assert len(table) == 10 and np.isfinite(table["score"]).all()
    streamed = [snr for snr in seen if snr is not None and len(snr) in (BATCH, 10 - BATCH)]
    assert sum(len(snr) for snr in streamed) == 10, seen  # every window of the recording went through it ...
    assert all(np.isfinite(snr).all() for snr in streamed)  # ... with its estimate
