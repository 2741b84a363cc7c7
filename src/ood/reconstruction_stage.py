"""The reconstruction stage (reconstruct.py): every planned set reconstructed into its results file.

The run's model and schedule come from its config.json; scheduler flags may repeat it but not
contradict it. Sets already complete are skipped; an interrupted set continues from its partial
files; ``--overwrite`` starts afresh; other settings than an earlier run's are refused, not mixed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from src.cli import setup_logging
from src.data.sources import open_set, options_for_run, set_name
from src.diffusion.schedulers import SCHEDULE_KEYS, check_schedule
from src.distributed import Dist, barrier, on_main
from src.errors import UserError
from src.io import make_dir
from src.ood.ood_folder import OodFolder, write_results
from src.ood.reconstructors import build_reconstructor, reconstruct_set, reconstruction_precision
from src.run import Run, check_agrees

log = logging.getLogger("rfood")


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


def reconstruct_sets(args, dist: Dist) -> None:
    """The whole of reconstruct.py for parsed flags ``args``, under torchrun or not."""
    run = Run(args.output_dir, args.model_name)
    config = run.load_config()
    check_agrees(config["network"], {"model_type": args.model_type}, run.config_path)
    given = {key: getattr(args, key) for key in SCHEDULE_KEYS}
    if "scheduler" in config:
        check_schedule({**config["scheduler"], **{key: value for key, value in given.items() if value is not None}})
    check_agrees(config.get("scheduler", {}), given, run.config_path)
    options = options_for_run(config.get("data", {}), args)
    check_vqvae(config, args.vqvae_checkpoint, run)
    check_set_files(args.validation_h5file if args.run_val else None, args.in_ids if args.run_in else [],
                    args.out_ids if args.run_out else [], options.spatial_dims)
    datasets = [(set_type, [open_set(path, options, first_n, args.cache_data) for path in paths])
                for set_type, paths, first_n in planned_sets(args)]  # opened up front: a bad path fails early

    folder = OodFolder(on_main(dist, make_dir, run.ood_dir))
    setup_logging(run.log_file, main_process=dist.is_main)
    earlier = None if args.overwrite else on_main(dist, folder.load_settings)
    precision, recorded = on_main(dist, reconstruction_precision, args.precision, earlier, config.get("kind"),
                                  dist.device)  # one choice for every process
    reconstructor = build_reconstructor(run, config, args.num_inference_steps, args.inference_skip_factor,
                                        args.seed, dist.device, args.reconstruction_mode, args.max_chains,
                                        args.compile, args.plms_history, precision)
    settings = {**reconstructor.settings, "seed": args.seed, "first_n": args.first_n,
                "first_n_val": args.first_n_val}
    if options.spatial_dims != 1:  # recorded for images only, so the settings of earlier signal runs still match
        settings["spatial_dims"] = options.spatial_dims
    settings.update(recorded)  # the precision that runs, unless an older folder recorded none
    log.info("%s: %d start points, %d model evaluations per signal, %d process(es) on %s, %s", settings["mode"],
             len(reconstructor.starts), settings["model_evaluations_per_signal"], dist.world_size, dist.device,
             precision)
    paths = [folder.results(set_type, files[0].name) for set_type, files in datasets]
    on_main(dist, folder.start, settings, paths, args.overwrite)
    for (set_type, files), path in zip(datasets, paths):
        if on_main(dist, path.is_file):
            log.info("%s is already complete; skipped (--overwrite=1 redoes it)", path)
            continue
        frames = [reconstruct_set(reconstructor, dataset, set_type, args.batch_size, dist, args.num_workers, folder)
                  for dataset in files]
        if dist.is_main:
            write_results(pd.concat(frames, ignore_index=True), path)
            for dataset in files:
                folder.clear_partials(dataset.path.stem)
            log.info("wrote %s (%d signals x %d start points)", path, sum(len(f) for f in files),
                     len(reconstructor.starts))
        barrier(dist)


def check_vqvae(config: dict, vqvae_checkpoint: str | None, run: Run) -> None:
    """--vqvae_checkpoint may repeat (as the research code's command does) the VQ-VAE an LDM was trained on."""
    if vqvae_checkpoint is None:
        return
    trained = config.get("latent", {}).get("vqvae_checkpoint")
    if trained is None:
        raise UserError(f"--vqvae_checkpoint={vqvae_checkpoint} but {run.config_path} is not a latent diffusion run; "
                        "drop the flag")
    if Path(vqvae_checkpoint).resolve() != Path(trained).resolve():
        raise UserError(f"--vqvae_checkpoint={vqvae_checkpoint} (config: {trained}) clash with {run.config_path}; "
                        "drop the flag or use the LDM trained on that VQ-VAE")


def check_set_files(validation: str | None, in_files: list[str], out_files: list[str],
                    spatial_dims: int = 1) -> None:
    """Refuse set lists that would overwrite each other's results or score a set against itself."""
    resolved_in = {Path(path).resolve() for path in in_files}
    for path in out_files:
        if Path(path).resolve() in resolved_in:
            raise UserError(f"{path} is given both as --in_ids and in --out_ids; an out set must differ from in")
    names = [set_name(path, spatial_dims) for path in out_files]
    clashes = sorted({name for name in names if names.count(name) > 1 or name in ("val", "in")})
    if clashes:
        raise UserError(f"--out_ids holds several files named {', '.join(clashes)} (or a reserved name val/in); "
                        "results_<Name>.csv would collide: rename the files")
    if validation is not None and any(Path(validation).resolve() == Path(p).resolve() for p in out_files):
        raise UserError(f"{validation} is the validation file and also an out set; choose another out file")
