"""Streaming scoring of long recordings (score.py): peak memory against recording length, and throughput.

Each measurement runs score.py's code in its own subprocess (so peaks do not mix) on a complex64
``.npy`` stream (memory-mapped, read in chunks) and reports the subprocess's peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) with the scoring rate score.py itself prints
(windows/s and samples/s over the streaming loop; model loading and the threshold are not counted).

- **Memory against length**: the whole recording, ``--samples`` long and ``--factors`` times that
  (default 1x and 8x), scored in ``onestep`` mode (the cheapest, so the long one stays affordable).
  Streaming holds one chunk and one batch, so the peak should stay flat while the recording grows;
  holding the recording would add about 32 bytes per sample (complex frames, float I/Q windows, the
  float64 normalisation), shown as "whole file in RAM" for comparison.
- **Throughput**: the first ``--throughput_windows`` windows in ``onestep`` and in the run's own
  (default) mode.

The run: ``--output_dir/--model_name`` (an existing reconstructed run, e.g. the demo's), else a tiny
one made here (synthetic QPSK, 256-sample windows, the tiny UNet, a few epochs: its scores are
meaningless, its cost per window is what a small model costs). ``onestep`` needs its own val
reconstruction, so the run's config and checkpoint are copied to ``<work>/runs/<name>_onestep`` and
its val windows reconstructed there in that mode.

    python -m benchmarks.bench_streaming                                     # tiny run, 2^22 and 8 x 2^22 samples
    python -m benchmarks.bench_streaming --output_dir=demo_out/runs --model_name=unet_small_QPSK
    python -m benchmarks.bench_streaming --samples=65536 --throughput_windows=32 --epochs=1   # smallest, a check
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TINY_NET = ["--channels=8,16", "--attention_levels=0,1"]
WINDOW = 256
BYTES_IF_HELD = 32  # per sample: complex64 frames + float32 I/Q windows + their float64 normalisation
SUMMARY = re.compile(r": (\d+) windows of .* at ([\d.e+]+) windows/s, ([\d.e+]+) samples/s")


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


# --------------------------------------------------------------------------------------------------
# One measurement (in its own subprocess)
# --------------------------------------------------------------------------------------------------

def measure(output_dir: str, model_name: str, recording: str, flags: list[str]) -> dict:
    """Score ``recording`` with score.py's code in this process; its rates and this process's peak RSS."""
    # imported here, not at the top: only the measuring subprocess pays for torch
    import score
    from src.cli import options_from
    from src.distributed import Dist
    from src.field.scoring_stage import ScoringJob, score_inputs

    args = score.create_argparser().parse_args([f"--output_dir={output_dir}", f"--model_name={model_name}",
                                                f"--input={recording}", *flags])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        score_inputs(options_from(ScoringJob, args), Dist())
    found = SUMMARY.search(printed.getvalue())
    if found is None:
        raise SystemExit(f"no summary line in score.py's output:\n{printed.getvalue()}")
    return {"windows": int(found.group(1)), "windows_per_s": float(found.group(2)),
            "samples_per_s": float(found.group(3)),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measured(output_dir: Path, model_name: str, recording: Path, flags: list[str]) -> dict:
    """:func:`measure` in a fresh subprocess."""
    stdout = run_script("-m", "benchmarks.bench_streaming", "--measure", "--output_dir", str(output_dir),
                        "--model_name", model_name,
                        "--recording", str(recording), "--flags", json.dumps(flags))
    return json.loads(stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# The run, its onestep twin and the recordings
# --------------------------------------------------------------------------------------------------

def tiny_run(work: Path, epochs: int) -> tuple[Path, str]:
    """A tiny UNet on synthetic QPSK windows of 256 samples, its val set reconstructed (plms, 4 start points)."""
    data, runs = work / "data", work / "runs"
    run_script("-m", "src.data.synthetic", "--out", str(data / "raw"), "--families", "QPSK", "--n_frames", "40",
               "--frame_length", "2048")
    run_script("src/data/signal_trim_and_unpack.py", f"--data_root={data / 'raw'}",
               f"--new_data_root={data / 'processed'}", f"--trim_length={WINDOW}")
    processed = data / "processed" / "interferenceset_frame"
    run_script("train_ddpm.py", f"--output_dir={runs}", "--model_name=tiny", *TINY_NET, "--figures=0",
               f"--training_h5file={processed / 'QPSK_raw_data_train.h5'}",
               f"--validation_h5file={processed / 'QPSK_raw_data_val.h5'}", f"--n_epochs={epochs}", "--batch_size=32")
    run_script("reconstruct.py", f"--output_dir={runs}", "--model_name=tiny", "--run_in=0", "--run_out=0",
               f"--validation_h5file={processed / 'QPSK_raw_data_val.h5'}", "--inference_skip_factor=32",
               "--first_n_val=64")
    return runs, "tiny"


def onestep_twin(output_dir: Path, model_name: str, work: Path) -> tuple[Path, str]:
    """The run's config and checkpoint in ``<work>/runs/<name>_onestep``, its val set reconstructed in onestep."""
    source = output_dir / model_name
    settings = json.loads((source / "ood" / "reconstruction.json").read_text())
    config = json.loads((source / "config.json").read_text())
    runs, name = work / "runs", f"{model_name}_onestep"
    (runs / name).mkdir(parents=True, exist_ok=True)
    for file in ("config.json", "checkpoint.pth"):
        shutil.copy(source / file, runs / name / file)
    run_script("reconstruct.py", f"--output_dir={runs}", f"--model_name={name}", "--run_in=0", "--run_out=0",
               f"--validation_h5file={config['data']['validation_h5file']}", "--reconstruction_mode=onestep",
               f"--num_inference_steps={settings['num_inference_steps']}",
               f"--inference_skip_factor={settings['inference_skip_factor']}",
               f"--first_n_val={settings.get('first_n_val') or 256}")
    return runs, name


