"""report.md and its PNG plots for one run: the metrics table, ROC curves, score histograms, z against t.

Everything is drawn from the scores and errors ood_detection.py already computed; figures use the
Agg canvas of :mod:`src.figures` (no windows, nothing global).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from src.figures import new_figure
from src.io import atomic_path
from src.ood.detector import Detector, feature_table
from src.ood.ood_folder import REPORT_DIR, OodFolder
from src.ood.score_functions import ZScore
from src.ood.snr import PD_COLUMNS


def roc_figure(inside: pd.Series, outs: dict[str, pd.Series], aurocs: pd.Series) -> Figure:
    figure = new_figure(5.5, 5.0)
    axes = figure.add_subplot()
    for name in sorted(outs):
        labels = np.r_[np.zeros(len(inside)), np.ones(len(outs[name]))]
        fpr, tpr, _ = roc_curve(labels, np.r_[inside.to_numpy(), outs[name].to_numpy()])
        axes.plot(fpr, tpr, label=f"{name} (AUROC {aurocs[name]:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.set(xlabel="false positive rate (in flagged)", ylabel="true positive rate (out flagged)",
             title="ROC per out dataset", xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize="small")
    return figure


def histogram_figure(sets: dict[str, pd.Series], score: str) -> Figure:
    """Per-signal scores of every set on shared bins (log bins when the scores span decades)."""
    figure = new_figure(7.0, 4.0)
    axes = figure.add_subplot()
    values = np.concatenate([scores.to_numpy() for scores in sets.values()])
    values = values[np.isfinite(values) & (values < np.finfo(np.float64).max)]
    logarithmic = values.min() > 0 and values.max() / values.min() > 30
    bins = np.geomspace(values.min(), values.max(), 40) if logarithmic else np.linspace(values.min(), values.max(), 40)
    for name, scores in sets.items():
        axes.hist(np.clip(scores.to_numpy(), bins[0], bins[-1]), bins=bins, histtype="step", linewidth=1.5,
                  label=name, density=True)
    if logarithmic:
        axes.set_xscale("log")
    axes.set(xlabel=f"{score} score (higher = more unusual)", ylabel="density", title="Per-signal OOD scores")
    axes.legend(fontsize="small")
    return figure


def z_profiles(detector: Detector, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Mean z-score over each set's signals, as [metric, t], with val's mean and std per (metric, t)."""
    zscore = ZScore().fit(detector.val_features.to_numpy(), groups=None)
    profiles = {}
    for name, frame in frames.items():
        features = feature_table(frame, detector.metrics, detector.ts, name)
        z = pd.Series(zscore.z(features.to_numpy()).mean(axis=0), index=features.columns)
        profiles[name] = z.unstack(level=1)
    return profiles


def z_profile_figure(profiles: dict[str, pd.DataFrame], metrics: list[str]) -> Figure:
    figure = new_figure(4.0 * len(metrics), 3.6)
    for index, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), index + 1)
        for name, profile in profiles.items():
            axes.plot(profile.columns, profile.loc[metric], marker="o", markersize=3, label=name)
        axes.axhline(0.0, color="grey", linestyle=":", linewidth=1)
        axes.set(xlabel="start point t", ylabel="mean z-score" if index == 0 else None, title=metric)
    figure.axes[-1].legend(fontsize="small")
    return figure


def snr_figure(table: pd.DataFrame) -> Figure:
    """AUROC and FPR@95TPR against SNR (bin centres), one line per out dataset."""
    figure = new_figure(10.0, 4.0)
    for index, (measure, limits) in enumerate((("AUROC", (0.0, 1.02)), ("FPR@95TPR", (-0.02, 1.02)))):
        axes = figure.add_subplot(1, 2, index + 1)
        for name, rows in table.groupby("dataset"):
            axes.plot((rows["snr_lo"] + rows["snr_hi"]) / 2, rows[measure], marker="o", markersize=4, label=name)
        axes.set(xlabel="SNR (dB, bin centre)", ylabel=measure, ylim=limits, title=f"{measure} per SNR bin")
    figure.axes[0].axhline(0.5, color="grey", linestyle=":", linewidth=1)
    figure.axes[0].legend(fontsize="small")
    return figure


def snr_section(table: pd.DataFrame) -> list[str]:
    """report.md's per-SNR section: the table (long form) and its plot."""
    measures = [column for column in ("AUROC", *PD_COLUMNS, "FPR@95TPR") if column in table.columns]
    lines = ["| SNR (dB) | dataset | n_in | n_out | " + " | ".join(measures) + " |",
             "|---|---|---|---|" + "---|" * len(measures)]
    for row in table.sort_values(["snr_lo", "dataset"]).to_dict("records"):
        cells = ("–" if pd.isna(row[key]) else f"{row[key]:.3f}" for key in measures)
        lines.append(f"| {row['snr_lo']:g}..{row['snr_hi']:g} | {row['dataset']} | {row['n_in']} | {row['n_out']} | "
                     + " | ".join(cells) + " |")
    return ["## Detection against SNR", "",
            "The in set's signals of each SNR bin against each out set's signals of the same bin; Pd@PfaX: the share "
            "of out flagged at the threshold that flags at most X of the bin's in signals (– with fewer than 1/X).", "",
            *lines, "", f"![detection against SNR]({REPORT_DIR}/snr.png)", ""]


def save_png(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.tight_layout()
        figure.savefig(tmp, format="png", dpi=110)


def markdown_table(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return "–" if pd.isna(value) else f"{value:.3f}"

    header = "| dataset | " + " | ".join(table.columns) + " |"
    lines = [header, "|" + "---|" * (len(table.columns) + 1)]
    lines += [f"| {name} | " + " | ".join(cell(value) for value in row) + " |" for name, row in table.iterrows()]
    return "\n".join(lines)


def write_report(folder: OodFolder, title: str, method_lines: list[str], metrics: pd.DataFrame, detector: Detector,
                 scores: dict[str, pd.Series], frames: dict[str, pd.DataFrame],
                 snr: pd.DataFrame | None = None) -> Path:
    """Write the ood folder's report.md and its PNGs; ``scores``/``frames`` hold val, in and each out set;
    ``snr``, the per-SNR table (:mod:`src.ood.snr`), adds a section where the data records SNRs."""
    outs = {name: value for name, value in scores.items() if name not in ("val", "in")}
    plots = {"roc.png": roc_figure(scores["in"], outs, metrics["AUROC"]),
             "score_histograms.png": histogram_figure(scores, detector.score),
             "z_against_t.png": z_profile_figure(z_profiles(detector, frames), detector.metrics)}
    if snr is not None:
        plots["snr.png"] = snr_figure(snr)
    for name, figure in plots.items():
        save_png(figure, folder.report_dir / name)
    lines = [f"# {title}", "", *[f"- {line}" for line in method_lines], "",
             ("AUROC and AUPR-Out: out is the positive class; AUPR-In: in is; FPR@95TPR: fraction of out "
              "accepted at the threshold that accepts 95% of in. AUROC_low/high: bootstrap 95% interval, "
              "resampling frames (the independent units), not windows."), "",
             markdown_table(metrics), "",
             "## ROC curves", "", f"![ROC curves]({REPORT_DIR}/roc.png)", "",
             "## Per-signal scores", "", f"![score histograms]({REPORT_DIR}/score_histograms.png)", "",
             "## Mean z-score against start point t", "",
             "z = (error - val mean) / val std at each (metric, t); val sits at 0 by construction.", "",
             f"![mean z against t]({REPORT_DIR}/z_against_t.png)", "",
             *(snr_section(snr) if snr is not None else [])]
    path = folder.report_file
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path
