"""Signal processing shared by every view of an IQ signal [..., 2, T] (channel 0 = I, 1 = Q).

One Welch power spectral density serves the log-spectral reconstruction error, the plotted spectra
and the classical feature baseline, so the spectrum that is drawn is the one that is scored.
"""
from __future__ import annotations

import torch

PSD_SEGMENT = 64  # Welch segment length in samples (fewer for shorter signals)


def as_complex(signals: torch.Tensor) -> torch.Tensor:
    """I + jQ of signals [..., 2, T] as complex64 [..., T]."""
    return torch.complex(signals[..., 0, :].float(), signals[..., 1, :].float())


def welch_psd(signals: torch.Tensor, segment: int = PSD_SEGMENT) -> torch.Tensor:
    """Two-sided power spectral density of I + jQ by Welch's method.

    Hann-windowed segments of ``segment`` samples (at most T), overlapping by half, periodograms
    averaged and divided by the window's energy. ``signals`` [..., 2, T] -> [..., segment], in FFT
    order (frequency ``k / segment`` cycles/sample for bin k < segment / 2, negative above; see
    :func:`psd_frequencies`).
    """
    segment = min(segment, signals.shape[-1])
    pieces = as_complex(signals).unfold(-1, segment, max(1, segment // 2))
    window = (torch.hann_window(segment, periodic=False, device=signals.device) if segment > 1
              else torch.ones(1, device=signals.device))
    power = torch.fft.fft(pieces * window, dim=-1).abs().pow(2).mean(dim=-2)
    return power / window.pow(2).sum()


def psd_frequencies(segment: int) -> torch.Tensor:
    """Frequencies (cycles/sample) of :func:`welch_psd`'s bins, in its FFT order."""
    return torch.fft.fftfreq(segment, dtype=torch.float64)


def envelope(signals: torch.Tensor) -> torch.Tensor:
    """Instantaneous amplitude sqrt(I^2 + Q^2): [..., 2, T] -> [..., T]."""
    return signals.float().pow(2).sum(dim=-2).sqrt()
