"""Reconstruct val, in and out signals from several noise levels with a trained run.

Example:
    python reconstruct.py --output_dir=runs --model_name=unet_small_QPSK \
        --validation_h5file=data/processed/interferenceset_frame/QPSK_raw_data_val.h5 \
        --in_ids=data/processed/interferenceset_frame/QPSK_raw_data_test.h5 \
        --out_ids=data/processed/interferenceset_frame/QAM16_raw_data_test.h5,data/processed/interferenceset_frame/OFDM_raw_data_test.h5 \
        --num_inference_steps=100 --inference_skip_factor=4 --run_val=1 --run_in=1 --run_out=1

Writes <output_dir>/<model_name>/ood/results_val.csv, results_in.csv and results_<Name>.csv:
one row per (signal, start point t) with its reconstruction errors. The model and scheduler come
from the run's config.json; a flag that contradicts it is an error.
"""
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from src.cli import (Parser, add_dist_args, add_loader_args, add_run_args, add_scheduler_args, comma_list, flag,
                     positive_int, run_main, setup_logging)
from src.data.datasets import SignalDataset
from src.diffusion.engine import MODES
from src.diffusion.schedulers import SCHEDULE_KEYS
from src.errors import UserError
from src.io import load_json, make_dir, save_json
from src.networks import MODEL_TYPES
from src.ood.reconstruct import build_reconstructor, check_set_files, reconstruct_set
from src.ood.results import results_path, write_results
from src.run import Run, check_agrees
from src.trainers.distributed import barrier, distributed, on_main

log = logging.getLogger("rfood")
PARTIAL_DIR = ".partial"  # per-batch results of sets not yet finished


def create_argparser() -> Parser:
    parser = Parser(__doc__)
    add_run_args(parser)
    parser.add_argument("--model_type", choices=MODEL_TYPES, default=None,
                        help="optional check: must equal the run's model_type")
    parser.add_argument("--validation_h5file", default=None, help="in-distribution signals that calibrate the scores")
    parser.add_argument("--in_ids", type=comma_list, default=[],
                        help="held-out in-distribution file(s), comma separated")
    parser.add_argument("--out_ids", type=comma_list, default=[], help="other signal types' files, comma separated")
    parser.add_argument("--num_inference_steps", type=positive_int, default=100,
                        help="PLMS steps (default: %(default)s)")
    parser.add_argument("--inference_skip_factor", type=positive_int, default=1,
                        help="keep every k-th start point: 1 -> 99 start points, 4 -> 25 (default: %(default)s)")
    parser.add_argument("--reconstruction_mode", choices=MODES, default="plms",
                        help="plms: the paper's sampler; ddim: DDIM steps; onestep: one network call per start "
                             "point (default: %(default)s)")
    parser.add_argument("--max_chains", type=positive_int, default=None,
                        help="most signals (start points x batch) in one network call; lower it if memory runs out "
                             "(default: 4096 on CUDA, 256 on CPU)")
    parser.add_argument("--compile", type=flag, default=False, help="1: torch.compile the network (default: 0)")
    parser.add_argument("--overwrite", type=flag, default=False,
                        help="1: discard earlier results in the ood folder; 0: keep finished sets and batches and "
                             "continue where an interrupted run stopped (default: 0)")
    parser.add_argument("--run_val", type=flag, default=True, help="reconstruct the validation file (default: 1)")
    parser.add_argument("--run_in", type=flag, default=True, help="reconstruct the in files (default: 1)")
    parser.add_argument("--run_out", type=flag, default=True, help="reconstruct the out files (default: 1)")
    parser.add_argument("--first_n", type=positive_int, default=None, help="only the first N signals of in/out files")
    parser.add_argument("--first_n_val", type=positive_int, default=None, help="only the first N validation signals")
    add_loader_args(parser, batch_size=32)
    add_dist_args(parser)
    add_scheduler_args(parser, training=False)
    return parser


