"""Classical RF features per window of IQ signal: a model-free out-of-distribution baseline.

Each window [2, T] becomes one row of :func:`rf_features`: its log Welch spectrum, statistics of its
envelope and its normalised fourth-order cumulants (Swami & Sadler 2000, "Hierarchical digital
modulation classification using cumulants"), and optionally (``cyclic``) its cyclic features: how far
the spectral lines of z^2, z^4, z^8 and of the instantaneous power |z|^2 stand above their
neighbourhood, blind to carrier offset and phase. :class:`FeatureStatistics`, fitted on
in-distribution windows, scores any window by its squared Mahalanobis distance from them.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from src.dsp import (
    CARRIER_FFT_PAD,
    as_complex128,
    envelope,
    line_strength_db,
    power_line_strengths,
    psd_frequencies,
    welch_psd,
)
from src.errors import UserError

# Welch segment of the spectral features. Half the plotted spectrum's PSD_SEGMENT: a 256-sample window
# then averages 15 half-overlapping segments instead of 7, so each bin's dB value is about 1.5 times
# less noisy, and 32 bins (1/32 cycle/sample apart) still resolve the bandwidth and shape of the
# signals, while keeping the feature count (and the covariance to estimate) small.
FEATURE_PSD_SEGMENT = 32
PSD_FLOOR = 1e-6  # relative to the window's mean PSD (-60 dB): empty bins stay finite and bounded
TINY = 1e-30  # guards divisions, so an all-zero window gives finite features (and a large distance)
STD_FLOOR = 1e-12  # a feature that is constant over the training windows carries no scale

ENVELOPE_NAMES = ["env_mean", "env_cv", "env_kurtosis", "papr_db"]
CUMULANT_NAMES = ["abs_c20/c21", "abs_c40/c21^2", "abs_c41/c21^2", "c42/c21^2"]
CYCLIC_ORDERS = (2, 4, 8)  # the powers z^M whose line strengths are features (BPSK; QPSK, QAM; 8-PSK)
CYCLIC_NAMES = [f"line_z{order}_db" for order in CYCLIC_ORDERS] + ["line_env2_db"]
ENVELOPE_DC_GUARD = 2  # |z|^2 bins below this many 1/T (cycles/sample) from DC cannot be its line


def feature_names(psd_segment: int = FEATURE_PSD_SEGMENT, cyclic: bool = False) -> list[str]:
    """Name of each column of :func:`rf_features`; spectral bins are named by frequency (cycles/sample)."""
    spectrum = [f"psd_db_f{frequency:+.4f}" for frequency in psd_frequencies(psd_segment).tolist()]
    return spectrum + ENVELOPE_NAMES + CUMULANT_NAMES + (CYCLIC_NAMES if cyclic else [])


def rf_features(signals: torch.Tensor, psd_segment: int = FEATURE_PSD_SEGMENT, cyclic: bool = False) -> torch.Tensor:
    """Features of each window: signals [B, 2, T] (I, Q) -> float64 [B, psd_segment + 8 (+ 4 if cyclic)].

    Columns as :func:`feature_names`: ``psd_segment`` log-PSD bins in dB (FFT order), then envelope
    mean, coefficient of variation, kurtosis and peak-to-average power ratio (dB), then the
    cumulant ratios |C20|/C21, |C40|/C21^2, |C41|/C21^2 and C42/C21^2 (blind to carrier phase),
    then, if ``cyclic``, the :func:`cyclic_features`.
    """
    check_signals(signals, psd_segment)
    signals = signals.detach()
    parts = [log_psd(signals, psd_segment), envelope_statistics(signals), cumulant_features(signals)]
    return torch.cat(parts + ([cyclic_features(signals)] if cyclic else []), dim=-1)


def check_signals(signals: torch.Tensor, psd_segment: int) -> None:
    if not isinstance(signals, torch.Tensor) or signals.dim() != 3 or signals.shape[1] != 2:
        shape = tuple(signals.shape) if isinstance(signals, torch.Tensor) else type(signals).__name__
        raise UserError(f"signals must be a tensor [windows, 2, samples] (I, Q); got {shape}")
    if not 2 <= psd_segment <= signals.shape[-1]:
        raise UserError(f"psd_segment={psd_segment} must lie between 2 and the window length "
                        f"{signals.shape[-1]}; pass a smaller psd_segment or longer windows")


def log_psd(signals: torch.Tensor, psd_segment: int) -> torch.Tensor:
    """Welch PSD in dB, floored at PSD_FLOOR times the window's mean PSD: [B, 2, T] -> [B, segment]."""
    psd = welch_psd(signals, psd_segment).double()
    floor = PSD_FLOOR * psd.mean(dim=-1, keepdim=True) + TINY
    return 10 * torch.log10(psd + floor)


