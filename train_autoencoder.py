"""Train the convolutional autoencoder baseline on one signal type (reconstruction MSE).

Example:
    python train_autoencoder.py --output_dir=runs --model_name=autoencoder_QPSK --model_type=autoencoder \
        --training_h5file=data/processed/interferenceset_frame/QPSK_raw_data_train.h5 \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --n_epochs=400 --batch_size=40 --quick_test=0

reconstruct.py on this run writes the same results files with a single t = 0.
"""
from src.cli import Parser, comma_list, options_from, positive_int, run_main
from src.trainers.autoencoders import AutoencoderSizes, AutoencoderTrainer
from src.trainers.setup import TrainingJob, add_training_args, train_autoencoding_model


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_training_args(parser, n_epochs=100, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--model_type", choices=["autoencoder"], default="autoencoder", help="(default: %(default)s)")
    parser.add_argument("--channels", type=lambda v: [int(c) for c in comma_list(v)], default=None,
                        help="widths of the down-sampling levels (default: 32,64)")
    parser.add_argument("--latent_channels", type=positive_int, default=None,
                        help="bottleneck width; a last level halving the length again (default: 4)")
    parser.add_argument("--num_res_units", type=positive_int, default=None,
                        help="residual units per level (default: 1)")
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    train_autoencoding_model(options_from(TrainingJob, args), options_from(AutoencoderSizes, args), AutoencoderTrainer,
                             "autoencoder")


if __name__ == "__main__":
    run_main(main)
