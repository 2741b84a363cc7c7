"""Matplotlib figures of IQ signals [B, 2, T] (channel 0 = I, 1 = Q) and their reconstructions.

Figures are plain :class:`matplotlib.figure.Figure` objects drawn on an Agg canvas: no pyplot state,
no window, nothing registered globally, so they can be logged to TensorBoard
(``writer.add_figure``) or saved as PNG (``figure.savefig``) and are freed once dropped.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
