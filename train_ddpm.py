"""Train a 1D diffusion model (DDPM) on one signal type.

Example:
    python train_ddpm.py --output_dir=runs --model_name=unet_small_QPSK --model_type=small \
        --training_h5file=data/processed/interferenceset_frame/QPSK_raw_data_train.h5 \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --n_epochs=20 --batch_size=64

Re-running the same command resumes from checkpoint_last.pth; a larger --n_epochs trains on.
"""

from src.cli import Parser, add_loader_args, add_run_args, add_scheduler_args, comma_list, flag, positive_int, \
    run_main, setup_logging
from src.data.datasets import SignalDataset
from src.diffusion.schedulers import scheduler_config
from src.networks import MODEL_TYPES, unet_config
from src.run import Run
from src.trainers.ddpm import QUICK_TEST_BATCHES, DiffusionTrainer, TrainSettings, ddpm_config, prepare_run
from src.trainers.runtime import seed_everything
from src.errors import UserError
from src.io import make_dir


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_run_args(parser)
    parser.add_argument("--training_h5file", required=True, help="processed h5 of the in-distribution type")
    parser.add_argument("--validation_h5file", required=True, help="processed h5 for the validation loss")
    parser.add_argument("--model_type", choices=MODEL_TYPES, default="small", help="UNet size (default: %(default)s)")
    parser.add_argument("--channels", type=lambda v: [int(c) for c in comma_list(v)], default=None,
                        help="override the preset's widths per level, e.g. 16,32,64")
    parser.add_argument("--attention_levels", type=lambda v: [flag(c) for c in comma_list(v)], default=None,
                        help="override the preset's attention per level, e.g. 0,0,1")
    parser.add_argument("--num_res_blocks", type=positive_int, default=None, help="override the preset's blocks per level")
    parser.add_argument("--n_epochs", type=positive_int, default=50, help="(default: %(default)s)")
    parser.add_argument("--learning_rate", type=float, default=1e-4, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--eval_freq", type=positive_int, default=1, help="epochs between validations (default: %(default)s)")
    parser.add_argument("--checkpoint_every", type=int, default=0,
                        help="also keep checkpoint_<epoch>.pth every this many epochs; 0: never (default: %(default)s)")
    parser.add_argument("--first_n", type=positive_int, default=None, help="use only the first N training windows")
    parser.add_argument("--quick_test", type=flag, default=False,
                        help=f"1: a smoke test, {QUICK_TEST_BATCHES} batches per epoch (default: 0)")
    parser.add_argument("--spatial_dimension", type=int, default=1, help="signals are 1D; only 1 is accepted")
    add_loader_args(parser, batch_size=64)
    add_scheduler_args(parser, training=True)
    return parser


def main() -> None:
    args = create_argparser().parse_args()
    if args.spatial_dimension != 1:
        raise UserError(f"--spatial_dimension={args.spatial_dimension}: RF signals are 1D, use 1")
    run = Run(args.output_dir, args.model_name)
    train_set = SignalDataset(args.training_h5file, first_n=args.first_n, cache=args.cache_data)
    val_set = SignalDataset(args.validation_h5file, cache=args.cache_data)
    if val_set.signal_length != train_set.signal_length:
        raise UserError(f"{args.validation_h5file} holds windows of {val_set.signal_length} samples but "
                        f"{args.training_h5file} of {train_set.signal_length}; prepare both with one --trim_length")
    network = unet_config(args.model_type, args.channels, args.attention_levels, args.num_res_blocks)
    scheduler = scheduler_config(args.beta_schedule, args.beta_start, args.beta_end, args.prediction_type,
                                 args.b_scale, args.snr_shift)
    make_dir(run.path)
    setup_logging(run.log_file)
    config = prepare_run(run, ddpm_config(network, scheduler, train_set.signal_length,
                                          args.training_h5file, args.validation_h5file))
    seed_everything(args.seed)
    settings = TrainSettings(n_epochs=args.n_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                             eval_freq=args.eval_freq, checkpoint_every=args.checkpoint_every, seed=args.seed,
                             num_workers=args.num_workers, cache_data=args.cache_data, quick_test=args.quick_test)
    DiffusionTrainer(run, config, settings, train_set, val_set).fit()


if __name__ == "__main__":
    run_main(main)
