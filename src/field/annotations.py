"""SigMF annotations out (score.py --annotate=1): a recording's flagged segments as a new ``.sigmf-meta``.

Consecutive flagged windows (window indices i, i + 1, ...) merge into one segment; each segment
becomes one annotation:

- ``core:sample_start``: the first sample of its first window; ``core:sample_count``: up to the end
  of its last window (with ``--hop`` above the window length the skipped samples between them count);
- ``core:freq_lower_edge`` / ``core:freq_upper_edge`` (Hz): the union of the bands localised in its
  windows (:mod:`src.field.localisation`), converted from cycles/sample with the sample rate and moved
  to RF by the capture's ``core:frequency`` where the recording gives one (else they stay baseband,
  relative to the centre); left out where no band was localised or the sample rate is unknown;
- ``core:label`` ``ood``, ``core:generator`` ``rfood score.py``, ``core:comment`` (windows, largest
  score, threshold) and the same numbers as ``rfood:windows``, ``rfood:score`` (the largest window
  score), ``rfood:threshold`` (the threshold at that window) and ``rfood:band_z``.

The new metadata copies the recording's global fields and captures (its own annotations are not
carried over), declares the ``rfood`` extension (optional) and points at the recording's samples with
``core:dataset``, relative to the new file, so sigmf opens it with the samples. The input is only read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.data.recordings import SIGMF_META_SUFFIX, open_sigmf
from src.errors import UserError
from src.io import atomic_path

LABEL = "ood"
GENERATOR = "rfood score.py"
NAMESPACE = {"name": "rfood", "version": "1.0.0", "optional": True}


@dataclass
class Segment:
    """Consecutive flagged windows: first window index, first sample, end sample (exclusive) and what they scored."""

    first: int
    last: int
    start: int
    stop: int
    score: float
    threshold: float
    low: float | None = None  # band edges, cycles/sample (baseband)
    high: float | None = None
    band_z: float | None = None

    @property
    def windows(self) -> int:
        return self.last - self.first + 1


class SegmentCollector:
    """Merges the flagged rows of score.py's per-window table (fed batch by batch, in window order) into
    :class:`Segment` s. ``unit`` is that of the band columns (hz, cycles or None) and ``sample_rate`` the
    recording's (Hz) where known."""

    def __init__(self, window: int, unit: str | None, sample_rate: float | None) -> None:
        self.window, self.unit, self.sample_rate = window, unit, sample_rate
        self.segments: list[Segment] = []

    def band(self, row) -> tuple[float | None, float | None, float | None]:
        """A flagged row's band as (low, high, z) in cycles/sample, or Nones."""
        if self.unit is None:
            return None, None, None
        center, width = ("band_center_hz", "band_width_hz") if self.unit == "hz" else ("band_center", "band_width")
        if pd.isna(getattr(row, center, np.nan)) or pd.isna(getattr(row, width, np.nan)):
            return None, None, None
        scale = self.sample_rate if self.unit == "hz" else 1.0
        center, width = getattr(row, center) / scale, getattr(row, width) / scale
        return center - width / 2, center + width / 2, float(row.band_z)

    def add(self, rows: pd.DataFrame) -> None:
        flagged = rows[rows["ood"] == 1]
        if flagged.empty:
            return
        indices = flagged["filename"].str.rsplit(":", n=1).str[-1].astype(int).to_numpy()
        for index, row in zip(indices.tolist(), flagged.itertuples(index=False)):
            low, high, z = self.band(row)
            offset, score, threshold = int(row.offset), float(row.score), float(row.threshold)
            current = self.segments[-1] if self.segments else None
            if current is None or index != current.last + 1:
                self.segments.append(Segment(index, index, offset, offset + self.window, score, threshold,
                                             low, high, z))
                continue
            current.last, current.stop = index, offset + self.window
            if score > current.score:
                current.score, current.threshold = score, threshold
            if low is not None:
                current.low = low if current.low is None else min(current.low, low)
                current.high = high if current.high is None else max(current.high, high)
                current.band_z = z if current.band_z is None or abs(z) > abs(current.band_z) else current.band_z


