"""Matplotlib figures of IQ signals [B, 2, T] (channel 0 = I, 1 = Q) and their reconstructions, and of
scored recordings (waterfall and score trace, :func:`field_figure`).

Figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: no pyplot state,
no window, nothing registered globally, so they can be logged to TensorBoard
(``writer.add_figure``) or saved as PNG (``figure.savefig``) and are freed once dropped.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import EngFormatter

from src.dsp import psd_frequencies, welch_psd

MAX_ROWS = 4  # signals drawn per figure
COLUMNS = ("I/Q over time", "power spectral density", "constellation")


def as_numpy(signals) -> np.ndarray:
    """A tensor or array of signals as float numpy [B, 2, T]."""
    if isinstance(signals, torch.Tensor):
        signals = signals.detach().float().cpu().numpy()
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 3 or signals.shape[1] != 2:
        raise ValueError(f"signals must have shape [B, 2, T], got {signals.shape}")
    return signals


def power_spectral_density(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequency in cycles/sample from -0.5 to 0.5, PSD in dB) of one IQ signal [2, T].

    The Welch PSD the ``lsd`` reconstruction error scores (:func:`src.dsp.welch_psd`), fftshifted.
    """
    power = welch_psd(torch.as_tensor(signal, dtype=torch.float64)).double().numpy()
    frequency = psd_frequencies(len(power)).numpy()
    return np.fft.fftshift(frequency), 10 * np.log10(np.fft.fftshift(power) + 1e-12)


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas. Margins are fixed by the callers: a layout engine would double the
    drawing time of a 12-panel figure."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def signal_figure(originals, reconstructions, title: str = "") -> Figure:
    """Per signal (the first ``MAX_ROWS``): I/Q traces, PSD and constellation, original solid and
    reconstruction dashed (hollow markers in the constellation)."""
    originals, reconstructions = as_numpy(originals), as_numpy(reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {originals.shape} and reconstructions {reconstructions.shape} differ")
    rows = min(len(originals), MAX_ROWS)
    if rows == 0:
        raise ValueError("signal_figure needs at least one signal")
    height = 2.4 * rows + 1.3  # inches: 0.75 above for the titles, 0.55 below for the x labels
    figure = new_figure(12, height)
    axes = figure.subplots(rows, 3, squeeze=False, gridspec_kw=dict(
        left=0.06, right=0.98, top=1 - 0.75 / height, bottom=0.55 / height, wspace=0.25, hspace=0.25))
    for row in range(rows):
        draw_signal_row(axes[row], originals[row], reconstructions[row])
    for axis, name in zip(axes[0], COLUMNS):
        axis.set_title(name)
    for axis, name in zip(axes[-1], ("sample", "normalised frequency", "I")):
        axis.set_xlabel(name)
    axes[0, 0].legend(fontsize="small", ncol=2, loc="upper right")
    axes[0, 2].legend(fontsize="small", loc="upper right")
    if title:
        figure.suptitle(title, y=1 - 0.1 / height, va="top")
    return figure


def draw_signal_row(axes, original: np.ndarray, reconstruction: np.ndarray) -> None:
    time_axis, psd_axis, constellation_axis = axes
    for channel, (name, color) in enumerate((("I", "C0"), ("Q", "C1"))):
        time_axis.plot(original[channel], color=color, lw=1, label=name)
        time_axis.plot(reconstruction[channel], color=color, lw=1, ls="--", label=f"{name} recon.")
    for signal, style in ((original, "-"), (reconstruction, "--")):
        psd_axis.plot(*power_spectral_density(signal), color="C2" if style == "-" else "C3", lw=1, ls=style)
    psd_axis.set_ylabel("dB")
    constellation_axis.scatter(original[0], original[1], s=4, color="C2", label="original")
    constellation_axis.scatter(reconstruction[0], reconstruction[1], s=8, facecolors="none", edgecolors="C3",
                               linewidths=0.6, label="reconstruction")
    constellation_axis.set_aspect("equal", adjustable="datalim")
    constellation_axis.set_ylabel("Q")


def codebook_figure(counts, title: str = "codebook usage") -> Figure:
    """Bar chart of how often each VQ-VAE code was chosen; unused codes are marked on the x axis."""
    counts = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.float64)
    figure = new_figure(8, 3)
    axis = figure.subplots(gridspec_kw=dict(left=0.08, right=0.98, top=0.9, bottom=0.16))
    codes = np.arange(len(counts))
    axis.bar(codes, counts, width=0.8, color="C0")
    unused = codes[counts == 0]
    axis.plot(unused, np.zeros(len(unused)), "x", color="C3", label=f"unused ({len(unused)})")
    axis.set_xlabel("code")
    axis.set_ylabel("count")
    axis.set_title(f"{title}: {len(codes) - len(unused)}/{len(codes)} codes used")
    axis.legend(fontsize="small", loc="upper right")
    return figure