def envelope_statistics(signals: torch.Tensor) -> torch.Tensor:
    """Mean, std/mean, kurtosis E|a-m|^4/var^2 and PAPR in dB of the envelope a = |x|: [B, 4]."""
    amplitude = envelope(signals).double()
    mean = amplitude.mean(dim=-1)
    centred = amplitude - mean[:, None]
    variance = centred.pow(2).mean(dim=-1)
    power = amplitude.pow(2)
    papr = power.max(dim=-1).values.clamp_min(TINY) / power.mean(dim=-1).clamp_min(TINY)
    return torch.stack([mean, variance.sqrt() / mean.clamp_min(TINY),
                        centred.pow(4).mean(dim=-1) / variance.pow(2).clamp_min(TINY),
                        10 * torch.log10(papr)], dim=-1)


def cumulant_features(signals: torch.Tensor) -> torch.Tensor:
    """|C20|/C21, |C40|/C21^2, |C41|/C21^2 and C42/C21^2 of the window minus its mean: [B, 4]."""
    x = as_complex128(signals)
    x = x - x.mean(dim=-1, keepdim=True)
    power = x.abs().pow(2)
    c20, c21 = x.pow(2).mean(dim=-1), power.mean(dim=-1)
    c40 = x.pow(4).mean(dim=-1) - 3 * c20.pow(2)
    c41 = (x.pow(2) * power).mean(dim=-1) - 3 * c20 * c21
    c42 = power.pow(2).mean(dim=-1) - c20.abs().pow(2) - 2 * c21.pow(2)
    c21 = c21.clamp_min(TINY)
    return torch.stack([c20.abs() / c21, c40.abs() / c21.pow(2), c41.abs() / c21.pow(2),
                        c42 / c21.pow(2)], dim=-1)


def cyclic_features(signals: torch.Tensor) -> torch.Tensor:
    """Line strengths in dB (:func:`src.dsp.line_strength_db`) of z^2, z^4, z^8 and |z|^2: [B, 4].

    Blind to carrier offset and phase, which only move the lines of z^M and leave |z|^2 unchanged.
    """
    envelope_line = line_strength_db(envelope_spectrum(signals))
    return torch.cat([power_line_strengths(signals, CYCLIC_ORDERS), envelope_line[:, None]], dim=-1)


def envelope_spectrum(signals: torch.Tensor, pad: int = CARRIER_FFT_PAD) -> torch.Tensor:
    """|FFT|^2 of the power |z|^2 less its mean, zero-padded to ``pad`` T: [B, 2, T] -> [B, pad T].

    A linearly modulated signal's power has a line at its symbol rate (1/sps cycles/sample). Bins
    within ENVELOPE_DC_GUARD / T of DC are zeroed, so that the envelope's slow variations do not
    pass for it (a peak just beyond them then sees a slightly emptier neighbourhood).
    """
    power = as_complex128(signals).abs().pow(2)
    length = power.shape[-1]
    spectrum = torch.fft.fft(power - power.mean(dim=-1, keepdim=True), n=pad * length).abs().pow(2)
    frequency = torch.fft.fftfreq(pad * length, dtype=torch.float64, device=spectrum.device)
    return spectrum.masked_fill(frequency.abs() < ENVELOPE_DC_GUARD / length, 0.0)


