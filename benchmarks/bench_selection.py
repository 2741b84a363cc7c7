"""Choose the default OOD score on selection data that shares nothing with the data the README reports.

Four draws of the synthetic generator with other seeds and other physics than the demo (samples per
symbol, roll-off, carrier offset, an SNR range), each with its own in-distribution family and
near-OOD out families (8-PSK or 16-QAM against QPSK, another roll-off or symbol rate, IQ imbalance,
phase noise, a weak tone under the signal). On each draw, as a user would, through the command
lines: prep; train the `small` UNet and the WaveNet DDPMs with train_ddpm.py's defaults, the VQ-VAE
and its LDM, the autoencoder and the feature baseline; reconstruct every diffusion model with PLMS at
skip factor 16 and in the cheap one-step mode at skip 1 (``<model>_onestep``, a copy of the run).
Then every candidate (score x metrics x start-point range, each plain and SNR-aware: ``--snr_aware``,
:mod:`src.ood.snr_adjust`) is scored on every draw with the code ood_detection.py reports with, and
the default is the candidate with the best mean AUROC averaged over draws and over the diffusion runs
made on every draw, ties broken by the worst family. The
demo data (seed 0, 8 samples/symbol, roll-off 0.35, 20 dB) is not among the draws; its table is
reported only after the choice.

    python -m benchmarks.bench_selection                       # everything (about 45 min a draw on 2 cores)
    python -m benchmarks.bench_selection --stage evaluate      # only re-score what is there
    python -m benchmarks.bench_selection --draws=B --models=unet,unet_onestep   # a part
    python -m benchmarks.bench_selection --stage evaluate --scores=1 --tables_dir=/tmp/rule   # CSVs elsewhere

Each step skips what is already done, so an interrupted run continues.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.synthetic_runs import (
    DIFFUSION_FAMILIES,
    Draw,
    benchmark_parser,
    checked_names,
    family,
    fused_names,
    model_label,
    model_names,
    print_table,
    setting_suffix,
    trained_model,
    with_front_end,
)
from src.errors import UserError
from src.ood.detector import Detector, ScoreOptions, error_table
from src.ood.evaluation import auroc_table, percentile_interval
from src.ood.ood_folder import SNR_EST_COLUMN, OodFolder, load_sets
from src.ood.snr_adjust import window_snrs

ROOT = Path(__file__).resolve().parents[1]

DRAWS = {
    "A": dict(seed=101, sps=8, rolloff=0.25, snr="10:20", cfo=0.02, inside="QPSK",
              outs=["PSK8", "QAM16", "QPSKro20", "QPSKsr", "GMSK", "OFDM"]),
    "B": dict(seed=102, sps=4, rolloff=0.5, snr="5:20", cfo=0.01, inside="QPSK",
              outs=["PSK8", "QAM16", "QPSKiq", "QPSKpn", "QPSKcw", "FM"]),
    "C": dict(seed=103, sps=6, rolloff=0.35, snr="0:20", cfo=0.005, inside="QAM16",
              outs=["QPSK", "PSK8", "OFDM", "GMSK", "Chirp"]),
    "D": dict(seed=104, sps=8, rolloff=0.35, snr="10:20", cfo=0.01, inside="OFDM",
              outs=["QPSK", "QAM16", "Chirp", "FM", "QPSKcw"]),
    "Q": dict(seed=105, sps=6, rolloff=0.3, snr="10:20", cfo=0.005, inside="QAM16",
              outs=["QAM32", "QAM64", "APSK16", "PSK16", "PSK8"]),
}
SCORES = ["zmean", "mahalanobis", "pooled", "bands"]  # zabs left out at 256 windows: last on every 64-window draw
METRIC_SETS = ["mse,env,lsd", "mse,mae,env,lsd", "env,lsd"]  # mse alone: never among the 8 best at 64 windows
# Start points kept (min_t, max_t, every k-th): the last two keep 10 of the 99, the cost of a one-step run at 10 network
# calls (reconstruct.py --inference_skip_factor=10 keeps t = 10, 110, ..., 910, the first of these). Scoring a subset
# of a 99-call run stands for that run: each start point's noise is drawn independently either way.
T_SETS = {"all t": (0, 1000, 1), "t <= 500": (0, 500, 1), "t >= 300": (300, 1000, 1),
          "every 10th t (10 calls)": (0, 1000, 10), "t <= 300, every 3rd (10 calls)": (0, 300, 3)}
TEN_CALLS = "(10 calls)"
MODELS = {model: model_label(model) for model in model_names(with_plms=True, with_ten_calls=True)}
FUSED_MODELS = {model: model_label(model) for model in fused_names(list(MODELS))}
# The runs the score candidates are ranked on: each diffusion family as trained (PLMS) and in one-step mode at
# 99 calls; the other settings (10 calls, the noise-free path) are scored with the default score only.
DIFFUSION = [model for model in MODELS
             if family(model) in DIFFUSION_FAMILIES and setting_suffix(model) in ("", "_onestep")]


SNR_AWARE = (False, True)  # each candidate plain and SNR-aware (errors moved to val's mean SNR, src.ood.snr_adjust)


def candidates():
    for score, metrics, (t_name, (min_t, max_t, t_skip)), aware in itertools.product(SCORES, METRIC_SETS,
                                                                                     T_SETS.items(), SNR_AWARE):
        yield (f"{score}{' snr-aware' if aware else ''} on {metrics}, {t_name}",
               ScoreOptions(score, metrics.split(","), min_t, max_t, t_skip, snr_aware=aware))


def run_aurocs(ood: Path, options: dict[str, ScoreOptions]) -> dict[str, pd.Series]:
    """AUROC per out family and their mean of every candidate on one run, as ood_detection.py scores it (the run's
    defaults filled in, fitted on val, every set scored by the fitted :class:`Detector`), its results read once: each
    set's errors per metric and its SNR estimates (:func:`src.ood.snr_adjust.window_snrs`: for results without
    ``snr_est_db``, from the h5 windows) are made once, and each candidate reads its metrics and start points. A run
    whose windows' SNR estimates are not found gets no SNR-aware candidates (and :func:`ranking` then leaves them out).
    """
    folder = OodFolder(ood)
    settings = folder.load_settings()
    val, inside, outs = load_sets(folder)
    frames = {"val": val, "in": inside, **outs}
    tables: dict[tuple[str, str], pd.DataFrame] = {}  # (set, metric) -> errors [signal, t]
    snrs = {}
    if any(option.snr_aware for option in options.values()):
        try:
            snrs = {name: window_snrs(frame, name) for name, frame in frames.items()}
        except UserError as err:
            print(f"{ood}: SNR-aware candidates left out, no SNR estimates ({err})", flush=True)
            options = {name: option for name, option in options.items() if not option.snr_aware}
    if snrs and SNR_EST_COLUMN not in val.columns:
        val[SNR_EST_COLUMN] = val["filename"].map(snrs["val"])

    def features(name: str, detector: Detector) -> pd.DataFrame:  # as feature_table, from the cached tables
        for metric in detector.metrics:
            if (name, metric) not in tables:
                tables[name, metric] = error_table(frames[name], metric, name)
        return pd.concat({metric: tables[name, metric][detector.ts] for metric in detector.metrics}, axis=1)

    aurocs = {}
    for name, option in options.items():
        detector = option.for_run(settings).fit(val)
        scores = {}
        for set_name in frames:
            table = features(set_name, detector)
            snr = snrs[set_name].reindex(table.index).to_numpy() if detector.snr_adjust is not None else None
            scores[set_name] = detector(table, snr)
        aurocs[name] = auroc_table(scores["in"], {set_name: scores[set_name] for set_name in outs})
    return aurocs


def evaluate(draws: list[Draw]) -> pd.DataFrame:
    """One row per (model, candidate, draw): mean and worst AUROC over the draw's out families."""
    rows, scored = [], {}  # scored: folder -> {candidate: AUROCs}; a *_auto model may stand on its plain run
    for draw in draws:
        for model in MODELS:
            ood = draw.runs / draw.actual(model) / "ood"
            if not (ood / "reconstruction.json").is_file():
                continue  # not run on this draw
            options = dict(candidates()) if model in DIFFUSION else {"run default": ScoreOptions(None, None)}
            if model == "autoencoder":
                options = {name: value for name, value in candidates()
                           if value.max_t >= 1000 and value.min_t == 0 and value.t_skip == 1}
            missing = {name: option for name, option in options.items() if name not in scored.setdefault(ood, {})}
            if missing:
                started = time.perf_counter()
                scored[ood].update(run_aurocs(ood, missing))
                print(f"scored {len(missing)} candidates on {ood} ({time.perf_counter() - started:.0f} s)", flush=True)
            for name in options:
                if name not in scored[ood]:
                    continue  # an SNR-aware candidate on a run without SNR estimates
                aurocs = scored[ood][name]
                families = aurocs.drop("mean")
                rows.append({"model": MODELS[model], "candidate": name, "draw": draw.name, "mean": aurocs["mean"],
                             "worst": families.min(), "worst family": families.idxmin()})
    return pd.DataFrame(rows)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (model, candidate): mean over draws of the mean AUROC, and the worst family over all draws."""
    grouped = rows.groupby(["model", "candidate"])
    table = pd.DataFrame({"mean AUROC": grouped["mean"].mean(), "worst family AUROC": grouped["worst"].min()})
    for draw, part in rows.groupby("draw"):
        table[f"mean {draw}"] = part.set_index(["model", "candidate"])["mean"]
    return table.sort_values(["mean AUROC", "worst family AUROC"], ascending=False)


def ranking(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The candidates, best first, by their mean AUROC averaged over the diffusion runs made on every draw
    (ties by the worst family, likewise averaged); and those runs' labels."""
    draws_per_model = rows.groupby("model")["draw"].nunique()
    complete = draws_per_model[draws_per_model == rows["draw"].nunique()].index
    diffusion = [MODELS[model] for model in DIFFUSION if MODELS[model] in complete]
    rows = rows[rows["model"].isin(diffusion)]
    runs = rows.groupby("candidate").size()
    table = summary(rows[rows["candidate"].isin(runs[runs == runs.max()].index)])  # candidates scored on every run
    by_candidate = table.groupby(level="candidate")[["mean AUROC", "worst family AUROC"]].mean()
    return by_candidate.sort_values(["mean AUROC", "worst family AUROC"], ascending=False), diffusion


