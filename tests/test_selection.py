"""The selection benchmark chooses the default score from its own draws only."""
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_hard, bench_selection, synthetic_runs
from benchmarks.synthetic_runs import Draw
from src.ood.ood_folder import results_frame, write_results

ROOT = Path(__file__).resolve().parents[1]
OPENED: list[str] | None = None  # every path opened while recording: Python's open (pandas, json) and h5py


def record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
        OPENED.append(str(Path(os.fsdecode(args[0])).resolve()))


sys.addaudithook(record_opens)  # for the whole session (hooks cannot be removed); silent unless OPENED is a list


class RecordedH5File(h5py.File):
    """h5py.File that records its path: HDF5 opens files in C, past Python's open audit event."""

    def __init__(self, name, *args, **kwargs):
        if OPENED is not None and isinstance(name, (str, bytes, Path)):
            OPENED.append(str(Path(os.fsdecode(name)).resolve()))
        super().__init__(name, *args, **kwargs)


CODE = tuple(str(Path(prefix).resolve()) + os.sep for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix})
SYSTEM = ("/sys/", "/proc/", "/dev/")  # the OS's own files (joblib reads the cgroup's CPU quota)


def data_opens(opened: list[str]) -> list[str]:
    """The opened paths that are not code: not in Python's installation or environment (modules imported on
    first use, packages' metadata), not the toolkit's own modules, not the OS's pseudo-files."""
    def code(path: str) -> bool:
        return path.startswith(CODE + SYSTEM) or (path.startswith(str(ROOT) + os.sep) and
                                                  path.endswith((".py", ".pyc")))
    return [path for path in opened if not code(path)]


@contextlib.contextmanager
def recording_opens(monkeypatch) -> Iterator[list[str]]:
    """Every path opened inside the block (Python's open, pandas, json, numpy and h5py)."""
    global OPENED
    monkeypatch.setattr(h5py, "File", RecordedH5File)
    OPENED = []
    try:
        yield OPENED
    finally:
        OPENED = None


def fake_ood(ood: Path, rng: np.random.Generator, outs: list[str], mode: str, shift: float,
             metrics: tuple = ("mse", "mae", "env", "lsd")) -> None:
    """A reconstruction's results: val and in alike (4 frames of 3 windows each, log-normal errors at 3 start
    points), each out set's errors ``shift`` larger in log: 0 makes it a copy of the in set (every score ties,
    AUROC 0.5), 6 (20 standard deviations) puts every out window above every in window (AUROC 1), -6 below."""
    ood.mkdir(parents=True)
    (ood / "reconstruction.json").write_text(json.dumps({"mode": mode}))
    ts, ids = [100, 400, 700], [f"{frame}_{window}" for frame in range(4) for window in range(3)]
    val = {metric: rng.lognormal(0.0, 0.3, (len(ts), len(ids))) for metric in metrics}
    inside = {metric: rng.lognormal(0.0, 0.3, (len(ts), len(ids))) for metric in metrics}
    sets = {"val": val, "in": inside, **{name: {metric: errors * np.exp(shift) for metric, errors in inside.items()}
                                         for name in outs}}
    for name, errors in sets.items():
        set_type = name if name in ("val", "in") else "out"
        frames = [f"{name}:{signal.split('_')[0]}" for signal in ids]
        write_results(results_frame([f"{name}:{signal}" for signal in ids], set_type, name, ts, errors, frames=frames),
                      ood / f"results_{name}.csv")


def fake_draws(work: Path, rng: np.random.Generator, names: str = "XY") -> list[Draw]:
    """Draws whose unet separates every out family (AUROC 1), with a features run that does too."""
    draws = [Draw(work, name, {"outs": ["F", "G"]}) for name in names]
    for draw in draws:
        fake_ood(draw.runs / "unet" / "ood", rng, ["F", "G"], "plms", shift=6.0)
        fake_ood(draw.runs / "features" / "ood", rng, ["F", "G"], "features", shift=6.0, metrics=("feat",))
    return draws