def planned_sets(args) -> list[tuple[str, list[str], int | None]]:
    """(set type, files, first_n) for each set asked for."""
    sets = []
    if args.run_val:
        if not args.validation_h5file:
            raise UserError("--run_val=1 needs --validation_h5file")
        sets.append(("val", [args.validation_h5file], args.first_n_val))
    if args.run_in:
        if not args.in_ids:
            raise UserError("--run_in=1 needs --in_ids")
        sets.append(("in", args.in_ids, args.first_n))
    if args.run_out:
        if not args.out_ids:
            raise UserError("--run_out=1 needs --out_ids")
        sets += [("out", [path], args.first_n) for path in args.out_ids]
    return sets


def main() -> None:
    args = create_argparser().parse_args()
    with distributed(args.dist_backend) as dist:
        reconstruct_sets(args, dist)


def reconstruct_sets(args, dist) -> None:
    run = Run(args.output_dir, args.model_name)
    config = run.load_config()
    check_agrees(config["network"], {"model_type": args.model_type}, run.config_path)
    check_agrees(config.get("scheduler", {}), {key: getattr(args, key) for key in SCHEDULE_KEYS}, run.config_path)
    check_set_files(args.validation_h5file if args.run_val else None, args.in_ids if args.run_in else [],
                    args.out_ids if args.run_out else [])
    datasets = [(set_type, [SignalDataset(path, first_n, args.cache_data) for path in paths])
                for set_type, paths, first_n in planned_sets(args)]  # opened up front: a bad path fails early

    ood_dir = on_main(dist, make_dir, run.ood_dir)
    setup_logging(run.log_file, main_process=dist.is_main)
    reconstructor = build_reconstructor(run, config, args.num_inference_steps, args.inference_skip_factor,
                                        args.seed, dist.device, args.reconstruction_mode, args.max_chains,
                                        args.compile)
    settings = {**reconstructor.settings, "seed": args.seed, "first_n": args.first_n,
                "first_n_val": args.first_n_val}
    log.info("%s: %d start points, %d model evaluations per signal, %d process(es) on %s", settings["mode"],
             len(reconstructor.starts), settings["model_evaluations_per_signal"], dist.world_size, dist.device)
    paths = [results_path(ood_dir, set_type, files[0].name) for set_type, files in datasets]
    on_main(dist, start_results, ood_dir, settings, paths, args.overwrite)
    for (set_type, files), path in zip(datasets, paths):
        if on_main(dist, path.is_file):
            log.info("%s is already complete; skipped (--overwrite=1 redoes it)", path)
            continue
        frames = [reconstruct_set(reconstructor, dataset, set_type, args.batch_size, dist, args.num_workers,
                                  partial_dir=ood_dir / PARTIAL_DIR) for dataset in files]
        if dist.is_main:
            write_results(pd.concat(frames, ignore_index=True), path)
            for dataset in files:
                for partial in (ood_dir / PARTIAL_DIR).glob(f"{dataset.path.stem}.rank*.csv"):
                    partial.unlink()
            log.info("wrote %s (%d signals x %d start points)", path, sum(len(f) for f in files),
                     len(reconstructor.starts))
        barrier(dist)


def start_results(ood_dir: Path, settings: dict, paths: list[Path], overwrite: bool) -> None:
    """Record the settings; with --overwrite forget earlier results, else refuse to mix settings."""
    settings_file = ood_dir / "reconstruction.json"
    if overwrite:
        for path in paths:
            path.unlink(missing_ok=True)
        shutil.rmtree(ood_dir / PARTIAL_DIR, ignore_errors=True)
    elif settings_file.is_file():
        earlier = load_json(settings_file, "reconstruction settings")
        if earlier != json.loads(json.dumps(settings)):
            changed = sorted(key for key in set(earlier) | set(settings) if earlier.get(key) != settings.get(key))
            raise UserError(f"{ood_dir} holds results made with other settings ({', '.join(changed)} differ); "
                            "pass --overwrite=1 to start afresh, or use the earlier settings to continue")
    make_dir(ood_dir / PARTIAL_DIR)
    save_json(settings, settings_file)


if __name__ == "__main__":
    run_main(main)
