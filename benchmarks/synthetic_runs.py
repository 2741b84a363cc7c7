"""Synthetic draws for the quality benchmarks: generate, prepare, train and reconstruct through the command lines.

A :class:`Draw` is one call of the synthetic generator (seed and physics) with its in-distribution
family and out families, in its own folder. Every step runs the toolkit's scripts as a user would
and skips what is already done, so an interrupted benchmark continues where it stopped.

Every set that is scored (val, in, each out family) holds FIRST_N = 256 windows from 32 frames:
160 frames of 2048 samples per family, split by frame 50/25/25, so val and test hold 40 frames.

Model names: a family (``unet``, ``wavenet``, ``ldm``, ``autoencoder``, ``features``), then ``_auto``
for a run trained with ``--carrier_recovery=auto`` (the blind front end), then ``_onestep`` for the
one-step reconstruction of that run at every start point (99 network calls; a copy of its folder),
or ``_onestep10`` for one at every 10th start point (10 calls), or ``_path10`` / ``_path`` for the
noise-free DDIM path (``--reconstruction_mode=path``) at every 10th start point / at every one.
Where ``auto`` chooses no order on a draw (its in-family has no spectral line, e.g. OFDM), the
``_auto`` run would equal the plain one; it is not trained again, and its rows are the plain run's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.ood.detector import ScoreOptions

ROOT = Path(__file__).resolve().parents[1]
FIRST_N = 256  # windows per val, in and out set (32 frames of 8 windows)
N_FRAMES, FRAME_LENGTH, TRIM, SPLIT = 160, 2048, 256, 0.25  # 40 frames of 8 windows in val and in test
N_BOOTSTRAP = 1000
TRAINING = {  # model name -> (script, flags); the DDPMs and baselines with their defaults
    "unet": ("train_ddpm.py", ["--model_type=small"]),
    "wavenet": ("train_ddpm.py", ["--model_type=wavenet", "--residual_layers=12", "--residual_channels=32"]),
    "autoencoder": ("train_autoencoder.py", ["--n_epochs=120"]),
    "vqvae": ("train_vqvae.py", ["--n_epochs=60"]),
    "features": ("train_features.py", []),
}
RECONSTRUCTION = {  # model name -> flags of reconstruct.py
    "unet": ["--inference_skip_factor=16"], "wavenet": ["--inference_skip_factor=16"],
    "ldm": ["--inference_skip_factor=16"],
    "autoencoder": [], "features": [],
}
SETTINGS = {"_onestep": ["--inference_skip_factor=1", "--reconstruction_mode=onestep"],  # 99 calls per window
           "_onestep10": ["--inference_skip_factor=10", "--reconstruction_mode=onestep"],  # 10 calls
           "_path": ["--inference_skip_factor=1", "--reconstruction_mode=path"],  # 99 calls, no noise
           "_path10": ["--inference_skip_factor=10", "--reconstruction_mode=path"]}  # 10 calls, no noise
SETTING_LABELS = {"_onestep": ", onestep skip 1", "_onestep10": ", onestep skip 10", "_path": ", path skip 1",
                  "_path10": ", path skip 10"}


def setting_suffix(model: str) -> str:
    """A name's reconstruction-setting suffix (a key of ``SETTINGS``), "" for a run reconstructed as trained."""
    return next((suffix for suffix in SETTINGS if model.endswith(suffix)), "")


def trained_model(model: str) -> str:
    """The run a model name's checkpoint comes from: ``unet_onestep`` reconstructs the ``unet``."""
    return model.removesuffix(setting_suffix(model))


def family(model: str) -> str:
    """The model family of a name: ``unet_auto_onestep`` -> ``unet``."""
    return trained_model(model).removesuffix("_auto")


def with_front_end(model: str) -> bool:
    """Whether a model name's run is trained with ``--carrier_recovery=auto`` (``*_auto``)."""
    return trained_model(model).endswith("_auto")


def front_end(model: str) -> list[str]:
    """The training flag of a name's front end, explicit both ways (the scripts' default may change)."""
    return [f"--carrier_recovery={'auto' if with_front_end(model) else 'off'}"]


def plain(model: str) -> str:
    """The same model without the front end: ``unet_auto_onestep`` -> ``unet_onestep``."""
    return model.replace("_auto", "")


