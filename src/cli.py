"""What every script shares: flag types, the common flag groups, the options of a stage built from the flags,
logging and the error boundary."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Callable, TypeVar

from src.dsp import CARRIER_MODES
from src.errors import UserError

log = logging.getLogger("rfood")
Options = TypeVar("Options")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit code 2."""

    def __init__(self, doc: str) -> None:
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def flag(value: str) -> bool:
    """Parse a 0/1 switch (``--cache_data=0``); true/false/yes/no also work."""
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


def add_carrier_arg(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """--carrier_recovery: set at training, recorded in config.json; later stages may only repeat it."""
    parser.add_argument("--carrier_recovery", choices=CARRIER_MODES, default=None,
                        help="signals: remove each window's carrier offset and phase blindly with the M-th power "
                             "estimator (power2: BPSK, power4: QPSK and square QAM, power8: 8-PSK), or auto: the "
                             "power whose spectral line stands out in the training windows, off where none does "
                             + ("(default: as the run was trained)" if from_config else
                                "(default: auto for a new run on signals, off for images; a resumed run keeps what "
                                "it was trained with)"))


def add_dist_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dist_backend", choices=["nccl", "gloo"], default=None,
                        help="torch.distributed backend under torchrun (default: nccl on CUDA, gloo on CPU)")


def options_from(cls: type[Options], args: argparse.Namespace, **given) -> Options:
    """The dataclass ``cls`` of a stage's options from parsed flags, field by field by name: a field that is itself
    a dataclass is built from the same flags, one the flags lack keeps its default, and ``given`` wins."""
    types = typing.get_type_hints(cls)
    values = dict(given)
    for field in dataclasses.fields(cls):
        if field.name in given:
            continue
        if dataclasses.is_dataclass(types[field.name]):
            values[field.name] = options_from(types[field.name], args)
        elif hasattr(args, field.name):
            values[field.name] = getattr(args, field.name)
    return cls(**values)


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