def annotation_path(target: Path, recording: Path, several: bool) -> Path:
    """The new metadata beside the results CSV: ``<csv stem>.sigmf-meta`` (``<csv stem>_<input stem>.sigmf-meta``
    when --out holds several inputs)."""
    stem = recording.name[:-len(SIGMF_META_SUFFIX)]
    name = f"{target.stem}_{stem}" if several else target.stem
    return target.with_name(f"{name}{SIGMF_META_SUFFIX}")


def dataset_file(recording: Path, global_info: dict) -> Path:
    """The file holding the recording's samples (its ``core:dataset``, else ``<name>.sigmf-data``)."""
    named = global_info.get("core:dataset")
    if named:
        return (recording.parent / named).resolve()
    return recording.with_name(recording.name[:-len(SIGMF_META_SUFFIX)] + ".sigmf-data").resolve()


def centre_frequency(captures: list[dict], sample: int) -> float | None:
    """``core:frequency`` of the capture holding ``sample`` (the last capture starting at or before it)."""
    holding = [capture for capture in captures if capture.get("core:sample_start", 0) <= sample]
    value = holding[-1].get("core:frequency") if holding else None
    return None if value is None else float(value)


def annotation(segment: Segment, captures: list[dict], sample_rate: float | None) -> dict:
    fields = {"core:sample_count": segment.stop - segment.start, "core:label": LABEL, "core:generator": GENERATOR,
              "core:comment": f"{segment.windows} window(s) flagged; largest score {segment.score:.6g} "
                              f"(threshold {segment.threshold:.6g})",
              "rfood:windows": segment.windows, "rfood:score": segment.score, "rfood:threshold": segment.threshold}
    if segment.low is not None and sample_rate is not None:
        centre = centre_frequency(captures, segment.start) or 0.0
        fields["core:freq_lower_edge"] = centre + segment.low * sample_rate
        fields["core:freq_upper_edge"] = centre + segment.high * sample_rate
        fields["rfood:band_z"] = segment.band_z
    return fields


def write_annotations(recording: Path, target: Path, segments: list[Segment], sample_rate: float | None) -> Path:
    """Write ``target`` (a new .sigmf-meta): the recording's global fields and captures, ``segments`` as its
    annotations, its samples referenced by ``core:dataset``. Validated against the SigMF schema first."""
    from sigmf import SigMFFile, error  # score.py reads SigMF recordings with it already (src.data.recordings)

    source = open_sigmf(recording)
    global_info = dict(source.get_global_info())
    data = dataset_file(recording, global_info)
    try:
        global_info["core:dataset"] = os.path.relpath(data, target.parent.resolve())
    except ValueError:  # another drive (Windows): an absolute path
        global_info["core:dataset"] = str(data)
    extensions = [extension for extension in global_info.get("core:extensions", [])
                  if extension.get("name") != NAMESPACE["name"]]
    global_info["core:extensions"] = [*extensions, dict(NAMESPACE)]
    if sample_rate is not None:
        global_info.setdefault("core:sample_rate", sample_rate)  # given by --sample_rate
    meta = SigMFFile(global_info=global_info)
    captures = [dict(capture) for capture in source.get_captures()]
    for capture in captures:
        meta.add_capture(capture.get("core:sample_start", 0),
                         metadata={key: value for key, value in capture.items() if key != "core:sample_start"})
    for segment in segments:
        meta.add_annotation(segment.start, segment.stop - segment.start, metadata=annotation(segment, captures,
                                                                                              sample_rate))
    try:
        meta.validate()
    except error.SigMFError as err:
        raise UserError(f"the annotations of {recording} do not validate as SigMF ({err}); its metadata may use "
                        "fields this sigmf version rejects") from err
    with atomic_path(target) as tmp:
        with open(tmp, "w") as handle:
            meta.dump(handle, pretty=True)
            handle.write("\n")
    return target
