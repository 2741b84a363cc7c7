"""What every script shares: flag types, the common flag groups, logging and the error boundary."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from src.dsp import CARRIER_MODES
from src.errors import UserError

log = logging.getLogger("rfood")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def __init__(self, doc: str) -> None:
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def flag(value: str) -> bool:
    """Parse the seed README's 0/1 switches (``--cache_data=0``); true/false/yes/no also work."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "y", "on"}:
        return True
    if lowered in {"0", "false", "no", "n", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {value!r}")


def positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def fraction(value: str) -> float:
    number = float(value)
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {value}")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not 0.0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return number


def comma_list(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Where a run lives: ``<output_dir>/<model_name>/``."""
    parser.add_argument("--output_dir", required=True, help="folder holding the run folders")
    parser.add_argument("--model_name", required=True, help="run folder name inside --output_dir")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def add_loader_args(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--batch_size", type=positive_int, default=batch_size, help="(default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes (default: %(default)s)")
    parser.add_argument("--cache_data", type=flag, default=True,
                        help="1: read each h5 file into RAM once; 0: read windows lazily (default: 1)")


def int_list(value: str) -> list[int]:
    """``160,160,128`` or the research code's ``[160,160,128]``."""
    try:
        return [int(item) for item in comma_list(value.strip().strip("[]"))]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, e.g. [160,160,128], got {value!r}") \
            from err


def add_data_args(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """What the data are: 1D RF signals (processed h5) or 2D/3D images (CSV split files), and how images
    are read. With ``from_config`` (later stages) None means "as the run was trained"."""
    def default(value):
        return None if from_config else value
    suffix = " (default: as in the run's config.json)" if from_config else " (default: %(default)s)"
    parser.add_argument("--spatial_dimension", type=int, choices=[1, 2, 3], default=default(1),
                        help="1: RF signals [2, T] from processed h5 files; 2: images; 3: volumes, both from CSV "
                             "split files (data_splits/<Name>_{train,val,test}.csv)" + suffix)
    parser.add_argument("--is_grayscale", type=flag, default=default(False),
                        help="images: keep the first channel only (e.g. the first MRI modality)" + suffix)
    parser.add_argument("--image_roi", type=int_list, default=None,
                        help="images: central crop, one size per spatial dimension, -1 keeps that dimension, "
                             "e.g. [160,160,128] (default: none)")
    parser.add_argument("--image_size", type=positive_int, default=None,
                        help="images: resize every spatial dimension to this size (default: none)")
    add_carrier_arg(parser, from_config)


def add_carrier_arg(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """--carrier_recovery: set at training, recorded in config.json; later stages may only repeat it."""
    parser.add_argument("--carrier_recovery", choices=CARRIER_MODES, default=None if from_config else "off",
                        help="signals: remove each window's carrier offset and phase blindly with the M-th power "
                             "estimator (power2: BPSK, power4: QPSK and square QAM, power8: 8-PSK), or auto: the "
                             "power whose spectral line stands out in the training windows, off where none does "
                             + ("(default: as the run was trained)" if from_config else "(default: %(default)s)"))


def add_dist_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dist_backend", choices=["nccl", "gloo"], default=None,
                        help="torch.distributed backend under torchrun (default: nccl on CUDA, gloo on CPU)")


def add_scheduler_args(parser: argparse.ArgumentParser, training: bool) -> None:
    """Noise-schedule flags. Training sets them; later stages default to None = "from config.json"."""
    def option(name, help_text, value, **kwargs):
        suffix = f" (default: {value})" if training else " (default: from the run's config.json)"
        parser.add_argument(name, default=value if training else None, help=help_text + suffix, **kwargs)

    option("--beta_schedule", "MONAI noise schedule", "scaled_linear_beta",
           choices=["linear_beta", "scaled_linear_beta"])
    option("--beta_start", "first beta", 0.0015, type=float)
    option("--beta_end", "last beta", 0.0195, type=float)
    option("--prediction_type", "what the network predicts", "epsilon", choices=["epsilon", "v_prediction"])
    option("--b_scale", "signals are multiplied by this before noising and divided after", 1.0, type=float)
    option("--snr_shift", "multiply the schedule's signal-to-noise ratio at every t by this, as the research code "
           "does (1 = no shift; > 1: less noise at every t)", 1.0, type=float)


def setup_logging(log_file: Path | None = None, main_process: bool = True) -> None:
    """Log to stdout (and ``log_file``) on the main process; warnings only elsewhere."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO if main_process else logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None and main_process:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)


def run_main(main: Callable[[], None]) -> None:
    """Run a script's ``main``; turn a :class:`UserError` into one line on stderr and exit code 2."""
    try:
        main()
    except UserError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every process fails alike; one line is enough
            print("error: " + " ".join(str(err).splitlines()), file=sys.stderr)  # one line, whatever a path holds
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