def test_selection_reads_nothing_outside_its_draws(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    work = tmp_path / "selection"
    draws = fake_draws(work, rng)
    # Decoys, each where a wrong path would lead, with results that rank every out family below in (AUROC 0):
    # a draw of the same work folder that was not handed over, the work folder without the draw's name, and
    # the default --work_dir (demo_out/selection) below the working directory.
    monkeypatch.chdir(tmp_path)
    for decoy in (work / "Z" / "runs", work / "runs", tmp_path / "demo_out" / "selection" / "X" / "runs"):
        fake_ood(decoy / "unet" / "ood", rng, ["F", "G"], "plms", shift=-6.0)
    # 8 of the candidates (each is read and scored alike; all 60 on 2 draws take most of a minute)
    monkeypatch.setattr(bench_selection, "SCORES", ["zmean", "mahalanobis"])
    monkeypatch.setattr(bench_selection, "METRIC_SETS", ["mse", "mse,mae,env,lsd"])
    monkeypatch.setattr(bench_selection, "T_SETS", {"all t": (0, 1000, 1), "t >= 300": (300, 1000, 1)})
    with recording_opens(monkeypatch) as opened:
        rows = bench_selection.evaluate(draws)
    inside = tuple(str(draw.root.resolve()) + os.sep for draw in draws)
    assert [path for path in data_opens(opened) if not path.startswith(inside)] == []
    for draw in draws:  # the path ran: every results file of both runs of both draws was read
        for model in ("unet", "features"):
            for name in ("val", "in", "F", "G"):
                assert str((draw.runs / model / "ood" / f"results_{name}.csv").resolve()) in opened, (draw.name, model)
    assert set(rows["draw"]) == {"X", "Y"}
    unet = rows[rows["model"] == bench_selection.MODELS["unet"]]
    assert len(unet) == 2 * 8
    assert (unet["mean"] == 1.0).all() and (unet["worst"] == 1.0).all()  # the draws' AUROC, not the decoys' 0


def test_h5_reads_are_recorded(tmp_path, monkeypatch):
    """The recorder sees what the selection test relies on it to see: h5py, pandas and json reads."""
    with h5py.File(tmp_path / "a.h5", "w") as handle:
        handle["x"] = np.zeros(2)
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "b.csv")
    (tmp_path / "c.json").write_text("{}")
    with recording_opens(monkeypatch) as opened:
        with h5py.File(tmp_path / "a.h5", "r"):
            pass
        pd.read_csv(tmp_path / "b.csv")
        json.loads((tmp_path / "c.json").read_text())
    assert [str((tmp_path / name).resolve()) for name in ("a.h5", "b.csv", "c.json")] == opened


def test_main_prints_the_honest_rows_of_the_draws_it_is_given(tmp_path, monkeypatch, capsys):
    """bench_selection's command line at --stage=evaluate on fake draws: one row per model with its default score,
    averaged over the draws named; the front end chosen by those rows."""
    rng = np.random.default_rng(1)
    work = tmp_path / "selection"
    draws = fake_draws(work, rng)
    for draw in draws:  # the auto front end separates (AUROC 1), the plain one cannot (its out sets copy in: 0.5)
        (draw.runs / "unet").rename(draw.runs / "unet_auto")
        fake_ood(draw.runs / "unet" / "ood", rng, ["F", "G"], "plms", shift=0.0)
    fake_ood(work / "Z" / "runs" / "unet" / "ood", rng, ["F", "G"], "plms", shift=-6.0)  # not named: not read
    monkeypatch.setattr(bench_selection, "DRAWS", {name: {"outs": ["F", "G"]} for name in "XYZ"})
    monkeypatch.setattr(synthetic_runs, "N_BOOTSTRAP", 20)  # the intervals are not checked here
    monkeypatch.setattr(sys, "argv", ["bench_selection.py", "--stage=evaluate", "--draws=X,Y", f"--work_dir={work}"])
    with recording_opens(monkeypatch) as opened:
        bench_selection.main()
    printed = capsys.readouterr().out
    honest = work / "selection_honest.csv"
    inside = tuple(str(draw.root.resolve()) + os.sep for draw in draws)
    outside = [path for path in data_opens(opened) if not path.startswith(inside)]
    assert outside and all(Path(path).parent == work.resolve() for path in outside), outside  # its output only:
    assert all(Path(path).name.startswith((honest.name, f".{honest.name}.")) for path in outside), outside
    label = bench_selection.MODELS
    # the fused unet + features: its out windows' features z (20 sd) tops every in window's largest z
    expected = {label["unet"]: 0.5, label["unet_auto"]: 1.0, label["features"]: 1.0,
                bench_selection.FUSED_MODELS["fused_unet"]: 1.0}
    for model, auroc in expected.items():
        match = re.search(rf"^\s*{re.escape(model)}\s+XY\s+(\S+)\s", printed, flags=re.MULTILINE)
        assert match, (model, printed)
        assert float(match.group(1)) == auroc, (model, match.group(0))
    assert len(re.findall(r"\s+XY\s+", printed)) == len(expected)  # no other row, no row of draw Z
    assert "chosen: --carrier_recovery=auto" in printed
    table = pd.read_csv(honest).set_index("model")
    assert table["mean AUROC"].to_dict() == expected and set(table["draws"]) == {"XY"}