def honest_row(draws: list[Draw], model: str) -> dict:
    """The README's selection row of one model (its default score): the mean AUROC averaged over the draws,
    with an interval from resampling frames in every draw; the worst family of any draw; cost per draw."""
    done = [draw for draw in draws if draw.has(model)]
    label = {**MODELS, **FUSED_MODELS}[model]
    summaries = [draw.summary(model, label) for draw in done]
    rows = pd.DataFrame([summary.row for summary in summaries])
    low, high = percentile_interval(np.mean([summary.mean_resamples for summary in summaries], axis=0))
    worst = rows.loc[rows["worst AUROC"].idxmin()]
    seconds = rows.reindex(columns=["train s", "reconstruct s"]).astype(float).mean()  # NaN when not timed (fused)
    return {"model": label, "draws": "".join(rows["benchmark"]), "mean AUROC": rows["mean AUROC"].mean(),
            "mean 95% interval": f"{low:.3f}-{high:.3f}",
            "worst": f"{worst['benchmark']} {worst['worst family']} {worst['worst AUROC']:.3f} "
                     f"({worst['worst 95% interval']})",
            "worst AUROC": worst["worst AUROC"], "calls/signal": rows["calls/signal"].iloc[0],
            **{f"{key} per draw": None if np.isnan(value) else round(value) for key, value in seconds.items()},
            **{f"mean {name}": mean for name, mean in zip(rows["benchmark"], rows["mean AUROC"])}}