def as_picture(image: np.ndarray) -> np.ndarray:
    """A displayable 2D array of one image [C, H, W] or volume [C, H, W, D]: channel 0, middle slice of D."""
    picture = image[0]
    return picture[..., picture.shape[-1] // 2] if picture.ndim == 3 else picture


def image_figure(originals, reconstructions, title: str = "") -> Figure:
    """Each image (the first ``MAX_ROWS``; for volumes the middle slice) beside its reconstruction."""
    originals = torch.as_tensor(originals).detach().float().cpu().numpy()
    reconstructions = torch.as_tensor(reconstructions).detach().float().cpu().numpy()
    rows = min(len(originals), MAX_ROWS)
    figure = new_figure(4.0, 2.0 * rows + 0.6)
    axes = figure.subplots(rows, 2, squeeze=False)
    for row in range(rows):
        pairs = ((originals[row], "original"), (reconstructions[row], "reconstruction"))
        for column, (image, name) in enumerate(pairs):
            axes[row, column].imshow(as_picture(image), cmap="gray", vmin=0.0, vmax=1.0)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(name)
    if title:
        figure.suptitle(title, fontsize="small")
    return figure


def field_figure(edges: np.ndarray, frequencies: np.ndarray, psd_db: np.ndarray, scores: np.ndarray,
                 threshold: float, flagged: np.ndarray, bands: np.ndarray, in_seconds_and_hz: bool,
                 title: str = "") -> Figure:
    """A scored recording: its waterfall with the flagged windows' bands boxed, over its score trace.

    ``edges`` [n + 1]: where each of the n columns starts (and the last ends); ``frequencies`` [bins]:
    bin centres, ascending and evenly spaced; ``psd_db`` [n, bins]: each column's PSD in dB;
    ``scores`` [n]: each column's (highest) OOD score; ``flagged`` [n] bool; ``bands`` [n, 2]: the
    flagged band's centre and width (NaN: none found). Times and frequencies are in seconds and Hz
    when ``in_seconds_and_hz``, else in samples and cycles/sample.
    """
    figure = new_figure(10.0, 6.5)
    waterfall, trace = figure.subplots(2, 1, sharex=True, gridspec_kw=dict(
        height_ratios=(2.2, 1.0), left=0.1, right=0.88, top=0.9, bottom=0.09, hspace=0.08))
    draw_waterfall(waterfall, edges, frequencies, psd_db, flagged, bands)
    draw_score_trace(trace, edges, scores, threshold, flagged)
    if in_seconds_and_hz:
        waterfall.yaxis.set_major_formatter(EngFormatter(unit="Hz"))
        trace.xaxis.set_major_formatter(EngFormatter(unit="s"))
    waterfall.set_ylabel("frequency" if in_seconds_and_hz else "frequency (cycles/sample)")
    trace.set_xlabel("time" if in_seconds_and_hz else "sample")
    if title:
        figure.suptitle(title, fontsize="medium", y=0.98)
    return figure


def bin_edges(centres: np.ndarray) -> np.ndarray:
    """Edges [n + 1] around evenly spaced bin centres [n]."""
    step = centres[1] - centres[0] if len(centres) > 1 else 1.0
    return np.r_[centres - step / 2, centres[-1] + step / 2]


def draw_waterfall(axes, edges: np.ndarray, frequencies: np.ndarray, psd_db: np.ndarray, flagged: np.ndarray,
                   bands: np.ndarray) -> None:
    """PSD (dB) against time and frequency; flagged columns boxed over their band (a tick at the top without one)."""
    frequency_edges = bin_edges(frequencies)
    mesh = axes.pcolormesh(edges, frequency_edges, psd_db.T, shading="flat", cmap="viridis")
    colorbar = axes.figure.colorbar(mesh, ax=axes, pad=0.01, fraction=0.04)
    colorbar.set_label("PSD (dB)")
    low, high = frequency_edges[0], frequency_edges[-1]
    for column in np.flatnonzero(flagged):
        start, stop = edges[column], edges[column + 1]
        center, width = bands[column]
        if np.isnan(center):
            axes.plot([start, stop], [high, high], color="red", linewidth=4, solid_capstyle="butt", clip_on=False)
            continue
        for bottom, top in wrapped_span(center - width / 2, center + width / 2, low, high):
            axes.add_patch(Rectangle((start, bottom), stop - start, top - bottom, fill=False, edgecolor="red",
                                     linewidth=1.2))
    axes.set(ylim=(low, high), title="waterfall: flagged windows boxed over their band")


def wrapped_span(bottom: float, top: float, low: float, high: float) -> list[tuple[float, float]]:
    """[bottom, top] cut into the pieces that lie inside [low, high] once wrapped around the spectrum."""
    span = high - low
    if bottom < low:
        return [(bottom + span, high), (low, top)]
    if top > high:
        return [(bottom, high), (low, top - span)]
    return [(bottom, top)]


def draw_score_trace(axes, edges: np.ndarray, scores: np.ndarray, threshold: float, flagged: np.ndarray) -> None:
    """Each column's score against time (log axis when they span decades), the threshold dashed, flags red."""
    centres = (edges[:-1] + edges[1:]) / 2
    axes.plot(centres, scores, color="C0", linewidth=1, label="score")
    axes.plot(centres[flagged], scores[flagged], "o", color="red", markersize=3, label="flagged")
    axes.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}")
    finite = scores[np.isfinite(scores)]
    if len(finite) and finite.min() > 0 and max(finite.max(), threshold) / min(finite.min(), threshold) > 30:
        axes.set_yscale("log")
    axes.set_ylabel("OOD score")
    axes.legend(fontsize="small", loc="upper right")