def rows_of(table: dict) -> pd.DataFrame:
    """Selection rows from {(model, candidate): [(draw, mean, worst)]}."""
    return pd.DataFrame([{"model": model, "candidate": candidate, "draw": draw, "mean": mean, "worst": worst,
                          "worst family": "F"}
                         for (model, candidate), values in table.items() for draw, mean, worst in values])


def test_ranking_averages_the_diffusion_runs_made_on_every_draw():
    unet, onestep, wavenet = (bench_selection.MODELS[name] for name in ("unet", "unet_onestep", "wavenet_onestep"))
    rows = rows_of({
        (unet, "a"): [("A", 0.80, 0.5), ("B", 0.70, 0.4)],        # mean 0.75, worst 0.4
        (unet, "b"): [("A", 0.70, 0.6), ("B", 0.70, 0.6)],        # mean 0.70, worst 0.6
        (onestep, "a"): [("A", 0.60, 0.3), ("B", 0.60, 0.3)],     # mean 0.60
        (onestep, "b"): [("A", 0.70, 0.6), ("B", 0.74, 0.6)],     # mean 0.72
        (wavenet, "a"): [("A", 0.10, 0.1)],                       # on one draw only: left out
        (wavenet, "b"): [("A", 0.99, 0.9)],
        ("features", "run default"): [("A", 0.99, 0.9), ("B", 0.99, 0.9)],  # not a diffusion run
    })
    best, used = bench_selection.ranking(rows)
    assert sorted(used) == sorted([unet, onestep])
    # a: (0.75 + 0.60) / 2 = 0.675; b: (0.70 + 0.72) / 2 = 0.71
    assert list(best.index) == ["b", "a"]
    assert best.loc["b", "mean AUROC"] == pytest.approx(0.71)
    assert best.loc["a", "worst family AUROC"] == pytest.approx(0.35)


def test_ties_go_to_the_better_worst_family():
    unet = bench_selection.MODELS["unet"]
    rows = rows_of({(unet, "a"): [("A", 0.8, 0.2)], (unet, "b"): [("A", 0.8, 0.5)]})
    assert list(bench_selection.ranking(rows)[0].index) == ["b", "a"]


def test_no_draw_shares_a_seed_with_the_data_the_readme_reports():
    makefile = (ROOT / "Makefile").read_text()
    generator_lines = [line for line in makefile.splitlines() if "src.data.synthetic " in line]
    reported_seeds = {int(seed) for line in generator_lines for seed in re.findall(r"--seed[ =](\d+)", line)}
    assert reported_seeds, "no synthetic data command with a seed found in the Makefile"
    draw_seeds = [spec["seed"] for spec in bench_selection.DRAWS.values()]
    assert len(set(draw_seeds)) == len(draw_seeds)
    assert not reported_seeds & set(draw_seeds)


def test_no_reported_benchmark_is_a_selection_draw():
    """bench_hard's reported draws (hard, qam, and demo with the Makefile demo's seed 0) chose nothing: none
    shares a seed with a selection draw."""
    reported = [spec["seed"] for spec in bench_hard.REPORTED.values()]
    assert len(reported) == len(bench_hard.REPORTED) == len(set(reported))
    assert not set(reported) & {spec["seed"] for spec in bench_selection.DRAWS.values()}