class FeatureStatistics:
    """Mean and Ledoit-Wolf shrunk covariance of training features; scores by Mahalanobis distance.

    Features are standardised by their training mean and std before the shrinkage, which pulls
    towards a scaled identity: on raw features it would drown those with a small scale (cumulant
    ratios vary by ~0.01, spectral bins by dB) in the average variance of the others.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, precision: np.ndarray, shrinkage: float) -> None:
        self.mean, self.std, self.precision, self.shrinkage = mean, std, precision, shrinkage

    @classmethod
    def fit(cls, features: np.ndarray | torch.Tensor) -> FeatureStatistics:
        """Fit on training features [N, F] (N >= 2 windows, all finite)."""
        features = as_array(features, "training features")
        if len(features) < 2:
            raise UserError(f"training features have {len(features)} window(s); fit on at least 2 windows")
        if not np.isfinite(features).all():
            raise UserError("training features contain NaN or infinite values; drop or fix those windows first")
        mean = features.mean(axis=0)
        std = np.maximum(features.std(axis=0, ddof=1), STD_FLOOR)
        model = LedoitWolf(assume_centered=True).fit((features - mean) / std)
        return cls(mean, std, model.precision_, float(model.shrinkage_))

    def distance(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Squared Mahalanobis distance [N] of features [N, F] from the training windows."""
        features = as_array(features, "features")
        if features.shape[1] != len(self.mean):
            raise UserError(f"features have {features.shape[1]} columns but the statistics were fitted on "
                            f"{len(self.mean)}; compute both with the same psd_segment and cyclic setting")
        z = (features - self.mean) / self.std
        return np.einsum("nf,fg,ng->n", z, self.precision, z)

    def state(self) -> dict:
        """Tensors and plain values only, so a checkpoint holding it loads with weights_only=True."""
        return {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std),
                "precision": torch.from_numpy(self.precision), "shrinkage": self.shrinkage}

    @classmethod
    def from_state(cls, state: dict) -> FeatureStatistics:
        """The statistics saved by :meth:`state`."""
        return cls(*(state[key].numpy() for key in ("mean", "std", "precision")), float(state["shrinkage"]))


def as_array(features: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """float64 array [N, F] from a tensor or array, or a UserError naming ``what``."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise UserError(f"{what} must be a 2-D array [windows, features]; got shape {features.shape}")
    return features


class FeatureDistance(torch.nn.Module):
    """The feature baseline as a network: windows [B, 2, T] -> squared Mahalanobis distance [B].

    Its fitted statistics are buffers, so a run saves and reloads it like any model (a checkpoint of
    tensors, rebuilt from the ``network`` section of config.json by :func:`src.networks.build_model`).
    ``cyclic`` adds the cyclic features; it defaults to False, the features of runs saved before them.
    """

    def __init__(self, psd_segment: int = FEATURE_PSD_SEGMENT, n_features: int | None = None,
                 cyclic: bool = False) -> None:
        super().__init__()
        self.psd_segment, self.cyclic = psd_segment, cyclic
        n_features = n_features or len(feature_names(psd_segment, cyclic))
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("precision", torch.eye(n_features, dtype=torch.float64))

    def fit(self, features: np.ndarray | torch.Tensor) -> FeatureDistance:
        """Fit the statistics on training features [N, F] (see :class:`FeatureStatistics`)."""
        statistics = FeatureStatistics.fit(features)
        for name in ("mean", "std", "precision"):
            getattr(self, name).copy_(torch.from_numpy(getattr(statistics, name)))
        return self

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        z = (rf_features(signals, self.psd_segment, self.cyclic).to(self.mean.device) - self.mean) / self.std
        return torch.einsum("nf,fg,ng->n", z, self.precision, z)
