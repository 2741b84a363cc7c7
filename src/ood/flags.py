"""The OOD flags several scripts share: how reconstruction errors become one score per signal."""
from __future__ import annotations

import argparse

from src.cli import comma_list, flag, positive_int
from src.ood.detector import DEFAULT_METRICS, DEFAULT_SCORE, DEFAULT_SNR_AWARE, FEATURE_DEFAULTS
from src.ood.ood_folder import METRICS
from src.ood.score_functions import DESCRIPTIONS, SCORES


def metric_list(value: str) -> list[str]:
    """``--metric``: a comma list of known reconstruction errors, duplicates dropped."""
    metrics = comma_list(value)
    unknown = [metric for metric in metrics if metric not in METRICS]
    if unknown or not metrics:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown or value!r}; choose from {','.join(METRICS)}")
    return list(dict.fromkeys(metrics))


def add_score_args(parser: argparse.ArgumentParser) -> None:
    """How reconstruction errors become one OOD score per signal (fitted on the run's val results)."""
    defaults = (f"{DEFAULT_SCORE} on {','.join(DEFAULT_METRICS)}; for a train_features.py run "
                f"{FEATURE_DEFAULTS[0]} on {','.join(FEATURE_DEFAULTS[1])}")
    parser.add_argument("--score", choices=list(SCORES), default=None,
                        help="OOD score, fitted on val only: " + "; ".join(
                            f"{name}: {text}" for name, text in DESCRIPTIONS.items()) + f" (default: {defaults})")
    parser.add_argument("--metric", "--score_metric", dest="metric", type=metric_list, default=None,
                        help=f"reconstruction error(s) the score reads, comma separated, from {','.join(METRICS)} "
                             "(mse, mae: waveform; env: envelope; lsd: log-spectral distance in dB; feat: the "
                             f"feature baseline's distance) (default: {defaults})")
    parser.add_argument("--min_t", type=int, default=0, help="smallest start point kept (default: %(default)s)")
    parser.add_argument("--max_t", type=int, default=1000, help="largest start point kept (default: %(default)s)")
    parser.add_argument("--t_skip", type=positive_int, default=1,
                        help="keep every k-th start point within the range (default: %(default)s)")
    parser.add_argument("--auto_t", type=flag, default=0,
                        help="1: also drop start points whose val errors diverge or are constant (decided on "
                             "val only; the kept t are printed) (default: %(default)s)")
    parser.add_argument("--snr_aware", type=flag, default=None,
                        help="1: SNR-aware score: each log error is regressed on the window's blind SNR estimate "
                             "(snr_est_db) over val and every window's errors are moved to val's mean SNR along these "
                             "lines before scoring, so a window is compared with val windows of its own SNR; 0: off "
                             f"(default: {int(DEFAULT_SNR_AWARE)}" + (", where the estimates are found; never for the "
                             "feature baseline" if DEFAULT_SNR_AWARE else "") + ")")


def add_integrate_arg(parser: argparse.ArgumentParser) -> None:
    """``--integrate K``: decide over K consecutive windows of one emission (:mod:`src.ood.decisions`)."""
    parser.add_argument("--integrate", type=positive_int, default=1,
                        help="decide over K consecutive windows of one emission (a frame of a processed file; "
                             "consecutive windows of a raw recording) by the score of their mean log errors (fitted on "
                             "val's K-window means); a frame's "
                             "tail of fewer than K windows is left out (default: %(default)s, single windows)")
