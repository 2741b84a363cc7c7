"""The reconstruction stage (reconstruct.py): every planned set reconstructed into its results file.

The run's model and schedule come from its config.json; scheduler flags may repeat it but not
contradict it. Sets already complete are skipped; an interrupted set continues from its partial
files; ``--overwrite`` starts afresh; other settings than an earlier run's are refused, not mixed.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from src.cli import setup_logging
from src.data.sources import DataFlags, open_set, options_for_run, set_name
from src.diffusion.schedulers import FROM_CONFIG, NoiseSchedule, check_schedule
from src.distributed import Dist, barrier, on_main
from src.errors import UserError
from src.io import make_dir
from src.ood.ood_folder import OodFolder, write_results
from src.ood.reconstructors import build_reconstructor, reconstruct_set, reconstruction_precision
from src.run import Run, check_agrees

log = logging.getLogger("rfood")


@dataclass(frozen=True)
class ReconstructionJob:
    """reconstruct.py's options: the run, the sets to reconstruct and how. ``model_type``, ``vqvae_checkpoint``,
    ``data`` and ``schedule`` may repeat the run's config.json (None: as there), never contradict it."""

    output_dir: str
    model_name: str
    validation_h5file: str | None = None
    in_ids: list[str] = field(default_factory=list)
    out_ids: list[str] = field(default_factory=list)
    run_val: bool = True
    run_in: bool = True
    run_out: bool = True
    first_n: int | None = None  # only the first N signals of in/out files
    first_n_val: int | None = None  # only the first N validation signals
    num_inference_steps: int = 100
    inference_skip_factor: int = 1
    reconstruction_mode: str = "plms"
    plms_history: str = "reset"
    max_chains: int | None = None  # None: 4096 on CUDA, 256 on CPU
    compile: bool = False
    precision: str = "auto"
    overwrite: bool = False  # discard earlier results rather than continue them
    seed: int = 0
    batch_size: int = 32
    num_workers: int = 0
    cache_data: bool = True
    model_type: str | None = None
    vqvae_checkpoint: str | None = None
    data: DataFlags = field(default_factory=DataFlags)
    schedule: NoiseSchedule = FROM_CONFIG


def planned_sets(job: ReconstructionJob) -> list[tuple[str, list[str], int | None]]:
    """(set type, files, first_n) for each set asked for."""
    sets = []
    if job.run_val:
        if not job.validation_h5file:
            raise UserError("--run_val=1 needs --validation_h5file")
        sets.append(("val", [job.validation_h5file], job.first_n_val))
    if job.run_in:
        if not job.in_ids:
            raise UserError("--run_in=1 needs --in_ids")
        sets.append(("in", job.in_ids, job.first_n))
    if job.run_out:
        if not job.out_ids:
            raise UserError("--run_out=1 needs --out_ids")
        sets += [("out", [path], job.first_n) for path in job.out_ids]
    return sets


def reconstruct_sets(job: ReconstructionJob, dist: Dist) -> None:
    """The whole of reconstruct.py, under torchrun or not."""
    run = Run(job.output_dir, job.model_name)
    config = run.load_config()
    check_agrees(config["network"], {"model_type": job.model_type}, run.config_path)
    given = asdict(job.schedule)
    if "scheduler" in config:
        check_schedule({**config["scheduler"], **{key: value for key, value in given.items() if value is not None}})
    check_agrees(config.get("scheduler", {}), given, run.config_path)
    data = options_for_run(config.get("data", {}), job.data)
    check_vqvae(config, job.vqvae_checkpoint, run)
    check_set_files(job.validation_h5file if job.run_val else None, job.in_ids if job.run_in else [],
                    job.out_ids if job.run_out else [], data.spatial_dims)
    datasets = [(set_type, [open_set(path, data, first_n, job.cache_data) for path in paths])
                for set_type, paths, first_n in planned_sets(job)]  # opened up front: a bad path fails early

    folder = OodFolder(on_main(dist, make_dir, run.ood_dir))
    setup_logging(run.log_file, main_process=dist.is_main)
    earlier = None if job.overwrite else on_main(dist, folder.load_settings)
    precision, recorded = on_main(dist, reconstruction_precision, job.precision, earlier, config.get("kind"),
                                  dist.device)  # one choice for every process
    reconstructor = build_reconstructor(run, config, job.num_inference_steps, job.inference_skip_factor,
                                        job.seed, dist.device, job.reconstruction_mode, job.max_chains,
                                        job.compile, job.plms_history, precision)
    settings = {**reconstructor.settings, "seed": job.seed, "first_n": job.first_n,
                "first_n_val": job.first_n_val}
    if data.spatial_dims != 1:  # recorded for images only, so the settings of earlier signal runs still match
        settings["spatial_dims"] = data.spatial_dims
    settings.update(recorded)  # the precision that runs, unless an older folder recorded none
    log.info("%s: %d start points, %d model evaluations per signal, %d process(es) on %s, %s", settings["mode"],
             len(reconstructor.starts), settings["model_evaluations_per_signal"], dist.world_size, dist.device,
             precision)
    paths = [folder.results(set_type, files[0].name) for set_type, files in datasets]
    on_main(dist, folder.start, settings, paths, job.overwrite)
    for (set_type, files), path in zip(datasets, paths):
        if on_main(dist, path.is_file):
            log.info("%s is already complete; skipped (--overwrite=1 redoes it)", path)
            continue
        frames = [reconstruct_set(reconstructor, dataset, set_type, job.batch_size, dist, job.num_workers,
                                  folder)
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
