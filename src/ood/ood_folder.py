"""The ``<run>/ood/`` folder: every file the OOD stages write or read there, named in one place.

- ``results_val.csv``, ``results_in.csv``, ``results_<Name>.csv`` (reconstruct.py -> ood_detection.py,
  score.py): one row per (signal, t) with columns ``filename`` (sample id ``<file stem>:<index>``),
  ``type`` (val | in | out), ``dataset`` (display name), ``t``, one column per reconstruction
  distance (:data:`src.ood.distances.DISTANCES`) and ``frame``, the independent unit the signal
  belongs to (the frame its window was cut from; error bars resample these); ``snr_db``, the
  signal's SNR in dB, where the processed file records one (ood_detection.py's per-SNR tables); and
  ``snr_est_db``, its blind SNR estimate (:func:`src.dsp.blind_snr_db`; files written before it
  existed lack it and still read);
- ``reconstruction.json``: the settings the results were made with (mode, steps, start points, seed);
- ``.partial/<file stem>.rank<R>.csv``: rows of finished batches of a set not yet complete, so an
  interrupted reconstruction continues where it stopped; removed once the set's results are written;
- ``metrics_<metrics>_<score>.csv``, ``auroc_<metrics>_<score>.json``, ``snr_<metrics>_<score>.csv``
  (where the results record SNRs), ``report.md`` and ``report/`` (ood_detection.py);
  ``scores_<input stem>.csv`` and its plot (score.py); ``val_spectra.npz``, the val windows' per-bin
  spectral errors that score.py localises anomalies against (see :mod:`src.field.localisation`).

Every file is written atomically (:func:`src.io.atomic_path`); floats as :data:`FLOAT_FORMAT`.
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from src.errors import UserError
from src.io import atomic_path, load_json, make_dir, save_json
from src.ood.distances import DISTANCES

ID_COLUMNS = ("filename", "type", "dataset", "t")
UNIT_COLUMN = "frame"  # optional: results written before it existed treat every signal as its own unit
SNR_COLUMN = "snr_db"  # optional: each signal's SNR in dB, where its processed file records one
SNR_EST_COLUMN = "snr_est_db"  # optional: each signal's blind SNR estimate in dB (absent in older files)
SOURCE_ATTR = "source"  # DataFrame.attrs key of a read results frame: the file it was read from
FEATURE_COLUMN = "feat"  # the feature baseline's distance (train_features.py runs)
METRICS = (*DISTANCES, FEATURE_COLUMN)  # the error columns a results file may hold
FLOAT_FORMAT = "%.9g"  # enough digits that a results file reads back the float32 errors exactly
SETTINGS_FILE = "reconstruction.json"
PARTIAL_DIR = ".partial"
REPORT_DIR = "report"


class OodFolder:
    """Paths of one run's ``ood`` folder and the bookkeeping of its settings and partial files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    settings_file = property(lambda self: self.path / SETTINGS_FILE)
    partial_dir = property(lambda self: self.path / PARTIAL_DIR)
    report_file = property(lambda self: self.path / "report.md")
    report_dir = property(lambda self: self.path / REPORT_DIR)
    val_spectra_file = property(lambda self: self.path / "val_spectra.npz")  # score.py's per-bin val errors

    def results(self, set_type: str, name: str = "") -> Path:
        """``results_val.csv``, ``results_in.csv`` or ``results_<name>.csv`` for an out set."""
        return self.path / f"results_{set_type if set_type in ('val', 'in') else name}.csv"

    def out_results(self) -> dict[str, Path]:
        """Every out set's results file, by name."""
        return {path.stem.removeprefix("results_"): path for path in sorted(self.path.glob("results_*.csv"))
                if path.stem not in ("results_val", "results_in")}

    def metrics_file(self, suffix: str) -> Path:
        return self.path / f"metrics_{suffix}.csv"

    def auroc_file(self, suffix: str) -> Path:
        return self.path / f"auroc_{suffix}.json"

    def snr_file(self, suffix: str) -> Path:
        """``snr_<suffix>.csv``: AUROC and FPR@95TPR per SNR bin (ood_detection.py, where SNRs are known)."""
        return self.path / f"snr_{suffix}.csv"

    def scores_file(self, input_stem: str) -> Path:
        return self.path / f"scores_{input_stem}.csv"

    # -- settings ------------------------------------------------------------------------------

    def load_settings(self, required: bool = False) -> dict:
        """reconstruction.json ({} when absent, unless ``required``)."""
        if not self.settings_file.is_file() and not required:
            return {}
        if not self.settings_file.is_file():
            raise UserError(f"{self.settings_file} not found: the run has no reconstruction settings; run "
                            "reconstruct.py on it first (with --run_val=1)")
        return load_json(self.settings_file, "reconstruction settings")

    def start(self, settings: dict, set_results: list[Path], overwrite: bool) -> None:
        """Record ``settings``; with ``overwrite`` forget earlier results, else refuse to mix settings."""
        make_dir(self.path)
        if overwrite:
            for path in set_results:
                path.unlink(missing_ok=True)
            shutil.rmtree(self.partial_dir, ignore_errors=True)
        elif self.settings_file.is_file():
            earlier = self.load_settings()
            if earlier != json.loads(json.dumps(settings)):
                changed = sorted(key for key in set(earlier) | set(settings) if earlier.get(key) != settings.get(key))
                raise UserError(f"{self.path} holds results made with other settings ({', '.join(changed)} differ); "
                                "pass --overwrite=1 to start afresh, or use the earlier settings to continue")
        make_dir(self.partial_dir)
        save_json(settings, self.settings_file)

    # -- partial files -------------------------------------------------------------------------

    def partial_file(self, file_stem: str, rank: int) -> Path:
        return self.partial_dir / f"{file_stem}.rank{rank}.csv"

    def partial_files(self, file_stem: str) -> list[Path]:
        return sorted(self.partial_dir.glob(f"{file_stem}.rank*.csv"))

    def clear_partials(self, file_stem: str) -> None:
        for path in self.partial_files(file_stem):
            path.unlink()