def run(*command: str) -> float:
    """Run one of the toolkit's command lines; return its wall time in seconds."""
    print("  $", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


class Draw:
    def __init__(self, work: Path, name: str, spec: dict) -> None:
        self.name, self.spec = name, spec
        self.root = work / name
        self.processed = self.root / "processed" / "interferenceset_frame"
        self.runs = self.root / "runs"
        self.timings_file = self.root / "timings.json"

    def timed(self, key: str, *command: str) -> None:
        """Run a command and add its wall time to ``key`` in the draw's timings.json (kept across re-runs)."""
        seconds = run(*command)
        timings = json.loads(self.timings_file.read_text()) if self.timings_file.is_file() else {}
        timings[key] = timings.get(key, 0.0) + seconds
        self.timings_file.write_text(json.dumps(timings, indent=1))

    def timings(self) -> dict:
        return json.loads(self.timings_file.read_text()) if self.timings_file.is_file() else {}

    def file(self, family: str, split: str) -> str:
        return str(self.processed / f"{family}_raw_data_{split}.h5")

    def make_data(self) -> None:
        if self.processed.is_dir():
            return
        spec = self.spec
        families = ",".join([spec["inside"], *spec["outs"]])
        run("-m", "src.data.synthetic", f"--out={self.root / 'raw'}", f"--n_frames={N_FRAMES}",
            f"--frame_length={FRAME_LENGTH}", f"--snr_db={spec['snr']}", f"--seed={spec['seed']}",
            f"--sps={spec['sps']}",
            f"--rolloff={spec['rolloff']}", f"--cfo_max={spec['cfo']}", f"--families={families}")
        run("src/data/signal_trim_and_unpack.py", f"--data_root={self.root / 'raw'}",
            f"--new_data_root={self.root / 'processed'}", f"--trim_length={TRIM}", f"--val_split={SPLIT}",
            f"--test_split={SPLIT}", f"--seed={spec['seed']}")

    def auto_order(self) -> int | None:
        """The order ``--carrier_recovery=auto`` chose on this draw (from its features_auto run), None if unknown."""
        config = self.runs / "features_auto" / "config.json"
        return json.loads(config.read_text())["data"]["carrier_order"] if config.is_file() else None

    def same_as_plain(self, model: str) -> bool:
        """A ``*_auto`` model on a draw where auto chose no order: the plain run stands for it."""
        return model != plain(model) and family(model) != "features" and self.auto_order() == 0

    def has(self, model: str) -> bool:
        """Whether the model's run (every part of a fused one) has been reconstructed on this draw."""
        parts = fused_parts(model) if model.startswith(FUSED) else [model]
        return all((self.runs / self.actual(part) / "ood" / "reconstruction.json").is_file() for part in parts)

    def actual(self, model: str) -> str:
        """The run folder whose results are ``model``'s."""
        return plain(model) if self.same_as_plain(model) else model

    def train(self, models: list[str]) -> None:
        """Train each model (``ldm`` trains its VQ-VAE first); ``unet_onestep`` reuses the unet. The
        ``features_auto`` run goes first: it tells whether the draw's other ``_auto`` runs are needed."""
        inside = self.spec["inside"]
        common = [f"--output_dir={self.runs}", f"--training_h5file={self.file(inside, 'train')}",
                  f"--validation_h5file={self.file(inside, 'val')}", "--figures=0"]
        for model in sorted(models, key=lambda name: name != "features_auto"):
            if f"train {model}" in self.timings() or self.same_as_plain(model):  # timed only when finished
                continue
            vqvae = model.replace("ldm", "vqvae")
            for folder in (vqvae, model) if family(model) == "ldm" else (model,):
                if f"train {folder}" not in self.timings():  # an interrupted run: start it again
                    shutil.rmtree(self.runs / folder, ignore_errors=True)
            if family(model) == "ldm":
                if f"train {vqvae}" not in self.timings():
                    self.timed(f"train {vqvae}", TRAINING["vqvae"][0], *common, f"--model_name={vqvae}",
                               *TRAINING["vqvae"][1], *front_end(model))
                self.timed(f"train {model}", "train_ddpm.py", *common, f"--model_name={model}", "--model_type=small",
                           f"--vqvae_checkpoint={self.runs / vqvae / 'checkpoint.pth'}", *front_end(model))
                continue
            script, flags = TRAINING[family(model)]
            self.timed(f"train {model}", script,
                       *[flag for flag in common if script != "train_features.py" or flag != "--figures=0"],
                       f"--model_name={model}", *flags, *front_end(model))

    def reconstruct(self, models: list[str]) -> None:
        inside = self.spec["inside"]
        sets = [f"--validation_h5file={self.file(inside, 'val')}", f"--in_ids={self.file(inside, 'test')}",
                "--out_ids=" + ",".join(self.file(family, "test") for family in self.spec["outs"]),
                f"--first_n={FIRST_N}", f"--first_n_val={FIRST_N}", "--batch_size=64"]
        for model in models:
            if self.same_as_plain(model):
                continue
            if trained_model(model) != model:
                self.copy_run(trained_model(model), model)
            if (self.runs / model / "ood" / f"results_{self.spec['outs'][-1]}.csv").is_file():
                continue
            flags = SETTINGS.get(setting_suffix(model), RECONSTRUCTION[family(model)])
            self.timed(f"reconstruct {model}", "reconstruct.py", f"--output_dir={self.runs}", f"--model_name={model}",
                       *sets, *flags)

    def copy_run(self, source: str, target: str) -> None:
        """The same trained model in another run folder, to reconstruct it in another mode."""
        folder = self.runs / target
        if not folder.is_dir():
            folder.mkdir(parents=True)
            for name in ("config.json", "checkpoint.pth"):
                shutil.copy(self.runs / source / name, folder / name)

    def summary(self, model: str, label: str) -> RunSummary:
        """The honest-table row of one of this draw's models (``fused_<model>``: fused with the features)."""
        if model.startswith(FUSED):
            parts = [self.actual(part) for part in fused_parts(model)]
            return fused_summary(self.runs, parts, label, self.name)
        timings, model = self.timings(), self.actual(model)
        train_seconds = timings.get(f"train {trained_model(model)}")
        if family(model) == "ldm" and train_seconds is not None:
            train_seconds += timings.get(f"train {trained_model(model).replace('ldm', 'vqvae')}", 0.0)
        return run_summary(self.runs, model, label, self.name, train_seconds, timings.get(f"reconstruct {model}"))


@dataclass
class RunSummary:
    """One run's honest-table row and its mean AUROC in every frame resample (to combine draws)."""

    row: dict
    mean_resamples: np.ndarray


def run_summary(runs: Path, model: str, label: str, benchmark: str, train_seconds: float | None = None,
                reconstruct_seconds: float | None = None) -> RunSummary:
    """One run scored once with its default score, as ood_detection.py scores it: mean and worst-family
    AUROC with frame-bootstrap intervals, and the cost."""
    from src.ood.detection_stage import score_run
    from src.ood.ood_folder import OodFolder
    run = score_run(OodFolder(runs / model / "ood"), ScoreOptions(None, None))
    outs = {name: run.scores[name] for name in run.outs}
    snr = " snr-aware" if run.detector.snr_adjust is not None else ""
    row = {"benchmark": benchmark, "model": label,
           "score": f"{run.options.score}{snr} on {','.join(run.options.metric)}",
           "calls/signal": run.settings.get("model_evaluations_per_signal"),
           "train s": None if train_seconds is None else round(train_seconds),
           "reconstruct s": None if reconstruct_seconds is None else round(reconstruct_seconds)}
    return summarise(run.scores["in"], outs, run.units, row)


def fused_summary(runs: Path, models: list[str], label: str, benchmark: str) -> RunSummary:
    """The fused detector of several runs of one draw (:mod:`src.ood.fusion`), each with its default score."""
    from src.ood.detection_stage import fuse_runs, score_run
    from src.ood.ood_folder import OodFolder
    scored = [score_run(OodFolder(runs / model / "ood"), ScoreOptions(None, None)) for model in models]
    fused = fuse_runs(dict(zip(models, scored)))
    row = {"benchmark": benchmark, "model": label, "score": "max z of " + " and ".join(models),
           "calls/signal": sum(run.settings.get("model_evaluations_per_signal") or 0 for run in scored)}
    return summarise(fused["in"], {name: fused[name] for name in scored[0].outs}, scored[0].units, row)


def summarise(inside, outs: dict, units, row: dict) -> RunSummary:
    """An honest-table row from in and out scores: mean and worst-family AUROC with frame-bootstrap intervals."""
    from src.ood.evaluation import mean_auroc_bootstrap, metrics_table, percentile_interval
    table = metrics_table(inside, outs, N_BOOTSTRAP, 0, units)
    families = table.drop(index="mean")
    worst = families["AUROC"].idxmin()
    resamples = mean_auroc_bootstrap([(inside, outs)], units, N_BOOTSTRAP)[1][:, 0]
    low, high = percentile_interval(resamples)
    row = {"benchmark": row.pop("benchmark"), "model": row.pop("model"), "score": row.pop("score"),
           "mean AUROC": table.loc["mean", "AUROC"], "mean 95% interval": f"{low:.3f}-{high:.3f}",
           "worst family": worst, "worst AUROC": families.loc[worst, "AUROC"],
           "worst 95% interval": f"{families.loc[worst, 'AUROC_low']:.3f}-{families.loc[worst, 'AUROC_high']:.3f}",
           **row, **{f"AUROC {name}": value for name, value in families["AUROC"].items()}}
    return RunSummary(row, resamples)


def paired_difference(draw: Draw, model: str, reference: str) -> dict:
    """``model``'s mean AUROC minus ``reference``'s on one draw, with a paired frame-bootstrap interval: both
    are scored on the same windows and every resample draws the same frames for both."""
    from src.ood.evaluation import percentile_interval
    this, that = draw.summary(model, model), draw.summary(reference, reference)
    low, high = percentile_interval(this.mean_resamples - that.mean_resamples)
    return {"benchmark": draw.name, "model": model_label(model), "against": model_label(reference),
            "difference": this.row["mean AUROC"] - that.row["mean AUROC"],
            "paired 95% interval": f"{low:+.3f} to {high:+.3f}"}


def print_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(table.round(3).to_string(index=False))
    return table


FAMILY_LABELS = {"unet": "DDPM UNet small", "wavenet": "DDPM WaveNet 12x32", "ldm": "LDM (VQ-VAE + UNet small)",
                 "autoencoder": "autoencoder", "features": "features (no model)"}
DIFFUSION_FAMILIES = ("unet", "wavenet", "ldm")


FUSED = "fused_"  # fused_<model>: that model's run fused with the feature baseline of the same front end


def fused_parts(model: str) -> list[str]:
    """The runs a fused model name combines: ``fused_unet_auto_onestep`` -> unet_auto_onestep, features_auto."""
    base = model.removeprefix(FUSED)
    return [base, "features_auto" if with_front_end(base) else "features"]


def model_label(model: str) -> str:
    """What a table calls a model name: ``unet_auto_onestep`` -> "DDPM UNet small, onestep skip 1, auto"."""
    if model.startswith(FUSED):
        return "fused: " + model_label(model.removeprefix(FUSED)) + " + features"
    label = FAMILY_LABELS[family(model)]
    if family(model) in DIFFUSION_FAMILIES:
        label += SETTING_LABELS.get(setting_suffix(model), ", plms skip 16")
    return label + (", carrier auto" if with_front_end(model) else "")


def fused_names(models: list[str]) -> list[str]:
    """The fused detector of every diffusion model (and the autoencoder) among ``models``."""
    return [FUSED + model for model in models if family(model) in (*DIFFUSION_FAMILIES, "autoencoder")]


def model_names(with_plms: bool = False, with_ten_calls: bool = False) -> list[str]:
    """Every model of the benchmarks, each without and with the front end; the diffusion models in one-step
    mode (and PLMS at skip 16 too with ``with_plms``, one-step
    and the path at 10 calls and the path at 99 with ``with_ten_calls``)."""
    names = []
    for name in (*DIFFUSION_FAMILIES, "autoencoder", "features"):
        for carrier in ("", "_auto"):
            if name in DIFFUSION_FAMILIES:
                names += ([f"{name}{carrier}_onestep"] + ([f"{name}{carrier}"] if with_plms else [])
                          + ([f"{name}{carrier}{suffix}" for suffix in ("_onestep10", "_path10", "_path")]
                             if with_ten_calls else []))
            else:
                names.append(f"{name}{carrier}")
    return names


def benchmark_parser(doc: str, work_dir: str, draws: dict) -> argparse.ArgumentParser:
    """The flags both benchmark scripts take: where the draws live, which draws and models, which stage."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default=work_dir)
    parser.add_argument("--draws", default=",".join(draws), help="comma-separated (default: all)")
    parser.add_argument("--models", default=",".join(model_names()),
                        help="comma-separated (default: every family in one-step mode, front end off and auto)")
    parser.add_argument("--stage", choices=["all", "evaluate"], default="all",
                        help="all: make, train and reconstruct what is missing, then score; evaluate: score only")
    return parser


def checked_names(parser: argparse.ArgumentParser, args, draws: dict, models) -> tuple[list[str], list[str]]:
    """The --draws and --models asked for; an unknown name is one usage line and exit 2."""
    names, chosen = args.draws.split(","), args.models.split(",")
    for flag, given, known in (("--draws", names, draws), ("--models", chosen, models)):
        if unknown := [name for name in given if name not in known]:
            parser.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return names, chosen
