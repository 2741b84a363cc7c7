"""AUROC per out family and SNR bin against the observation length K: the table `make demo-snr` prints.

    python -m benchmarks.bench_snr --output_dir=demo_out/runs --model_name=unet_small_QPSK_snr --integrate=1,2,4,8,16
    python -m benchmarks.bench_snr ... --snr_aware=1          # any score flag of ood_detection.py

The run is scored once, as ood_detection.py scores it (its default score unless the score flags say
otherwise; fitted on val alone); then for each K the decisions over K consecutive windows of a frame
(``ood_detection.py --integrate K``: the score of their mean log errors, fitted on val's K-window means; a
frame's tail of fewer than K windows is left out) are scored per SNR bin (``--snr_bin`` dB, the generator's SNR
that the results record) as ood_detection.py's per-SNR table does: the in set's decisions of the bin against each out
family's decisions of the same bin. Prints one table (rows: family and SNR bin, then the family over
all SNRs; columns: K), the in-set decisions per bin for each K, and the demo-snr targets (issue 24):
OFDM at least 0.95 in every bin per window, every family at least 0.90 per window at 10-20 dB and at
least 0.98 with K = 8. Reads results only: trains and reconstructs nothing.
"""
from __future__ import annotations

import argparse

import pandas as pd

from src.cli import Parser, comma_list, options_from, positive_float, positive_int, run_main, setup_logging
from src.ood.detection_stage import decision_view, method_line, score_run
from src.ood.detector import ScoreOptions
from src.ood.evaluation import auroc_table
from src.ood.flags import add_score_args
from src.ood.ood_folder import OodFolder
from src.ood.snr import SNR_BIN_DB, bin_label, snr_table
from src.run import Run

TARGET_BINS = (10.0, 15.0)  # lower edges of the bins the per-family targets are set at (10-20 dB)


def k_list(value: str) -> list[int]:
    try:
        values = [positive_int(item) for item in comma_list(value)]
    except (ValueError, argparse.ArgumentTypeError) as err:
        raise argparse.ArgumentTypeError(f"--integrate takes a comma list of positive integers, got {value!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("--integrate needs at least one K")
    return sorted(set(values))


def k_tables(output_dir: str, model_name: str, options: ScoreOptions, ks: list[int],
             width: float = SNR_BIN_DB) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """AUROC [(family, bin), K] (bin "all": every SNR), in-set decisions [bin, K], and the method line."""
    scored = score_run(OodFolder(Run(output_dir, model_name).ood_dir), options)
    aurocs, counts = {}, {}
    for k in ks:
        scores, _, snrs = decision_view(scored, k)
        outs = {name: scores[name] for name in scored.outs}
        table = snr_table(scores["in"], outs, snrs["in"], {name: snrs[name] for name in outs}, width)
        if table is None:
            raise SystemExit(f"error: the results of {model_name} record no SNR (column snr_db); the table needs data "
                             "generated with --snr_db LO:HI")
        table["bin"] = [bin_label(lo, hi) for lo, hi in zip(table["snr_lo"], table["snr_hi"])]
        column = table.set_index(["dataset", "bin"])["AUROC"]
        overall = auroc_table(scores["in"], outs).drop("mean")
        aurocs[f"K={k}"] = pd.concat([column, pd.Series(overall.to_numpy(), index=pd.MultiIndex.from_tuples(
            [(name, "all") for name in overall.index]))])
        counts[f"K={k}"] = table.groupby("bin", sort=False)["n_in"].first()
    order = sorted({lo for lo in pd.concat(list(aurocs.values())).index.get_level_values(1) if lo != "all"},
                   key=lambda label: float(label.split("..")[0]))
    rows = pd.MultiIndex.from_product([sorted(scored.outs), [*order, "all"]], names=["family", "snr_db"])
    table = pd.DataFrame(aurocs).reindex(rows)
    method = method_line(model_name, scored.settings, scored.detector)
    return table, pd.DataFrame(counts).reindex(order), method


def targets(table: pd.DataFrame, width: float) -> list[str]:
    """The demo-snr targets of issue 24, each with its numbers and met / not met."""
    def cells(k: int, bins=None) -> pd.Series:
        column = table[f"K={k}"].drop(index="all", level="snr_db")
        if bins is not None:
            column = column[column.index.get_level_values("snr_db").isin(bins)]
        return column

    lines = []
    high = [bin_label(lo, lo + width) for lo in TARGET_BINS]
    checks = [("OFDM >= 0.95 in every bin, per window (K=1)", cells(1).xs("OFDM", level="family")
               if "K=1" in table and "OFDM" in table.index.get_level_values(0) else None, 0.95),
              ("every family >= 0.90 at 10-20 dB, per window (K=1)", cells(1, high) if "K=1" in table else None, 0.90),
              ("every family >= 0.98 at 10-20 dB with K=8", cells(8, high) if "K=8" in table else None, 0.98),
              ("every family >= 0.98 in every bin with K=8", cells(8) if "K=8" in table else None, 0.98)]
    for text, values, level in checks:
        if values is None or values.empty:
            lines.append(f"{text}: not measured")
            continue
        worst = values.idxmin()
        label = worst if isinstance(worst, str) else " ".join(str(part) for part in worst)
        verdict = "met" if (values >= level).all() else f"NOT met ({int((values < level).sum())} cell(s) below)"
        lines.append(f"{text}: {verdict}; lowest {values.min():.3f} ({label} dB)")
    return lines


def main() -> None:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folder")
    parser.add_argument("--model_name", required=True, help="the run (reconstructed with SNRs recorded)")
    parser.add_argument("--integrate", type=k_list, default=[1, 2, 4, 8, 16],
                        help="comma list of observation lengths K in windows (default: 1,2,4,8,16)")
    parser.add_argument("--snr_bin", type=positive_float, default=SNR_BIN_DB,
                        help="width in dB of the SNR bins (default: %(default)s)")
    add_score_args(parser)
    args = parser.parse_args()
    setup_logging()
    table, counts, method = k_tables(args.output_dir, args.model_name, options_from(ScoreOptions, args), args.integrate,
                                     args.snr_bin)
    print(method)
    print(f"\nAUROC per out family and SNR bin ({args.snr_bin:g} dB; in against out decisions of the same bin) against "
          "K, the windows per decision (the score of the mean log errors of K consecutive windows of a frame; "
          "all: every SNR)")
    print(table.to_string(float_format=lambda value: f"{value:.3f}", na_rep="-"))
    print("\nin-set decisions per bin (n_in) for each K")
    print(counts.to_string())
    print("\ntargets (issue 24):")
    print("\n".join(f"  {line}" for line in targets(table, args.snr_bin)))


if __name__ == "__main__":
    run_main(main)