def front_end_ranking(honest: pd.DataFrame) -> pd.DataFrame:
    """The front ends, best first: the mean AUROC (default score) averaged over draws and over the diffusion
    families run on every draw with both, ties by the worst family."""
    rows = honest[honest["model"].isin([MODELS[model] for model in DIFFUSION])].copy()
    rows["front end"] = ["auto" if "carrier auto" in label else "off" for label in rows["model"]]
    rows["family"] = [label.replace(", carrier auto", "") for label in rows["model"]]
    rows = rows[rows["draws"].str.len() == rows["draws"].str.len().max()]
    both = rows.groupby("family")["front end"].nunique()
    rows = rows[rows["family"].isin(both[both == 2].index)]
    table = rows.groupby("front end")[["mean AUROC", "worst AUROC"]].mean()
    return table.sort_values(["mean AUROC", "worst AUROC"], ascending=False)


def choose_score(draws: list[Draw], work_dir: Path) -> None:
    """Every score candidate on every draw, and the one the rule chooses (its CSVs written to ``work_dir``)."""
    rows = evaluate(draws)
    rows.to_csv(work_dir / "selection_rows.csv", index=False, float_format="%.4f")
    table = summary(rows)
    table.to_csv(work_dir / "selection.csv", float_format="%.4f")
    labels = [label for label in MODELS.values() if label in table.index.get_level_values("model")]
    for label in labels:
        print(f"\n{label}: the 8 best candidates (of {len(table.loc[label])})")
        print(table.loc[label].head(8).round(3).to_string())
    best, diffusion = ranking(rows)
    print(f"\nthe candidates averaged over the diffusion runs on every draw ({', '.join(diffusion)}), the 5 best:")
    print(best.head(5).round(3).to_string())
    print(f"\nchosen (best mean AUROC over draws and diffusion runs, ties by the worst family): {best.index[0]}")
    aware = best.index.str.contains(" snr-aware ")
    for label, part in (("plain", best[~aware]), ("SNR-aware", best[aware])):
        if len(part):
            print(f"the best {label} candidate: {part.index[0]} (mean {part.iloc[0]['mean AUROC']:.3f}, worst family "
                  f"{part.iloc[0]['worst family AUROC']:.3f})")
    ten = best[best.index.str.endswith(TEN_CALLS)]
    print(f"chosen among the settings of 10 network calls: {ten.index[0]} (mean {ten.iloc[0]['mean AUROC']:.3f} "
          f"against {best.iloc[0]['mean AUROC']:.3f})")