def test_front_end_ranking_averages_the_families_run_with_both_on_every_draw():
    label = bench_selection.MODELS
    honest = pd.DataFrame([
        {"model": label["unet_onestep"], "draws": "AB", "mean AUROC": 0.70, "worst AUROC": 0.40},
        {"model": label["unet_auto_onestep"], "draws": "AB", "mean AUROC": 0.80, "worst AUROC": 0.30},
        {"model": label["ldm_onestep"], "draws": "AB", "mean AUROC": 0.76, "worst AUROC": 0.50},
        {"model": label["ldm_auto_onestep"], "draws": "AB", "mean AUROC": 0.72, "worst AUROC": 0.50},
        {"model": label["wavenet_auto_onestep"], "draws": "AB", "mean AUROC": 0.99, "worst AUROC": 0.9},  # no "off"
        {"model": label["features_auto"], "draws": "AB", "mean AUROC": 0.99, "worst AUROC": 0.9},  # not diffusion
        {"model": label["wavenet_onestep"], "draws": "A", "mean AUROC": 0.10, "worst AUROC": 0.1},  # one draw
    ])
    ranked = bench_selection.front_end_ranking(honest)
    # auto: (0.80 + 0.72) / 2 = 0.76; off: (0.70 + 0.76) / 2 = 0.73
    assert list(ranked.index) == ["auto", "off"]
    assert ranked.loc["auto", "mean AUROC"] == pytest.approx(0.76)
    assert ranked.loc["off", "worst AUROC"] == pytest.approx(0.45)


def test_auto_runs_stand_in_for_plain_ones_only_where_auto_chose_no_order(tmp_path):
    draw = Draw(tmp_path, "X", {"outs": ["F"]})
    assert draw.actual("unet_auto_onestep") == "unet_auto_onestep"  # not known yet: run it
    (draw.runs / "features_auto").mkdir(parents=True)
    config = draw.runs / "features_auto" / "config.json"
    config.write_text(json.dumps({"data": {"carrier_order": 0}}))
    assert draw.actual("unet_auto_onestep") == "unet_onestep" and draw.actual("features_auto") == "features_auto"
    config.write_text(json.dumps({"data": {"carrier_order": 4}}))
    assert draw.actual("ldm_auto") == "ldm_auto"


def test_ten_call_runs_reconstruct_the_trained_run_at_every_10th_start_point(tmp_path, monkeypatch):
    draw = Draw(tmp_path, "X", {"inside": "QPSK", "outs": ["F"]})
    (draw.runs / "unet_auto").mkdir(parents=True)
    for name in ("config.json", "checkpoint.pth"):
        (draw.runs / "unet_auto" / name).write_text("{}")
    commands = []
    monkeypatch.setattr(Draw, "timed", lambda self, key, *command: commands.append((key, command)))
    draw.reconstruct(["unet_auto_onestep10"])
    (key, command), = commands
    assert key == "reconstruct unet_auto_onestep10" and "--model_name=unet_auto_onestep10" in command
    assert "--inference_skip_factor=10" in command and "--reconstruction_mode=onestep" in command
    assert (draw.runs / "unet_auto_onestep10" / "checkpoint.pth").is_file()  # a copy of the trained run
    assert synthetic_runs.model_label("unet_auto_onestep10") == "DDPM UNet small, onestep skip 10, carrier auto"


def test_paired_difference_compares_two_runs_on_the_same_frames(tmp_path):
    rng = np.random.default_rng(3)
    draw = Draw(tmp_path, "X", {"outs": ["F", "G"]})
    fake_ood(draw.runs / "unet_onestep" / "ood", rng, ["F", "G"], "onestep", shift=6.0)  # AUROC 1
    fake_ood(draw.runs / "unet_onestep10" / "ood", rng, ["F", "G"], "onestep", shift=0.0)  # out = in: ties, 0.5
    worse = synthetic_runs.paired_difference(draw, "unet_onestep10", "unet_onestep")
    low, high = (float(value) for value in worse["paired 95% interval"].split(" to "))
    assert worse["difference"] == -0.5 and low < -0.5 < high < 0.0  # resampled frames move the 0.5, not the 1
    same = synthetic_runs.paired_difference(draw, "unet_onestep10", "unet_onestep10")
    assert same["difference"] == 0.0 and same["paired 95% interval"] == "+0.000 to +0.000"  # same frames both sides
