"""What the three training scripts share: their common flags, data, run folder and settings."""
from __future__ import annotations

from src.cli import Parser, add_dist_args, add_loader_args, add_run_args, flag, positive_int, setup_logging
from src.data.datasets import SignalDataset
from src.errors import UserError
from src.io import make_dir
from src.networks import network_config
from src.run import Run
from src.trainers.base import QUICK_TEST_BATCHES, TrainSettings, prepare_run
from src.trainers.ddpm import data_section
from src.distributed import Dist, distributed, on_main
from src.runtime import seed_everything


def add_training_args(parser: Parser, n_epochs: int, batch_size: int, learning_rate: float) -> None:
    add_run_args(parser)
    parser.add_argument("--training_h5file", required=True, help="processed h5 of the in-distribution type")
    parser.add_argument("--validation_h5file", required=True, help="processed h5 for the validation loss")
    parser.add_argument("--n_epochs", type=positive_int, default=n_epochs, help="(default: %(default)s)")
    parser.add_argument("--learning_rate", type=float, default=learning_rate,
                        help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--eval_freq", type=positive_int, default=1,
                        help="epochs between validations (default: %(default)s)")
    parser.add_argument("--checkpoint_every", type=int, default=0,
                        help="also keep checkpoint_<epoch>.pth every this many epochs; 0: never (default: %(default)s)")
    parser.add_argument("--first_n", type=positive_int, default=None, help="use only the first N training windows")
    parser.add_argument("--quick_test", type=flag, default=False,
                        help=f"1: a smoke test, {QUICK_TEST_BATCHES} batches per epoch (default: 0)")
    parser.add_argument("--figures", type=flag, default=True,
                        help="1: at every evaluation, log TensorBoard figures of the first validation signals "
                             "and their reconstructions (default: 1)")
    parser.add_argument("--spatial_dimension", type=int, default=1, help="signals are 1D; only 1 is accepted")
    add_loader_args(parser, batch_size=batch_size)
    add_dist_args(parser)


def load_training_sets(args) -> tuple[SignalDataset, SignalDataset]:
    if args.spatial_dimension != 1:
        raise UserError(f"--spatial_dimension={args.spatial_dimension}: RF signals are 1D, use 1")
    train_set = SignalDataset(args.training_h5file, first_n=args.first_n, cache=args.cache_data)
    val_set = SignalDataset(args.validation_h5file, cache=args.cache_data)
    if val_set.signal_length != train_set.signal_length:
        raise UserError(f"{args.validation_h5file} holds windows of {val_set.signal_length} samples but "
                        f"{args.training_h5file} of {train_set.signal_length}; prepare both with one --trim_length")
    return train_set, val_set


def start_run(args, config: dict, dist: Dist, config_name: str = "config.json") -> tuple[Run, dict]:
    """Create (or reopen) the run folder on the main process, start logging there, and seed everything."""
    run = Run(args.output_dir, args.model_name, config_name)

    def create() -> dict:
        make_dir(run.path)
        return prepare_run(run, config)

    config = on_main(dist, create)
    setup_logging(run.log_file, main_process=dist.is_main)
    seed_everything(args.seed)
    return run, config


def settings_from(args) -> TrainSettings:
    return TrainSettings(n_epochs=args.n_epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         eval_freq=args.eval_freq, checkpoint_every=args.checkpoint_every, seed=args.seed,
                         num_workers=args.num_workers, quick_test=args.quick_test,
                         figures=args.figures)


def train_autoencoding_model(args, trainer_class, kind: str, size_flags: tuple[str, ...],
                             config_name: str = "config.json") -> None:
    """The whole of train_autoencoder.py and train_vqvae.py: a model that reconstructs its input, under
    torchrun or not. ``size_flags`` name the flags that override the family's default sizes."""
    with distributed(args.dist_backend) as dist:
        train_set, val_set = load_training_sets(args)
        network = network_config(kind, **{name: getattr(args, name) for name in size_flags})
        config = {"kind": kind, "network": network,
                  "data": data_section(train_set.signal_length, args.training_h5file, args.validation_h5file)}
        run, config = start_run(args, config, dist, config_name)
        trainer_class(run, config, settings_from(args), train_set, val_set, dist).fit()
