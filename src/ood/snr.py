"""Detection against SNR: AUROC, Pd at Pfa 1 % and 5 %, FPR@95TPR per SNR bin, where the results record SNRs.

Synthetic data generated with ``--snr_db LO:HI`` gives every frame its own SNR; prep copies it to each
window (``snr_db`` in the processed files) and reconstruct.py to the results files (column ``snr_db``).
Here the signals are grouped into bins of ``width`` dB, [k * width, (k + 1) * width), and in each bin
the in set's signals of that bin are scored against each out set's signals of the same bin, so one
row tells how well the detector separates the families at that SNR. A bin that lacks in or out
signals gets no AUROC (NaN).

``Pd@Pfa1%`` and ``Pd@Pfa5%`` are the detection probability at a set false-alarm rate, a point of
the same ROC curve: the share of the bin's out signals scored above the threshold that flags at most
Pfa of the bin's in signals (the floor(Pfa n_in) + 1-th largest in score). A bin with fewer than
1 / Pfa in signals cannot set that Pfa: NaN.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from src.errors import UserError
from src.ood.evaluation import auroc, fpr_at_tpr
from src.ood.ood_folder import SNR_COLUMN

SNR_BIN_DB = 5.0  # default bin width (ood_detection.py --snr_bin)
PFAS = (0.01, 0.05)  # the set false-alarm rates of the Pd columns
PD_COLUMNS = [f"Pd@Pfa{pfa:.0%}" for pfa in PFAS]
SNR_COLUMNS = ["snr_lo", "snr_hi", "dataset", "n_in", "n_out", "AUROC", *PD_COLUMNS, "FPR@95TPR"]
MEASURES = ("AUROC", *PD_COLUMNS, "FPR@95TPR")


def signal_snrs(frame: pd.DataFrame) -> pd.Series | None:
    """Each signal's SNR in dB (filename -> dB) from a results frame, or None where it records none."""
    if SNR_COLUMN not in frame.columns:
        return None
    return frame.groupby("filename", sort=False)[SNR_COLUMN].first()


def bin_lower_edges(snrs: pd.Series, width: float) -> pd.Series:
    """The lower edge of each SNR's bin, floor(snr / width) * width."""
    if not width > 0:
        raise UserError(f"--snr_bin must be a positive number of dB, got {width}")
    return np.floor(snrs / width) * width


def snr_table(in_scores: pd.Series, outs: dict[str, pd.Series], in_snrs: pd.Series | None,
              out_snrs: dict[str, pd.Series | None], width: float = SNR_BIN_DB) -> pd.DataFrame | None:
    """Rows (bin, out set) with columns :data:`SNR_COLUMNS`; None when the in set records no SNR.

    ``in_scores``/``outs`` are per-signal scores indexed by signal id; ``in_snrs``/``out_snrs`` the
    signals' SNRs (:func:`signal_snrs`). Out sets without SNRs are left out.
    """
    if in_snrs is None:
        return None
    in_bins = bin_lower_edges(in_snrs.reindex(in_scores.index), width)
    rows = []
    for name in sorted(outs):
        if out_snrs.get(name) is None:
            continue
        out_bins = bin_lower_edges(out_snrs[name].reindex(outs[name].index), width)
        for lower in sorted(set(in_bins.dropna()) | set(out_bins.dropna())):
            rows.append(bin_row(in_scores[in_bins == lower].to_numpy(), outs[name][out_bins == lower].to_numpy(),
                                lower, width, name))
    return pd.DataFrame(rows, columns=SNR_COLUMNS) if rows else None


def pd_at_pfa(in_scores: np.ndarray, out_scores: np.ndarray, pfa: float) -> float:
    """Share of out scores above the threshold that flags at most ``pfa`` of the in scores (NaN: too few in)."""
    in_scores, out_scores = np.sort(np.asarray(in_scores, dtype=float)), np.asarray(out_scores, dtype=float)
    allowed = int(np.floor(pfa * len(in_scores) + 1e-9))  # in scores that may lie above the threshold
    if allowed < 1 or len(out_scores) == 0:
        return np.nan
    threshold = in_scores[len(in_scores) - allowed - 1]
    return float(np.mean(out_scores > threshold))


def bin_row(in_scores: np.ndarray, out_scores: np.ndarray, lower: float, width: float, name: str) -> dict:
    both = len(in_scores) > 0 and len(out_scores) > 0
    return {"snr_lo": lower, "snr_hi": lower + width, "dataset": name, "n_in": len(in_scores),
            "n_out": len(out_scores), "AUROC": auroc(in_scores, out_scores) if both else np.nan,
            **{column: pd_at_pfa(in_scores, out_scores, pfa) if both else np.nan
               for column, pfa in zip(PD_COLUMNS, PFAS)},
            "FPR@95TPR": fpr_at_tpr(in_scores, out_scores) if both else np.nan}


def bin_label(lower: float, upper: float) -> str:
    return f"{lower:g}..{upper:g}"


def wide_table(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    """``measure`` as [SNR bin, out set], bins ascending, with the bin's in-signal count ``n_in``."""
    table = table.sort_values(["snr_lo", "dataset"])
    labels = [bin_label(lo, hi) for lo, hi in zip(table["snr_lo"], table["snr_hi"])]
    wide = table.assign(snr_db=labels).pivot(index="snr_db", columns="dataset", values=measure)
    order = list(dict.fromkeys(labels))
    counts = table.assign(snr_db=labels).groupby("snr_db")["n_in"].first()
    return wide.reindex(order).assign(n_in=counts.reindex(order).to_numpy())


def format_snr_table(table: pd.DataFrame, measure: str) -> str:
    """A fixed-width table of ``measure``: one row per SNR bin (dB), one column per out set, then n_in."""
    wide = wide_table(table, measure)
    width = max(len("snr_db"), *(len(label) for label in wide.index))
    names = [str(column) for column in wide.columns]
    header = "snr_db".ljust(width) + "".join(f"  {name:>{max(8, len(name))}}" for name in names)
    lines = [header, "-" * len(header)]
    for label, row in wide.iterrows():
        cells = [f"{int(value)}" if name == "n_in" else "-" if pd.isna(value) else f"{value:.3f}"
                 for name, value in zip(names, row)]
        lines.append(label.ljust(width) + "".join(f"  {cell:>{max(8, len(name))}}" for name, cell in zip(names, cells)))
    return "\n".join(lines)