def results_frame(ids: list[str], set_type: str, name: str, starts: list[int],
                  errors: dict[str, np.ndarray], frames: list[str] | None = None,
                  snr_db: list[float] | None = None, snr_est_db: np.ndarray | None = None) -> pd.DataFrame:
    """Rows for one batch: ``errors[metric]`` is [n_starts, B]; rows run signal-major, t ascending.

    ``frames``: each signal's independent unit (default: the signal itself). ``snr_db``: each
    signal's SNR in dB, written as column ``snr_db`` (None: no such column); ``snr_est_db`` likewise
    its blind estimate, column ``snr_est_db``.
    """
    n_starts, batch = next(iter(errors.values())).shape
    frame = pd.DataFrame({"filename": np.repeat(np.asarray(ids, dtype=object), n_starts),
                          "type": set_type, "dataset": name, "t": np.tile(np.asarray(starts), batch)})
    for metric, values in errors.items():
        frame[metric] = np.asarray(values, dtype=np.float64).T.reshape(-1)
    frame[UNIT_COLUMN] = np.repeat(np.asarray(ids if frames is None else frames, dtype=object), n_starts)
    if snr_db is not None:
        frame[SNR_COLUMN] = np.repeat(np.asarray(snr_db, dtype=np.float64), n_starts)
    if snr_est_db is not None:
        frame[SNR_EST_COLUMN] = np.repeat(np.asarray(snr_est_db, dtype=np.float64), n_starts)
    return frame


def signal_units(frame: pd.DataFrame) -> pd.Series:
    """Each signal's independent unit (filename -> frame id); the signal itself where none is recorded."""
    if UNIT_COLUMN not in frame.columns:
        ids = frame["filename"].drop_duplicates()
        return pd.Series(ids.to_numpy(), index=ids.to_numpy())
    return frame.groupby("filename", sort=False)[UNIT_COLUMN].first()


def in_sample_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by sample index (the number after the id's last colon), t order kept within a sample."""
    index = frame["filename"].str.rsplit(":", n=1).str[-1].astype(int).to_numpy()
    return frame.iloc[np.argsort(index, kind="stable")].reset_index(drop=True)


def write_results(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)


def write_table(table: pd.DataFrame, path: Path, **to_csv) -> None:
    """Any other CSV of the ood folder (metrics, scores), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, **{"float_format": FLOAT_FORMAT, **to_csv})


def append_partial(frame: pd.DataFrame, path: Path) -> None:
    """Append one finished batch's rows to a partial file (a crash can cut only the last line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False, float_format=FLOAT_FORMAT)


def as_written(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as its results file would read back (the same float rounding)."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False, float_format=FLOAT_FORMAT)))


def read_partials(paths: list[Path], n_starts: int) -> pd.DataFrame | None:
    """Rows of signals complete in earlier partial files (a line cut by a crash is dropped)."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path, on_bad_lines="skip").dropna())
        except (OSError, ValueError, pd.errors.ParserError):
            continue  # unreadable: its signals are simply done again
    if not frames:
        return None
    rows = pd.concat(frames, ignore_index=True).drop_duplicates(["filename", "t"])
    complete = rows.groupby("filename")["t"].transform("size") == n_starts
    return rows[complete].astype({"t": int})


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
    frame.attrs[SOURCE_ATTR] = str(path)  # where --snr_aware finds the windows of results without snr_est_db
    return frame


def load_sets(folder: OodFolder) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """(val, in, {out name: frame}) from an ood folder; out sets are every other results file."""
    for set_type in ("val", "in"):
        if not folder.results(set_type).is_file():
            raise UserError(f"{folder.path} has no results_{set_type}.csv; run reconstruct.py with "
                            f"--run_{set_type}=1 first")
    outs = {name: read_results(path) for name, path in folder.out_results().items()}
    if not outs:
        raise UserError(f"{folder.path} has no out results (results_<Name>.csv); run reconstruct.py with --out_ids")
    return read_results(folder.results("val")), read_results(folder.results("in")), outs
