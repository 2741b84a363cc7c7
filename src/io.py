"""Atomic, safe file writing and reading shared by every stage.

Every file another stage reads (configs, checkpoints, results) is written to a temporary file in
the same folder and moved into place with ``os.replace``, so a crash mid-write leaves the previous
file intact. Checkpoints hold tensors and plain values only and load with ``weights_only=True``.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from src.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise UserError(f"cannot write to {path.parent}: {err.strerror}; choose a writable --output_dir") from err
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give what a plain open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | os.PathLike, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{what} {path} is not readable JSON ({err}); re-create it") from err


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint of tensors and plain values; refuse anything that needs unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; train the model first or fix --output_dir/--model_name")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns in several lines (e.g. "Detected pickle protocol") on junk
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file fails anywhere in torch's readers (IndexError, KeyError, ...)
        if isinstance(err, pickle.UnpicklingError) and "unsupported global" in str(err).lower():
            raise UserError(
                f"refusing to load {path}: it holds Python objects, not only tensors and plain values "
                "(loading it could run code); use a checkpoint written by this toolkit"
            ) from err
        raise UserError(f"checkpoint {path} is unreadable, truncated or corrupt ({load_failure(err)}); use another "
                        "checkpoint") from err
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} holds a {type(state).__name__}, not the dict of a checkpoint; "
                        "use another checkpoint")
    return state


def load_failure(err: Exception) -> str:
    """One line saying why torch.load failed: the weights-only unpickler's own reason, else the first line."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {line[:200]}" if line else type(err).__name__


def make_dir(path: str | os.PathLike) -> Path:
    """Create a folder (and parents), or say in one line why it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {path}: {err.strerror}; choose a writable --output_dir") from err
    if not os.access(path, os.W_OK):
        raise UserError(f"cannot write to {path}: permission denied; choose a writable --output_dir")
    return path
