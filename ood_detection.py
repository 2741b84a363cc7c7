"""Score reconstructed signals and report how well they flag unseen signal types.

Example:
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK
    python ood_detection.py --output_dir=runs --model_name=unet_small_QPSK,wavenet_QPSK --score=zmean --metric=mse

Reads <run>/ood/results_*.csv written by reconstruct.py. Every results file other than val and in
is an out dataset. The score is fitted on val only and evaluated on in (test) and out. Per run it
writes, in <run>/ood/: metrics_<metrics>_<score>.csv (AUROC with a bootstrap 95% interval, AUPR-In,
AUPR-Out, FPR@95TPR per out dataset), auroc_<metrics>_<score>.json (settings and AUROCs), and
report.md with PNG plots in report/ (ROC curves, score histograms, mean z against t). For several
runs, the AUROC table is also written as <output_dir>/ood_comparison_<metrics>_<score>.csv.
Where the results record each signal's SNR (synthetic data made with --snr_db LO:HI), it also prints
AUROC, Pd at Pfa 1% and 5% and FPR@95TPR per SNR bin (--snr_bin dB wide) and writes them as
snr_<metrics>_<score>.csv. --integrate K scores decisions over K consecutive windows of a frame (the score
of their mean log errors, fitted on val's K-window means) instead of single windows; the files' suffix then
ends in _k<K>. --fuse_with=RUN adds each run fused with RUN (e.g. the feature baseline): metrics_fused_<RUN>.csv.
"""
from src.cli import Parser, comma_list, flag, options_from, positive_float, run_main, setup_logging
from src.ood.detection_stage import DetectionJob, detect
from src.ood.flags import add_integrate_arg, add_score_args
from src.ood.snr import SNR_BIN_DB


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", type=comma_list, required=True, help="run name(s), comma separated")
    add_score_args(parser)
    add_integrate_arg(parser)
    parser.add_argument("--n_bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the AUROC 95%% interval; 0 skips it (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap (default: %(default)s)")
    parser.add_argument("--snr_bin", type=positive_float, default=SNR_BIN_DB,
                        help="width in dB of the SNR bins of the per-SNR table, where the results record SNRs "
                             "(default: %(default)s)")
    parser.add_argument("--fuse_with", default=None,
                        help="also score each run fused with this run of the same data (e.g. the feature baseline "
                             "features_QPSK): per window the larger of the two scores, each standardised against its "
                             "cross-fitted val scores (docs/usage.md, 'The fused detector')")
    parser.add_argument("--report", type=flag, default=1,
                        help="1: write report.md and its PNG plots in each run's ood folder (default: %(default)s)")
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    setup_logging()
    print(detect(options_from(DetectionJob, args, model_names=args.model_name)))


if __name__ == "__main__":
    run_main(main)
