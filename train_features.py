"""Fit the model-free baseline: classical RF features of one signal type and their statistics.

Example:
    python train_features.py --output_dir=runs --model_name=features_QPSK \
        --training_h5file=data/processed/interferenceset_frame/QPSK_raw_data_train.h5 \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5

Each window's features: its log Welch spectrum, envelope statistics (mean, coefficient of variation,
kurtosis, peak-to-average power), normalised fourth-order cumulants |C20|/C21, |C40|, |C41|, C42
(over C21^2) and cyclic features: the strength (dB above its neighbourhood) of the strongest spectral
line of z^2, z^4 and z^8 (z = I + jQ) and of the symbol-rate line of |z|^2, all blind to carrier
offset and phase. The run scores a window by the Mahalanobis distance of its features from the
training windows' (Ledoit-Wolf covariance). It takes seconds; reconstruct.py, ood_detection.py and
score.py then treat it like any other run (one "start point" t = 0, the distance as the ``feat`` column).
"""
from src.cli import Parser, add_carrier_arg, add_loader_args, add_run_args, options_from, positive_int, run_main
from src.features import FEATURE_PSD_SEGMENT
from src.trainers.features import FeatureJob, fit_feature_baseline


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_run_args(parser)
    parser.add_argument("--training_h5file", required=True, help="processed h5 of the in-distribution type")
    parser.add_argument("--validation_h5file", required=True, help="processed h5, for the reported val distance")
    parser.add_argument("--first_n", type=positive_int, default=None, help="use only the first N training windows")
    parser.add_argument("--psd_segment", type=positive_int, default=FEATURE_PSD_SEGMENT,
                        help="Welch segment (= spectral features) (default: %(default)s)")
    parser.add_argument("--spatial_dimension", type=int, default=1, help="signals are 1D; only 1 is accepted")
    add_carrier_arg(parser)
    add_loader_args(parser, batch_size=256)
    return parser


def main() -> None:
    fit_feature_baseline(options_from(FeatureJob, create_argparser().parse_args()))


if __name__ == "__main__":
    run_main(main)
