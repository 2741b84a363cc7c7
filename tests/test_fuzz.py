"""Readers under fuzzing: damaged files end in one `error:` line and exit code 2, never a traceback.

Every reader a user points at a file is fed seeded mutants of a good file: random bytes, truncations and
bit flips (for the SigMF metadata also valid JSON with a field changed, for split files also odd text),
through the command line that reads it, in this process (:func:`conftest.run_inline`). A few run in a new
interpreter as well, where what a library prints (PyTorch's multi-line "Detected pickle protocol"
warning) would show.

A mutant may still read as a valid file (a flipped bit in a weight or a sample), so each command is built
to stop with exit code 2 after the read whatever it read: reconstruct.py on a run whose
reconstruction.json records another seed; training with a validation set of another shape; prep with
--num_samples above the windows there are; score.py with a second input that does not exist. The error
line must name the mutated file, or be that fallback error.

The HDF5 library itself can abort the process on a damaged file (a bit-flipped raw h5 here ended in
"double free or corruption", which no Python code can catch), and which mutants do so depends on the
HDF5 version installed: h5 mutants are read in a forked copy of this process, so such a crash fails
that test, naming the mutant, instead of ending the test session.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
import sigmf
from test_bad_input import fresh

from conftest import TINY_RUN_TRAIN, run_inline, write_processed

TRAIN_FLAGS = TINY_RUN_TRAIN  # the flags of conftest's tiny_run
OTHER_SEED = "holds results made with other settings"  # reconstruct.py's fallback error
OTHER_SHAPE = "holds data of shape"  # training's
TOO_FEW = "--num_samples=100000 but its frames give only"  # prep's
NOT_FOUND = "input not found"  # score.py's


@pytest.fixture(scope="module")
def run(tiny_run) -> dict:
    """{"files", "runs"}: conftest's session ``tiny_run``, a tiny UNet run ``m`` (one quick epoch) with its val, in
    and out sets reconstructed at 3 start points. Shared, so never written: the tests work on copies of ``runs``."""
    return tiny_run


# ---------------------------------------------------------------------------------------------- mutants

def mutants(good: bytes, seed: int, random: int, truncated: int, flipped: int, edge: int = 0) -> list[tuple]:
    """(name, bytes): random bytes (up to 2 KiB or twice the file), truncations of ``good`` and copies of it
    with 1 to 3 bits flipped anywhere, and ``edge`` more with one bit flipped in its first or last 2 KiB
    (a checkpoint's structure: its pickle and the zip directory)."""
    rng = np.random.default_rng(seed)
    cases = [(f"random{i}", rng.bytes(int(rng.integers(1, min(2 * len(good), 2048))))) for i in range(random)]
    cases += [(f"truncated{i}", good[:int(rng.integers(0, len(good)))]) for i in range(truncated)]
    for i in range(flipped + edge):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4)) if i < flipped else 1):
            span = min(2048, len(good))
            at = int(rng.integers(0, len(good))) if i < flipped else \
                int(rng.integers(0, span)) if i % 2 else len(good) - 1 - int(rng.integers(0, span))
            data[at] ^= 1 << int(rng.integers(0, 8))
        cases.append((f"flipped{i}", bytes(data)))
    return cases


def json_mutants(good: bytes, seed: int, count: int) -> list[tuple]:
    """Valid JSON with one field set to another type or value, or deleted."""
    rng = np.random.default_rng(seed)
    values = [None, -1, 0, 1e300, "x", "", [], {}, True, "ri16_le", "cf32", [{"core:sample_start": -5}]]

    def paths(node, prefix=()):
        yield prefix
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            yield from paths(child, (*prefix, key))

    every = list(paths(json.loads(good)))
    cases = []
    for i in range(count):
        doc, path = json.loads(good), every[int(rng.integers(1, len(every)))]
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = values[int(rng.integers(0, len(values)))]
        cases.append((f"json{i}", json.dumps(doc).encode()))
    return cases


def text_mutants(seed: int, count: int) -> list[tuple]:
    """UTF-8 text of quotes, separators, NUL, a home folder of nobody, a name too long for the OS, ..."""
    rng = np.random.default_rng(seed)
    pieces = list('ab,"\n\r~/\\. \x00\t') + ["~nosuchuser/x", "a" * 300, "image\n", "\u2028", "\ufeff", "img0.npy"]
    return [(f"text{i}", "".join(pieces[int(k)] for k in rng.integers(0, len(pieces), int(rng.integers(1, 40))))
             .encode()) for i in range(count)]


