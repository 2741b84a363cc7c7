"""Score new recordings with a trained run: flag the windows that look out of distribution.

Example:
    python score.py --output_dir=runs --model_name=unet_small_QPSK --input=capture.sigmf-meta --fpr=0.05

Inputs (--input, comma separated): a processed h5 (``dataset`` float [N, 2, T], as written by
src/data/signal_trim_and_unpack.py; used as is, so its T must be the run's signal length) or a raw
recording (``*_raw_data.h5`` with complex ``dataset``, ``.sigmf-meta`` + ``.sigmf-data``, ``.npy``),
cut into consecutive windows of the run's signal length (config.json, data.signal_length; a stream's
tail is dropped) and scaled per window to unit power (--normalize rms, as in prep).

Each window is reconstructed with exactly the settings of the run's val reconstruction (read from
<run>/ood/reconstruction.json) and scored by a detector fitted on <run>/ood/results_val.csv alone,
as ood_detection.py fits it. The threshold is the (1 - fpr) quantile of the cross-fitted val scores
(each val signal scored by a detector fitted without it), so about --fpr of in-distribution windows
are flagged. Writes <run>/ood/scores_<input stem>.csv (or --out) with one row per window:
filename (window id <input stem>:<index>), score (higher = more unusual), threshold, ood (1 = flagged).
"""
from src.cli import Parser, add_dist_args, add_loader_args, comma_list, fraction, positive_int, run_main
from src.data.prep import NORMALIZATIONS
from src.distributed import distributed
from src.ood.flags import add_score_args
from src.ood.scoring_stage import score_inputs


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", required=True, help="run folder name inside --output_dir")
    parser.add_argument("--input", type=comma_list, required=True,
                        help="file(s) to score, comma separated: processed h5, *_raw_data.h5, .sigmf-meta or .npy")
    parser.add_argument("--fpr", type=fraction, default=0.05,
                        help="target false-positive rate: the share of in-distribution windows flagged "
                             "(default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="CSV to write (all inputs together); default: <run>/ood/scores_<input stem>.csv each")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="rms",
                        help="raw recordings only: rms scales each window to unit power, as prep does; none keeps "
                             "the raw scale (default: %(default)s). Processed h5 files are used as they are")
    parser.add_argument("--first_n", type=positive_int, default=None,
                        help="only the first N windows of each input (default: all)")
    add_score_args(parser)  # --score, --metric, --min_t, --max_t, --t_skip, --auto_t as ood_detection.py
    parser.add_argument("--max_chains", type=positive_int, default=None,
                        help="most signals (start points x batch) in one network call (default: as reconstruct.py)")
    add_loader_args(parser, batch_size=32)
    add_dist_args(parser)
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        score_inputs(args, dist)


if __name__ == "__main__":
    run_main(main)