def main() -> None:
    parser = benchmark_parser(__doc__, "demo_out/selection", DRAWS)
    parser.add_argument("--scores", type=int, choices=[0, 1], default=0,
                        help="1: also score every candidate score on every run and print the rule's choice")
    parser.add_argument("--tables_dir", default=None,
                        help="where the rule's CSVs (selection*.csv) are written (default: --work_dir)")
    args = parser.parse_args()
    names, models = checked_names(parser, args, DRAWS, MODELS)
    work_dir = Path(args.work_dir)
    draws = [Draw(work_dir, name, DRAWS[name]) for name in names]
    started = time.perf_counter()
    if args.stage == "all":
        for draw in draws:
            print(f"draw {draw.name}: {draw.spec}", flush=True)
            draw.make_data()
            draw.train(sorted({trained_model(model) for model in models}))
            draw.reconstruct(models)
    pd.set_option("display.width", 200)
    print(f"\ncommand: {' '.join(sys.argv)}  ({time.perf_counter() - started:.0f} s)")
    tables_dir = Path(args.tables_dir) if args.tables_dir else work_dir
    tables_dir.mkdir(parents=True, exist_ok=True)
    if args.scores:
        choose_score(draws, tables_dir)
    print("\nevery model with its default score (the README's selection rows; seconds per draw):")
    present = [model for model in [*MODELS, *FUSED_MODELS] if any(draw.has(model) for draw in draws)]
    honest = print_table([honest_row(draws, model) for model in present])
    honest.to_csv(tables_dir / "selection_honest.csv", index=False, float_format="%.4f")
    if any(with_front_end(model) for model in present):
        print("\nfront ends over the diffusion runs made with both on every draw (default score):")
        ranked = front_end_ranking(honest)
        print(ranked.round(3).to_string())
        print(f"chosen: --carrier_recovery={ranked.index[0]}")


if __name__ == "__main__":
    main()