# ---------------------------------------------------------------------------------------------- the check

def check_all(target: Path, cases: list[tuple], argv: list[str], fallback: str, isolate: bool = False) -> None:
    """Write each mutant to ``target`` and run ``argv``: exit 2, one line naming ``target`` (or ``fallback``).
    With ``isolate``, in a forked copy of this process (for HDF5, which may abort on a damaged file)."""
    failures = in_child(run_cases, target, cases, argv, fallback) if isolate else \
        run_cases(target, cases, argv, fallback)
    assert not failures, f"{len(failures)} of {len(cases)} mutants of {target.name}:\n" + "\n".join(failures)


def run_cases(target: Path, cases: list[tuple], argv: list[str], fallback: str) -> list[str]:
    failures = []
    for name, data in cases:
        target.write_bytes(data)
        target.with_name(target.name + ".now").write_text(name)  # which mutant, should the process die
        result = run_inline(*argv)
        lines = result.stderr.splitlines()
        if not (result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:")
                and (target.name in lines[0] or fallback in lines[0])):
            failures.append(f"{name}: exit {result.returncode}\n{result.stderr[-1500:]}")
    return failures


def in_child(check, target: Path, *args) -> list[str]:
    """``check(target, *args)`` (a list of failures) run in a forked copy of this process; a crash is a failure."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 0
        try:
            os.close(read_end)
            payload = json.dumps(check(target, *args)).encode()
        except BaseException as err:  # noqa: BLE001 (a failing check is reported, not raised, from here)
            payload, code = json.dumps([f"the check raised {err!r}"]).encode(), 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        now = target.with_name(target.name + ".now")
        return [f"the process died of {signal.Signals(os.WTERMSIG(status)).name} on mutant "
                f"{now.read_text() if now.is_file() else '?'} (kept in {target})"]
    return json.loads(payload)


def checkpoint_command(run: dict, tmp_path: Path) -> tuple[Path, list[str]]:
    """A copy of the run whose reconstruction.json records another seed, and reconstruct.py's val command on it."""
    runs = tmp_path / "runs"
    shutil.copytree(run["runs"], runs)
    settings_file = runs / "m" / "ood" / "reconstruction.json"
    settings_file.write_text(json.dumps({**json.loads(settings_file.read_text()), "seed": 12345}))
    return runs / "m" / "checkpoint.pth", [
        "reconstruct.py", f"--output_dir={runs}", "--model_name=m", f"--validation_h5file={run['files']['Tone_val']}",
        "--run_in=0", "--run_out=0", "--first_n_val=6", "--inference_skip_factor=40"]


