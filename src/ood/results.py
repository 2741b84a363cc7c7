"""The results files between reconstruct.py and ood_detection.py (DESIGN.md, "Reconstruction results").

``<run>/ood/results_val.csv``, ``results_in.csv`` and ``results_<Name>.csv``: one row per
(signal, t) with columns ``filename`` (sample id), ``type`` (val | in | out), ``dataset`` (display
name), ``t`` and one column per error metric.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import UserError
from src.io import atomic_path

ID_COLUMNS = ("filename", "type", "dataset", "t")
METRICS = ("mse", "mae", "env", "lsd")  # src.diffusion.reconstruction.reconstruction_errors
SET_TYPES = ("val", "in", "out")


def results_path(ood_dir: Path, set_type: str, name: str) -> Path:
    return ood_dir / f"results_{set_type if set_type in ('val', 'in') else name}.csv"


def results_frame(ids: list[str], set_type: str, name: str, starts: list[int],
                  errors: dict[str, np.ndarray]) -> pd.DataFrame:
    """Rows for one batch: ``errors[metric]`` is [n_starts, B]; rows run signal-major, t ascending."""
    n_starts, batch = next(iter(errors.values())).shape
    frame = pd.DataFrame({"filename": np.repeat(np.asarray(ids, dtype=object), n_starts),
                          "type": set_type, "dataset": name, "t": np.tile(np.asarray(starts), batch)})
    for metric, values in errors.items():
        frame[metric] = np.asarray(values, dtype=np.float64).T.reshape(-1)
    return frame


def in_sample_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by sample index (the number after the id's last colon), t order kept within a sample."""
    index = frame["filename"].str.rsplit(":", n=1).str[-1].astype(int).to_numpy()
    return frame.iloc[np.argsort(index, kind="stable")].reset_index(drop=True)


def write_results(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def read_results(path: Path) -> pd.DataFrame:
    """Read a results file, checking its columns and values."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise UserError(f"cannot read results file {path} ({err}); run reconstruct.py again") from err
    missing = [column for column in ID_COLUMNS if column not in frame.columns]
    if missing or not any(metric in frame.columns for metric in METRICS):
        raise UserError(f"{path} lacks columns {missing or list(METRICS)}; re-create it with reconstruct.py")
    if frame.empty:
        raise UserError(f"{path} holds no rows; run reconstruct.py again")
    return frame
