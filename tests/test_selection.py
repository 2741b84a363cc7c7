"""The selection benchmark chooses the default score from its own draws only."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_selection
from benchmarks.synthetic_runs import Draw
from src.ood.ood_folder import results_frame, write_results

ROOT = Path(__file__).resolve().parents[1]
OPENED: list[str] | None = None  # paths opened while recording


def record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, Path)):
        OPENED.append(str(Path(args[0]).resolve()))


sys.addaudithook(record_opens)


def fake_ood(ood: Path, rng: np.random.Generator, outs: list[str], mode: str,
             metrics: tuple = ("mse", "mae", "env", "lsd")) -> None:
    """A reconstruction's results: val and in alike, each out set's errors larger."""
    ood.mkdir(parents=True)
    (ood / "reconstruction.json").write_text(json.dumps({"mode": mode}))
    ts = [100, 400, 700]
    shifts = {"val": 0.0, "in": 0.0, **{name: 0.5 + index for index, name in enumerate(outs)}}
    for name, shift in shifts.items():
        errors = {metric: rng.lognormal(shift, 0.3, (len(ts), 12)) for metric in metrics}
        set_type = name if name in ("val", "in") else "out"
        ids = [f"{name}:{frame}_{window}" for frame in range(4) for window in range(3)]
        write_results(results_frame(ids, set_type, name, ts, errors), ood / f"results_{name}.csv")


def test_selection_reads_nothing_outside_its_draws(tmp_path):
    global OPENED
    rng = np.random.default_rng(0)
    draws = [Draw(tmp_path / "selection", name, {"outs": ["F", "G"]}) for name in ("X", "Y")]
    for draw in draws:
        fake_ood(draw.runs / "unet" / "ood", rng, ["F", "G"], "plms")
        fake_ood(draw.runs / "features" / "ood", rng, ["F", "G"], "features", ("feat",))
    fake_ood(tmp_path / "demo" / "runs" / "unet" / "ood", rng, ["F", "G"], "plms")  # the reported data
    OPENED = []
    try:
        rows = bench_selection.evaluate(draws)
    finally:
        opened, OPENED = OPENED, None
    data = [path for path in opened if str(tmp_path) in path]
    assert data, "evaluate opened none of the draws' files"
    assert all(path.startswith(str(tmp_path / "selection")) for path in data), data
    assert any("/X/runs/unet/ood/results_val.csv" in path for path in data)
    assert set(rows["draw"]) == {"X", "Y"}
    assert len(rows[rows["model"] == bench_selection.MODELS["unet"]]) == 2 * len(dict(bench_selection.candidates()))


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
