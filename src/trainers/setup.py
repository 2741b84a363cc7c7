"""What the training scripts share: the training flags (all but train_features.py's), data, run folder and
settings; and the whole run of train_autoencoder.py and train_vqvae.py (:func:`train_autoencoding_model`)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace

from src.cli import Parser, add_dist_args, add_loader_args, add_run_args, flag, positive_int, setup_logging
from src.data.sources import (
    DataFlags,
    DataOptions,
    add_data_args,
    check_carrier,
    data_section,
    data_shape,
    fixed_order,
    log_carrier_choice,
    open_set,
    resolve_carrier,
)
from src.distributed import Dist, distributed, on_main
from src.errors import UserError
from src.io import make_dir
from src.networks import network_config
from src.run import Run
from src.runtime import PRECISIONS, choose_precision, seed_everything
from src.trainers.autoencoders import AutoencoderSizes, VQVAESizes
from src.trainers.base import LR_SCHEDULES, QUICK_TEST_BATCHES, TrainSettings, prepare_run

log = logging.getLogger("rfood")
TRAINING_PRECISION = "auto"  # --precision's default: bf16 kept the val loss within seed noise (docs/benchmarks.md)
# --carrier_recovery's default for a new run on signals: the selection rule chose it over off (docs/benchmarks.md)
DEFAULT_CARRIER_RECOVERY = "auto"


def add_training_args(parser: Parser, n_epochs: int, batch_size: int, learning_rate: float,
                      lr_schedule: str = "constant", warmup_steps: int = 0, ema_decay: float = 0.0) -> None:
    add_run_args(parser)
    parser.add_argument("--training_h5file", "--training_ids", dest="training_h5file", required=True,
                        help="processed h5 of the in-distribution signals, or (--spatial_dimension 2/3) a CSV "
                             "split file of images")
    parser.add_argument("--validation_h5file", "--validation_ids", dest="validation_h5file", required=True,
                        help="processed h5 (or CSV split file) for the validation loss")
    parser.add_argument("--n_epochs", type=positive_int, default=n_epochs, help="(default: %(default)s)")
    parser.add_argument("--learning_rate", type=float, default=learning_rate,
                        help="AdamW learning rate, the peak of the schedule (default: %(default)s)")
    parser.add_argument("--lr_schedule", choices=LR_SCHEDULES, default=lr_schedule,
                        help="constant, or cosine: from --learning_rate down to 0 over --n_epochs "
                             "(default: %(default)s)")
    parser.add_argument("--warmup_steps", type=int, default=warmup_steps,
                        help="linear learning-rate warm-up over the first steps (default: %(default)s)")
    parser.add_argument("--ema_decay", type=float, default=ema_decay,
                        help="keep an exponential moving average of the weights with this decay; it is what is "
                             "validated, saved as best and reconstructed with; 0: none (default: %(default)s)")
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
    parser.add_argument("--precision", choices=PRECISIONS, default=TRAINING_PRECISION,
                        help="the forward passes' arithmetic: fp32, bf16 autocast, or auto (bf16 on CUDA and on a "
                             "CPU with native bf16 that a short probe confirms faster, else fp32); weights and "
                             "optimizer stay fp32 (default: %(default)s)")
    add_data_args(parser)
    add_loader_args(parser, batch_size=batch_size)
    add_dist_args(parser)


@dataclass(frozen=True)
class TrainingSets:
    """A training run's folder and the data it trains and validates on (every training script's flags)."""

    output_dir: str
    model_name: str
    training_h5file: str
    validation_h5file: str
    first_n: int | None = None  # only the first N training windows
    cache_data: bool = True
    data: DataFlags = field(default_factory=DataFlags)

    def run(self, config_name: str = "config.json") -> Run:
        return Run(self.output_dir, self.model_name, config_name)


@dataclass(frozen=True)
class TrainingJob:
    """What train_ddpm.py, train_autoencoder.py and train_vqvae.py share: the sets, how to train, the torchrun
    backend (None: nccl on CUDA, gloo on CPU). ``settings.precision`` may be ``auto``; :func:`start_run`
    resolves it."""

    sets: TrainingSets
    settings: TrainSettings
    dist_backend: str | None = None


def load_training_sets(sets: TrainingSets, config_name: str = "config.json") -> tuple:
    """The training and validation sets (signals or images), checked to have one shape, and the data options
    they were read with (:func:`training_data_options`)."""
    options = training_data_options(sets, sets.run(config_name))
    train_set = open_set(sets.training_h5file, options, first_n=sets.first_n, cache=sets.cache_data)
    val_set = open_set(sets.validation_h5file, options, cache=sets.cache_data)
    if data_shape(val_set) != data_shape(train_set):
        raise UserError(f"{sets.validation_h5file} holds data of shape {data_shape(val_set)} but "
                        f"{sets.training_h5file} {data_shape(train_set)}; prepare both alike (--trim_length, or "
                        "--image_size/--image_roi)")
    return train_set, val_set, options


def training_data_options(sets: TrainingSets, run: Run) -> DataOptions:
    """The data options of a training run, with the front end settled: a resumed run keeps the carrier recovery
    it was trained with (a contradicting flag is refused); a new run on signals takes ``--carrier_recovery``,
    :data:`DEFAULT_CARRIER_RECOVERY` when not given, with ``auto`` resolved on the training windows."""
    options = DataOptions.from_flags(sets.data)
    if options.spatial_dims != 1:
        return options
    if run.has_config():
        trained = DataOptions.from_config(run.load_config().get("data", {}))
        check_carrier(sets.data.carrier_recovery, trained)
        return replace(options, carrier_recovery=trained.carrier_recovery, carrier_order=trained.carrier_order)
    mode = sets.data.carrier_recovery or DEFAULT_CARRIER_RECOVERY
    return resolve_carrier(replace(options, carrier_recovery=mode, carrier_order=fixed_order(mode)),
                           sets.training_h5file, sets.first_n)


def start_run(run: Run, config: dict, dist: Dist, seed: int, precision: str | None = None) -> tuple[dict, str | None]:
    """Create (or reopen) the run folder on the main process, start logging there, and seed everything.

    Returns the run's config and the ``precision`` asked for (fp32, bf16 or auto) resolved to fp32 or bf16
    (None when none is asked); a new run records it in config.json as ``training.precision``."""
    precision, why = on_main(dist, choose_precision, precision, dist.device) if precision else (None, "")

    def create() -> dict:
        make_dir(run.path)
        return prepare_run(run, {**config, "training": {"precision": precision}} if precision else config)

    config = on_main(dist, create)
    setup_logging(run.log_file, main_process=dist.is_main)
    if precision:
        log_training_precision(config, precision, why)
    log_carrier_choice(config.get("data", {}))
    seed_everything(seed)
    return config, precision


def log_training_precision(config: dict, precision: str, why: str) -> None:
    """Say what this session trains in, and when a resumed run started in another precision."""
    log.info("training in %s (%s)", precision, why)
    started = config.get("training", {}).get("precision")
    if started is None:
        log.info("config.json records no training precision (runs from before --precision trained in bf16 on "
                 "CUDA, fp32 on a CPU)")
    elif started != precision:
        log.warning("this run started in %s (config.json); these epochs train in %s", started, precision)


def settings_with(settings: TrainSettings, precision: str) -> TrainSettings:
    """``settings`` with the precision :func:`start_run` resolved, the EMA decay checked."""
    return replace(settings, precision=precision, ema_decay=check_ema_decay(settings.ema_decay))


def check_ema_decay(decay: float) -> float:
    if not 0.0 <= decay < 1.0:
        raise UserError(f"--ema_decay must lie in [0, 1) (0 = no EMA), got {decay}")
    return decay


def train_autoencoding_model(job: TrainingJob, sizes: AutoencoderSizes | VQVAESizes, trainer_class, kind: str,
                             config_name: str = "config.json") -> None:
    """The whole of train_autoencoder.py and train_vqvae.py: a model that reconstructs its input, under
    torchrun or not. ``sizes`` override the family's default sizes where not None."""
    with distributed(job.dist_backend) as dist:
        train_set, val_set, options = load_training_sets(job.sets, config_name)
        network = network_config(kind, in_channels=train_set.channels, spatial_dims=options.spatial_dims,
                                 **asdict(sizes))
        config = {"kind": kind, "network": network,
                  "data": data_section(train_set, job.sets.training_h5file, job.sets.validation_h5file, options)}
        run = job.sets.run(config_name)
        config, precision = start_run(run, config, dist, job.settings.seed, job.settings.precision)
        trainer_class(run, config, settings_with(job.settings, precision), train_set, val_set, dist).fit()