def raw_recordings(folder: Path) -> tuple[Path, Path]:
    """``X_raw_data.h5`` and ``X.sigmf-meta`` (+ data), each 5 complex frames of 64 samples, in ``folder``."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = (rng.standard_normal((5, 64)) + 1j * rng.standard_normal((5, 64))).astype(np.complex64)
    with h5py.File(folder / "X_raw_data.h5", "w") as handle:
        handle["dataset"] = frames
        handle["sig_type"] = np.bytes_("X")
    frames.ravel().tofile(folder / "X.sigmf-data")
    meta = sigmf.SigMFFile(global_info={"core:datatype": "cf32_le", "core:sample_rate": 1e6},
                           data_file=folder / "X.sigmf-data")
    meta.add_capture(0, metadata={"core:datetime": "2024-05-01T12:00:00Z"})
    meta.tofile(folder / "X")
    return folder / "X_raw_data.h5", folder / "X.sigmf-meta"


def prep_command(tmp_path: Path) -> list[str]:
    return ["src/data/signal_trim_and_unpack.py", f"--data_root={tmp_path / 'raw'}",
            f"--new_data_root={tmp_path / 'out'}", "--trim_length=32", "--frame_length=64", "--num_samples=100000"]


# ---------------------------------------------------------------------------------------------- the readers

def test_checkpoints(run, tmp_path):
    target, argv = checkpoint_command(run, tmp_path)
    good = target.read_bytes()
    rng = np.random.default_rng(1)
    # a pickle header of an unknown protocol: PyTorch warned in several lines before failing
    protocol = [(f"protocol{i}", bytes([0x80, int(rng.integers(6, 256))]) + rng.bytes(200)) for i in range(2)]
    check_all(target, protocol + mutants(good, 1, random=6, truncated=6, flipped=8, edge=8), argv, OTHER_SEED)


def test_processed_h5(run, tmp_path):
    short = write_processed(tmp_path / "Short_raw_data_val.h5", np.ones((4, 2, 32)), "Short")
    target = tmp_path / "F_raw_data_train.h5"
    argv = ["train_ddpm.py", f"--output_dir={tmp_path / 'runs'}", "--model_name=m", *TRAIN_FLAGS,
            f"--training_h5file={target}", f"--validation_h5file={short}"]
    check_all(target, mutants(run["files"]["Tone_train"].read_bytes(), 2, random=6, truncated=6, flipped=16), argv,
              OTHER_SHAPE, isolate=True)


def test_raw_h5_and_sigmf_meta_in_prep(tmp_path):
    h5, meta = raw_recordings(tmp_path / "raw")
    argv = prep_command(tmp_path)
    good_meta = meta.read_bytes()
    meta.unlink()  # one recording at a time
    check_all(h5, mutants(h5.read_bytes(), 3, random=6, truncated=6, flipped=24), argv, TOO_FEW, isolate=True)
    h5.unlink()
    check_all(meta, mutants(good_meta, 4, random=6, truncated=6, flipped=12) + json_mutants(good_meta, 4, 20),
              argv, TOO_FEW)


def test_raw_h5_and_sigmf_meta_in_score(run, tmp_path):
    """score.py opens raw recordings with its own streaming readers."""
    h5, meta = raw_recordings(tmp_path / "raw")
    runs = tmp_path / "runs"
    shutil.copytree(run["runs"], runs)  # the shared run stays as it is, whatever score.py writes
    for target, cases in ((h5, mutants(h5.read_bytes(), 5, random=1, truncated=1, flipped=4)),
                          (meta, json_mutants(meta.read_bytes(), 5, 6))):
        argv = ["score.py", f"--output_dir={runs}", "--model_name=m", "--localise=0",
                f"--input={target},{tmp_path / 'missing.npy'}"]
        check_all(target, cases, argv, NOT_FOUND, isolate=target == h5)


def test_csv_split_files(tmp_path):
    folder = tmp_path / "data_splits"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"img{i}.npy", np.random.default_rng(i).random((8, 8)).astype(np.float32))
    np.save(folder / "small.npy", np.ones((6, 6), np.float32))
    (folder / "Small_val.csv").write_text("small.npy\n")
    target = folder / "Img_train.csv"
    good = b"image\nimg0.npy\nimg1.npy\nimg2.npy\n"
    argv = ["train_ddpm.py", f"--output_dir={tmp_path / 'runs'}", "--model_name=m", *TRAIN_FLAGS,
            "--spatial_dimension=2", f"--training_h5file={target}", f"--validation_h5file={folder / 'Small_val.csv'}"]
    check_all(target, mutants(good, 6, random=6, truncated=6, flipped=12) + text_mutants(6, 10), argv, OTHER_SHAPE)


def test_a_fresh_interpreter_prints_one_line_too(run, tmp_path):
    """What a library prints in a new process (warnings filters are not pytest's there): a checkpoint with an
    unknown pickle protocol, a bit-flipped raw h5 and a SigMF metadata file with a field of the wrong type."""
    target, checkpoint_argv = checkpoint_command(run, tmp_path / "a")
    target.write_bytes(bytes([0x80, 0x4F]) + np.random.default_rng(7).bytes(300))
    h5, meta = raw_recordings(tmp_path / "b" / "raw")
    meta.unlink()
    h5_bytes = bytearray(h5.read_bytes())
    h5_bytes[len(h5_bytes) // 3] ^= 0xFF
    h5.write_bytes(bytes(h5_bytes))
    _, meta = raw_recordings(tmp_path / "c" / "raw")
    (meta.parent / "X_raw_data.h5").unlink()
    doc = json.loads(meta.read_text())
    doc["captures"] = 3.5
    meta.write_text(json.dumps(doc))
    commands = [(checkpoint_argv, target.name), (prep_command(tmp_path / "b"), h5.name),
                (prep_command(tmp_path / "c"), meta.name)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results: list[subprocess.CompletedProcess] = list(pool.map(fresh, [argv for argv, _ in commands]))
    for (argv, name), result in zip(commands, results):
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (argv[0], result.stderr)
        assert name in lines[0] or OTHER_SEED in lines[0] or TOO_FEW in lines[0], lines[0]