def write_recording(path: Path, n_samples: int, seed: int = 0) -> Path:
    """A complex64 noise stream of ``n_samples``, written in pieces (this process never holds it)."""
    stream = np.lib.format.open_memmap(path, mode="w+", dtype=np.complex64, shape=(n_samples,))
    rng = np.random.default_rng(seed)
    for first in range(0, n_samples, 1 << 20):
        count = min(1 << 20, n_samples - first)
        stream[first:first + count] = (rng.standard_normal(count) + 1j * rng.standard_normal(count)) / np.sqrt(2)
    stream.flush()
    del stream
    return path


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------

def row(what: str, mode: str, samples: int, result: dict) -> str:
    held = samples * BYTES_IF_HELD / 2**20
    return (f"{what:<10} {mode:<8} {samples:>11,} {result['windows']:>9,} {result['peak_mib']:>13.0f} "
            f"{held:>17.0f} {result['windows_per_s']:>11.1f} {result['samples_per_s']:>13.4g}")


def benchmark(args, work: Path) -> None:
    output_dir, model_name = ((Path(args.output_dir), args.model_name) if args.model_name
                              else tiny_run(work, args.epochs))
    runs = {"default": (output_dir, model_name), "onestep": onestep_twin(output_dir, model_name, work)}
    window = json.loads((output_dir / model_name / "config.json").read_text())["data"]["signal_length"]
    flags = [f"--batch_size={args.batch_size}", f"--chunk_windows={args.chunk_windows}"]
    print("command: python " + " ".join(sys.argv))
    print(f"run {model_name}; batch {args.batch_size}, chunks of {args.chunk_windows} windows; memory in onestep mode")
    print(f"{'measure':<10} {'mode':<8} {'samples':>11} {'windows':>9} {'peak RSS MiB':>13} "
          f"{'whole file in RAM':>17} {'windows/s':>11} {'samples/s':>13}")
    first = write_recording(work / "recording_1x.npy", args.samples)
    measured(*runs["onestep"], first, flags + ["--first_n=4"])  # builds the val spectra cache, not counted
    measured(*runs["default"], first, flags + ["--first_n=4"])
    for factor in args.factors:
        path = first if factor == 1 else write_recording(work / f"recording_{factor}x.npy", factor * args.samples)
        print(row(f"memory {factor}x", "onestep", factor * args.samples,
                  measured(*runs["onestep"], path, flags)), flush=True)
        if path != first:
            path.unlink()
    for mode in ("onestep", "default"):
        result = measured(*runs[mode], first, flags + [f"--first_n={args.throughput_windows}"])
        print(row("throughput", mode, result["windows"] * window, result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=None, help="folder of an existing reconstructed run (default: tiny)")
    parser.add_argument("--model_name", default=None, help="that run's name (default: a tiny run made here)")
    parser.add_argument("--samples", type=int, default=1 << 22, help="samples of the 1x recording")
    parser.add_argument("--factors", type=lambda text: [int(f) for f in text.split(",")], default=[1, 8],
                        help="recording lengths as multiples of --samples (default: 1,8)")
    parser.add_argument("--throughput_windows", type=int, default=2048, help="windows scored per throughput row")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--chunk_windows", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the tiny run")
    parser.add_argument("--work", default=None, help="folder for the tiny run and recordings (default: a temp folder)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recording", help=argparse.SUPPRESS)
    parser.add_argument("--flags", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.output_dir, args.model_name, args.recording, json.loads(args.flags))))
        return
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        benchmark(args, Path(args.work))
        return
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as work:
        benchmark(args, Path(work))


if __name__ == "__main__":
    main()
