"""What ``--precision auto`` buys end to end: reconstruct.py and training epochs, fp32 against auto / bf16.

Runs the toolkit's command lines as a user would, each in its own process, and prints:

1. What the CPU reports about bf16 and what ``--precision auto`` chooses here (bench_flops's line).
2. ``reconstruct.py`` end to end (wall time of the whole process, Python's start included) with
   ``--precision fp32`` and ``--precision auto``, alternated (fp32 first in odd rounds, auto first in even
   ones), ``--rounds`` rounds, for one-step at skip 1 (99 network calls per window), PLMS at skip 16 and the
   noise-free path at skip 10 (10 calls),
   on val, in and one out set; their ratio; the relative deviation ||e_auto - e_fp32|| / ||e_fp32|| of
   every error column of the results files; and, from the same files, the mean AUROC (in against out,
   the run's default score, calibrated on val) of both with its frame-bootstrap interval and the paired
   difference, and the val-against-in AUROC of both (two in-distribution sets: near 0.5 when the scores
   treat them alike).
3. Training seconds per epoch of ``train_ddpm.py`` (its defaults: small UNet, batch 64) in fp32 and bf16,
   alternated, each the median of the epochs after the first, on data of its own split as prep splits by
   default (60/20/20 of ``--train_frames`` frames: 39 steps and 13 validation batches an epoch; an epoch of
   the reconstruction data, 8 steps against 4 validation batches, is mostly the per-epoch work around them).
   Speed only: after a few epochs the weights it
   validates (an EMA of decay 0.999, after a 100-step warm-up) are still close to their start, so their
   validation loss says nothing of bf16's effect on training (docs/benchmarks.md has 30-epoch runs).

The run it reconstructs is one small UNet trained here once in fp32 on synthetic QPSK (or ``--run_dir``: a
run folder with config.json and checkpoint.pth, for windows of the data's length). Its data and runs go to
``--work_dir`` and are reused by a later call (``--fresh`` starts over). Every process runs on ``--threads``
threads (OMP_NUM_THREADS); ``auto`` decides as it does for the user (its cache: docs/usage.md).
The defaults took 9.5 minutes on one thread of a 2-core CPU with native bf16 while other jobs shared it
(about 6 estimated without them).

    python -m benchmarks.bench_precision
    python -m benchmarks.bench_precision --rounds 3 --threads 2
    python -m benchmarks.bench_precision --run_dir demo_out/runs/unet_small_QPSK \
        --data_dir demo_out/data/processed/interferenceset_frame --out_family FM
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.bench_flops import capability, cpu_info
from src.ood.detection_stage import score_run
from src.ood.detector import ScoreOptions
from src.ood.evaluation import auroc, mean_auroc_bootstrap, percentile_interval
from src.ood.ood_folder import OodFolder

ROOT = Path(__file__).resolve().parents[1]
ERROR_COLUMNS = ("mse", "mae", "env", "lsd", "ssim")
SETTINGS = {  # name: reconstruct.py flags
    "onestep skip 1": ["--reconstruction_mode=onestep", "--inference_skip_factor=1"],
    "plms skip 16": ["--reconstruction_mode=plms", "--inference_skip_factor=16"],
    "path skip 10": ["--reconstruction_mode=path", "--inference_skip_factor=10"],
}
EPOCH_LINE = re.compile(r" epoch \d+/\d+ ")


def subprocess_env(threads: int) -> dict[str, str]:
    """The environment of every command: ``threads`` threads, output unbuffered (lines arrive as logged)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def run_command(command: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """Run ``python COMMAND`` from the repository root: (wall seconds, [(seconds since start, line)] of its
    output). Fails loudly, with the output's end, if the command fails."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        tail = "\n".join(line for _, line in lines[-15:])
        raise SystemExit(f"failed ({process.returncode}): python {' '.join(command)}\n{tail}")
    return time.perf_counter() - started, lines


def prepare_data(work: Path, families: list[str], env: dict[str, str], n_frames: int = 128,
                 splits: tuple[float, float] = (0.25, 0.25)) -> Path:
    """Synthetic windows of 256 samples at 20 dB (8 per frame of 2048), split by frame into train/val/test
    (by default 50/25/25: 512/256/256 per family); reused."""
    processed = work / "data" / "processed" / "interferenceset_frame"
    if not all(set_file(processed, family, split).is_file() for family in families for split in ("train", "test")):
        run_command(["-m", "src.data.synthetic", f"--out={work / 'data' / 'raw'}", f"--n_frames={n_frames}",
                     "--frame_length=2048", "--snr_db=20", "--seed=0", f"--families={','.join(families)}"], env)
        run_command(["src/data/signal_trim_and_unpack.py", f"--data_root={work / 'data' / 'raw'}",
                     f"--new_data_root={work / 'data' / 'processed'}", "--trim_length=256",
                     f"--val_split={splits[0]}", f"--test_split={splits[1]}", "--normalize=rms", "--seed=0"], env)
    return processed


def set_file(data: Path, family: str, split: str) -> Path:
    return data / f"{family}_raw_data_{split}.h5"


def train_run(work: Path, data: Path, inside: str, epochs: int, env: dict[str, str]) -> Path:
    """The run to reconstruct: a small UNet trained ``epochs`` epochs in fp32 (train_ddpm.py's other defaults)."""
    run = work / "runs" / "unet"
    if not (run / "checkpoint.pth").is_file():
        shutil.rmtree(run, ignore_errors=True)
        seconds, _ = run_command(["train_ddpm.py", f"--output_dir={run.parent}", "--model_name=unet",
                                  "--model_type=small", f"--training_h5file={set_file(data, inside, 'train')}",
                                  f"--validation_h5file={set_file(data, inside, 'val')}", f"--n_epochs={epochs}",
                                  "--figures=0", "--precision=fp32"], env)
        print(f"trained {run} ({epochs} epochs, fp32): {seconds:.0f} s", flush=True)
    return run


def copy_run(run: Path, target: Path) -> None:
    """The trained model in a run folder of its own, so that each setting's results stay apart."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "checkpoint.pth"):
        shutil.copy(run / name, target / name)


def reconstruct(run: Path, folder: Path, flags: list[str], precision: str, files: dict, first_n: int,
                env: dict[str, str]) -> tuple[float, str]:
    """One reconstruct.py of val, in and out into ``folder``: (wall seconds, what auto said it chose)."""
    copy_run(run, folder)
    seconds, lines = run_command(["reconstruct.py", f"--output_dir={folder.parent}", f"--model_name={folder.name}",
                                  f"--validation_h5file={files['val']}", f"--in_ids={files['in']}",
                                  f"--out_ids={files['out']}", f"--first_n={first_n}", f"--first_n_val={first_n}",
                                  "--overwrite=1", f"--precision={precision}", *flags], env)
    said = next((line.split(" INFO ", 1)[-1] for _, line in lines if " INFO precision " in line), "")
    return seconds, said


def reconstruction_rounds(args, run: Path, files: dict, env: dict[str, str]) -> tuple[pd.DataFrame, dict, str]:
    """Every setting in fp32 and auto, alternated, ``args.rounds`` times: (one row per setting and round,
    {setting: {precision: ood folder}}, what auto said it chose)."""
    rows, folders, said = [], {}, ""
    for name, flags in SETTINGS.items():
        first_n = args.plms_n if name.startswith("plms") else args.onestep_n
        folders[name] = {p: args.work_dir / "recon" / f"{name.replace(' ', '_')}_{p}" for p in ("fp32", "auto")}
        for index in range(args.rounds):
            order = ("fp32", "auto") if index % 2 == 0 else ("auto", "fp32")
            seconds = {}
            for precision in order:
                seconds[precision], line = reconstruct(run, folders[name][precision], flags, precision, files,
                                                       first_n, env)
                said = said or line
            rows.append({"setting": name, "windows/set": first_n, "round": index + 1, "fp32 s": seconds["fp32"],
                         "auto s": seconds["auto"], "fp32/auto": seconds["fp32"] / seconds["auto"]})
            print(f"  {name}, round {index + 1}: fp32 {seconds['fp32']:.1f} s, auto {seconds['auto']:.1f} s",
                  flush=True)
    return pd.DataFrame(rows), folders, said


def recorded_precision(folder: Path) -> str:
    return OodFolder(folder / "ood").load_settings().get("precision", "not recorded")


def error_deviation(reference: Path, other: Path) -> dict[str, float]:
    """||other - reference|| / ||reference|| of each error column, over every row of every results file."""
    deviations = {}
    frames = [(pd.read_csv(path), pd.read_csv(other / "ood" / path.name))
              for path in sorted((reference / "ood").glob("results_*.csv"))]
    for column in ERROR_COLUMNS:
        pairs = [(a[column].to_numpy(), b[column].to_numpy()) for a, b in frames if column in a]
        if pairs:
            ref, new = (np.concatenate(side) for side in zip(*pairs))
            deviations[column] = float(np.linalg.norm(new - ref) / np.linalg.norm(ref))
    return deviations


def auroc_comparison(reference: Path, other: Path, n_bootstrap: int) -> dict[str, str]:
    """Mean AUROC (in against out) of both with intervals and their paired difference; val against in of both."""
    runs = [score_run(OodFolder(folder / "ood"), ScoreOptions(None, None)) for folder in (reference, other)]
    points, values = mean_auroc_bootstrap([(run.inside, run.outs) for run in runs], runs[0].units, n_bootstrap)
    cells = {}
    for index, label in enumerate(("fp32", "auto")):
        low, high = percentile_interval(values[:, index])
        cells[f"AUROC {label}"] = f"{points[index]:.3f} ({low:.3f}-{high:.3f})"
    low, high = percentile_interval(values[:, 1] - values[:, 0])
    cells["auto - fp32"] = f"{points[1] - points[0]:+.4f} ({low:+.3f}..{high:+.3f})"
    cells["val-vs-in fp32 / auto"] = " / ".join(f"{auroc(run.val.to_numpy(), run.inside.to_numpy()):.3f}"
                                                for run in runs)
    return cells


def seconds_per_epoch(work: Path, data: Path, inside: str, precision: str, index: int, epochs: int,
                    env: dict[str, str]) -> float:
    """One fresh train_ddpm.py run: median seconds per epoch after the first (from when each epoch's line
    arrived)."""
    folder = work / "training" / f"{precision}_round{index + 1}"
    shutil.rmtree(folder, ignore_errors=True)
    _, lines = run_command(["train_ddpm.py", f"--output_dir={folder.parent}", f"--model_name={folder.name}",
                            f"--training_h5file={set_file(data, inside, 'train')}",
                            f"--validation_h5file={set_file(data, inside, 'val')}", f"--n_epochs={epochs}",
                            "--figures=0", f"--precision={precision}"], env)
    ends = [stamp for stamp, line in lines if EPOCH_LINE.search(line)]
    return statistics.median(later - earlier for earlier, later in zip(ends, ends[1:]))


def training_rounds(args, data: Path, env: dict[str, str]) -> pd.DataFrame:
    """train_ddpm.py in fp32 and bf16, alternated, ``args.rounds`` times; one row per round."""
    rows = []
    for index in range(args.rounds):
        order = ("fp32", "bf16") if index % 2 == 0 else ("bf16", "fp32")
        result = {p: seconds_per_epoch(args.work_dir, data, args.inside, p, index, args.train_epochs, env)
                  for p in order}
        rows.append({"round": index + 1, "fp32 s/epoch": result["fp32"], "bf16 s/epoch": result["bf16"],
                     "fp32/bf16": result["fp32"] / result["bf16"]})
        print(f"  training, round {index + 1}: fp32 {rows[-1]['fp32 s/epoch']:.2f} s/epoch, "
              f"bf16 {rows[-1]['bf16 s/epoch']:.2f} s/epoch", flush=True)
    return pd.DataFrame(rows)


def print_header(threads: int) -> None:
    name, flags = cpu_info()
    print(f"command: {shlex.join([sys.executable, '-m', 'benchmarks.bench_precision', *sys.argv[1:]])}")
    print(f"torch {torch.__version__}, {threads} thread(s) per process (OMP_NUM_THREADS), ATen CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"CPU: {name}; flags: " + ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in flags.items()))
    print(capability(flags), flush=True)


def print_table(title: str, table: pd.DataFrame) -> None:
    """``table`` under ``title``: seconds to 0.1, ratios and seconds per epoch to 0.01, deviations as 1.2e-03."""
    def shown(column: str):
        if column.startswith("dev "):
            return "{:.1e}".format
        return "{:.2f}".format if "/" in column else "{:.1f}".format
    formatters = {column: shown(column) for column in table.columns if table[column].dtype.kind == "f"}
    print(f"\n{title}")
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 80):
        print(table.to_string(index=False, formatters=formatters))


def reconstruction_report(args, env: dict[str, str]) -> None:
    """reconstruct.py in fp32 and auto, alternated: seconds, error deviations and AUROC (items 1-2 above)."""
    data = args.data_dir or prepare_data(args.work_dir, [args.inside, args.out_family], env)
    run = args.run_dir or train_run(args.work_dir, data, args.inside, args.run_epochs, env)
    files = {"val": set_file(data, args.inside, "val"), "in": set_file(data, args.inside, "test"),
             "out": set_file(data, args.out_family, "test")}
    table, folders, said = reconstruction_rounds(args, run, files, env)
    print(f"\nrun {run}; auto in reconstruct.py: {said or 'no line'}")
    print_table("reconstruct.py end to end (seconds of the whole process, Python start included), alternated:",
                table)
    medians = table.groupby("setting", sort=False)["fp32/auto"].median()
    print("median fp32/auto: " + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in medians.items()))
    quality = [{"setting": name, "auto ran": recorded_precision(pair["auto"]),
                **{f"dev {k}": v for k, v in error_deviation(pair["fp32"], pair["auto"]).items()},
                **auroc_comparison(pair["fp32"], pair["auto"], args.n_bootstrap)} for name, pair in folders.items()]
    print_table("errors, auto against fp32: relative deviation ||e_auto - e_fp32|| / ||e_fp32|| per column; mean "
                "AUROC in vs out (default score, val calibrates; frame-bootstrap 95% intervals, paired difference); "
                "val-vs-in AUROC", pd.DataFrame(quality))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", type=Path, default=Path("demo_out/bench_precision"))
    parser.add_argument("--fresh", action="store_true", help="delete --work_dir first (data, run, results)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated fp32/auto (fp32/bf16) pairs per setting")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every command (default: 1)")
    parser.add_argument("--run_dir", type=Path, default=None,
                        help="a trained run folder to reconstruct instead of training one here")
    parser.add_argument("--data_dir", type=Path, default=None,
                        help="processed h5 files <family>_raw_data_<split>.h5 (default: made here)")
    parser.add_argument("--inside", default="QPSK", help="in-distribution family (default: QPSK)")
    parser.add_argument("--out_family", default="PSK8",
                        help="the out set's family (default: PSK8, near QPSK: an AUROC short of 1 to compare)")
    parser.add_argument("--run_epochs", type=int, default=20, help="epochs of the run trained here (default: 20)")
    parser.add_argument("--onestep_n", type=int, default=64, help="windows per set, one-step (default: 64)")
    parser.add_argument("--plms_n", type=int, default=16, help="windows per set, PLMS (default: 16)")
    parser.add_argument("--train_epochs", type=int, default=4,
                        help="epochs per timed training run, the first not counted (default: 4)")
    parser.add_argument("--n_bootstrap", type=int, default=1000)
    parser.add_argument("--skip_training", action="store_true", help="time reconstruction only")
    parser.add_argument("--skip_reconstruction", action="store_true", help="time training only")
    parser.add_argument("--train_frames", type=int, default=512,
                        help="frames of 8 windows the training rounds use, split 60/20/20 as prep's default: 512 "
                             "gives 39 training steps and 13 validation batches an epoch (default: %(default)s)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.fresh:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    torch.set_num_threads(args.threads)
    env = subprocess_env(args.threads)
    started = time.perf_counter()
    print_header(args.threads)
    if not args.skip_reconstruction:
        reconstruction_report(args, env)
    if not args.skip_training:
        training_data = prepare_data(args.work_dir / "training", [args.inside], env, args.train_frames, (0.2, 0.2))
        training = training_rounds(args, training_data, env)
        print_table(f"train_ddpm.py defaults (small UNet, batch 64) on {args.train_frames} frames split 60/20/20 "
                    f"(prep's default), {args.train_epochs} epochs per run: seconds per epoch (median after the first)",
                    training)
        print(f"median fp32/bf16 per epoch: {training['fp32/bf16'].median():.2f}x")
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
