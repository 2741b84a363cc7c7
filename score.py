"""Score new recordings with a trained run: flag the windows that look out of distribution.

Example:
    python score.py --output_dir=runs --model_name=unet_small_QPSK --input=capture.sigmf-meta --fpr=0.05

Inputs (--input, comma separated): a processed h5 (``dataset`` float [N, 2, T], as written by
src/data/signal_trim_and_unpack.py; used as is, so its T must be the run's signal length) or a raw
recording (``*_raw_data.h5`` with complex ``dataset``, ``.sigmf-meta`` + ``.sigmf-data``, ``.npy``,
memory-mapped), streamed in chunks in bounded memory and cut into windows of the run's signal length
(config.json, data.signal_length) every --hop samples (a tail shorter than a window is dropped),
each scaled to unit power (--normalize rms, as in prep).

Each window is reconstructed with exactly the settings of the run's val reconstruction (read from
<run>/ood/reconstruction.json) and scored by a detector fitted on <run>/ood/results_val.csv alone,
as ood_detection.py fits it. The threshold is the (1 - fpr) quantile of the cross-fitted val scores
(each val signal scored by a detector fitted without it), so about --fpr of in-distribution windows
are flagged. Writes <run>/ood/scores_<input stem>.csv (or --out) with one row per window:
filename (window id <input stem>:<index>), score (higher = more unusual), threshold, ood (1 = flagged).
Raw recordings add offset (first sample), time_s and time (where the sample rate and start are known)
and, for flagged windows, the band that deviates most from the val windows' spectra: band_center_hz,
band_width_hz (or band_center, band_width in cycles/sample) and band_z. --plot=1 writes beside the CSV
a waterfall with the flagged windows' bands boxed over a score-over-time trace.

Every row also gives snr_est_db, the window's blind SNR estimate (dB). --pfa P (instead of --fpr)
sets a threshold per --snr_band dB band of snr_est_db, each the (1 - P) quantile of the cross-fitted
val scores in that band, so about P of in-distribution windows are flagged at every SNR (a band with
too few val windows uses the pooled threshold; the log says which). --integrate K adds score_int,
threshold_int and ood_int on the last window of each group of K consecutive windows of one emission
(a frame of a processed file, consecutive windows of a raw recording): the score of their mean log
errors against its own threshold, set on val windows integrated the same way. --annotate=1 (SigMF inputs)
writes <csv stem>.sigmf-meta beside the CSV: the recording's metadata with the flagged segments as
annotations, pointing at the recording's samples; the input is never changed.
"""
from src.cli import (
    Parser,
    add_carrier_arg,
    add_dist_args,
    add_loader_args,
    comma_list,
    flag,
    fraction,
    options_from,
    positive_float,
    positive_int,
    run_main,
)
from src.data.prep import NORMALIZATIONS
from src.data.streaming import DEFAULT_CHUNK_WINDOWS
from src.distributed import distributed
from src.field.field_scoring import UNITS
from src.field.localisation import BAND_Z
from src.field.scoring_stage import ScoringJob, score_inputs
from src.ood.decisions import SNR_BAND_DB
from src.ood.flags import add_integrate_arg, add_score_args
from src.runtime import PRECISIONS


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", required=True, help="run folder name inside --output_dir")
    parser.add_argument("--input", type=comma_list, required=True,
                        help="file(s) to score, comma separated: processed h5, *_raw_data.h5, .sigmf-meta or .npy")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--fpr", type=fraction, default=0.05,
                        help="target false-positive rate: the share of in-distribution windows flagged, one threshold "
                             "for all (default: %(default)s)")
    target.add_argument("--pfa", type=fraction, default=None,
                        help="target false-alarm rate held in every band of estimated SNR (snr_est_db): a threshold "
                             "per --snr_band dB band from the cross-fitted val scores of that band (instead of --fpr)")
    parser.add_argument("--snr_band", type=positive_float, default=SNR_BAND_DB,
                        help="width in dB of the SNR bands of --pfa (default: %(default)s)")
    add_integrate_arg(parser)
    parser.add_argument("--annotate", type=flag, default=0,
                        help="1: for each SigMF input write <csv stem>.sigmf-meta beside the CSV whose annotations "
                             "are the flagged segments (consecutive flagged windows merged; band edges in Hz where "
                             "localised); the input is never changed (default: 0)")
    parser.add_argument("--out", default=None,
                        help="CSV to write (all inputs together); default: <run>/ood/scores_<input stem>.csv each")
    parser.add_argument("--normalize", choices=NORMALIZATIONS, default="rms",
                        help="raw recordings only: rms scales each window to unit power, as prep does; none keeps "
                             "the raw scale (default: %(default)s). Processed h5 files are used as they are")
    parser.add_argument("--first_n", type=positive_int, default=None,
                        help="only the first N windows of each input (default: all)")
    add_carrier_arg(parser, from_config=True)
    add_field_args(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the network's arithmetic (auto, fp32, bf16; auto as in reconstruct.py); default: that "
                             "of the run's val reconstruction, so new windows are scored as the threshold was set")
    add_score_args(parser)  # --score, --metric, --min_t, --max_t, --t_skip, --auto_t as ood_detection.py
    parser.add_argument("--max_chains", type=positive_int, default=None,
                        help="most signals (start points x batch) in one network call (default: as reconstruct.py)")
    add_loader_args(parser, batch_size=32)
    add_dist_args(parser)
    return parser


def add_field_args(parser: Parser) -> None:
    """Flags of raw recordings: windowing, time and frequency units, localisation and the plot."""
    parser.add_argument("--hop", type=positive_int, default=None,
                        help="raw recordings: samples from one window's start to the next; smaller than the window "
                             "overlaps windows, larger skips ahead (default: the window length)")
    parser.add_argument("--chunk_windows", type=positive_int, default=DEFAULT_CHUNK_WINDOWS,
                        help="raw recordings: windows read from the file at a time (memory, not results; "
                             "default: %(default)s)")
    parser.add_argument("--sample_rate", type=positive_float, default=None,
                        help="raw recordings: sample rate in Hz where the recording records none (SigMF's "
                             "core:sample_rate is used otherwise); gives time_s and Hz bands")
    parser.add_argument("--units", choices=UNITS, default="auto",
                        help="band columns in hz (band_center_hz, band_width_hz; needs the sample rate) or cycles "
                             "(cycles/sample: band_center, band_width); auto: hz where the rate is known "
                             "(default: %(default)s)")
    parser.add_argument("--localise", type=flag, default=1,
                        help="1: give each flagged window of a raw recording its most anomalous band (rebuilds up "
                             "to 256 val windows once, cached in <run>/ood/val_spectra.npz); 0: scores only "
                             "(default: 1)")
    parser.add_argument("--band_z", type=positive_float, default=BAND_Z,
                        help="|z| a frequency bin must reach to belong to a band (default: %(default)s)")
    parser.add_argument("--val_h5file", default=None,
                        help="the val file reconstruct.py got as --validation_h5file, for localisation "
                             "(default: the run's config.json data.validation_h5file)")
    parser.add_argument("--plot", type=flag, default=0,
                        help="1: write beside each raw recording's CSV a PNG of its waterfall, the flagged windows' "
                             "bands boxed, over its score trace with the threshold (default: 0)")


def main() -> None:
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        score_inputs(options_from(ScoringJob, args), dist)


if __name__ == "__main__":
    run_main(main)
