"""Signal processing shared by every view of an IQ signal [..., 2, T] (channel 0 = I, 1 = Q).

One Welch power spectral density serves the log-spectral reconstruction error, the plotted spectra
and the classical feature baseline, so the spectrum that is drawn is the one that is scored.
"""
from __future__ import annotations

import functools

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


# --------------------------------------------------------------------------------------------------
# Blind carrier recovery: the M-th power estimator
# --------------------------------------------------------------------------------------------------
# Raising a linearly modulated signal to the power M of its constellation's rotational symmetry wipes
# the modulation off (QPSK: s^4 = -1 for every symbol) and leaves a spectral line at M times the
# carrier offset. Its peak gives the offset, the phase of the de-rotated z^M the carrier phase, both
# up to the constellation's own M-fold symmetry.

CARRIER_ORDERS = (2, 4, 8)  # BPSK; QPSK and square QAM; 8-PSK
CARRIER_MODES = ("off", "auto", *(f"power{order}" for order in CARRIER_ORDERS))  # --carrier_recovery
CARRIER_FFT_PAD = 4  # zero padding of the FFT of z^M: bins 1/(4 T) apart before interpolation
LINE_NEIGHBOURHOOD = 16  # unpadded bins either side of a line that set its background
LINE_GUARD = 2  # unpadded bins either side of a line's peak left out of its background (its main lobe)
# The sign of E[s^M] for the textbook constellation of each order (BPSK +-1: s^2 = +1; QPSK at
# pi/4 + k pi/2 and square QAM: E s^4 < 0; 8-PSK at k pi/4: s^8 = +1), so that the de-rotated
# constellation lands where the textbook (and the embedded generator) puts it.
CARRIER_REFERENCE = {2: 1.0, 4: -1.0, 8: 1.0}


def power_spectrum(z: torch.Tensor, order: int, pad: int = CARRIER_FFT_PAD) -> torch.Tensor:
    """|FFT(z^M)|^2 of complex windows z [..., T] raised to ``order``, zero-padded to ``pad`` T: [..., pad T]."""
    return torch.fft.fft(z.pow(order), n=pad * z.shape[-1], dim=-1).abs().pow(2)


def as_complex128(signals: torch.Tensor) -> torch.Tensor:
    """I + jQ of signals [..., 2, T] in double precision (z^8 of a peaky window needs the range)."""
    return as_complex(signals).to(torch.complex128)


def line_strength_db(spectrum: torch.Tensor, pad: int = CARRIER_FFT_PAD) -> torch.Tensor:
    """How far a spectrum's strongest bin stands above its neighbourhood, in dB: [..., n] -> [...] float64.

    The neighbourhood is +-LINE_NEIGHBOURHOOD unpadded bins around the peak, less its main lobe
    (+-LINE_GUARD bins), so a spectrum's overall shape (a band-limited z^2 leaves most bins empty)
    does not pass for a line. Complex Gaussian noise of 256 samples gives about 8 dB (the largest of
    a few hundred exponential variables), the z^4 line of QPSK at 20 dB about 16 dB.
    """
    n = spectrum.shape[-1]
    peak, k = spectrum.max(dim=-1, keepdim=True)
    offsets = torch.arange(-LINE_NEIGHBOURHOOD * pad, LINE_NEIGHBOURHOOD * pad + 1, device=spectrum.device)
    offsets = offsets[offsets.abs() > LINE_GUARD * pad]
    background = spectrum.gather(-1, (k + offsets) % n).mean(dim=-1, keepdim=True)
    return (10 * torch.log10(peak.clamp_min(1e-300) / background.clamp_min(1e-300))).squeeze(-1)


def power_line_strengths(signals: torch.Tensor, orders=CARRIER_ORDERS) -> torch.Tensor:
    """The line strength (dB) of z^M for each order M: [B, 2, T] -> float64 [B, len(orders)].

    Invariant to carrier offset and phase: a rotation only moves the line.
    """
    z = as_complex128(signals)
    return torch.stack([line_strength_db(power_spectrum(z, order)) for order in orders], dim=-1)


def peak_frequency(spectrum: torch.Tensor) -> torch.Tensor:
    """Frequency (cycles/sample, in [-1/2, 1/2)) of each spectrum's peak, refined between bins.

    Parabolic interpolation through the peak bin and its two neighbours on the magnitude (the
    spectrum's square root): with 4x zero padding the residual error is a small fraction of a bin.
    """
    n = spectrum.shape[-1]
    magnitude = spectrum.sqrt()
    k = magnitude.argmax(dim=-1, keepdim=True)
    left = magnitude.gather(-1, (k - 1) % n)
    centre = magnitude.gather(-1, k)
    right = magnitude.gather(-1, (k + 1) % n)
    curvature = left - 2 * centre + right
    delta = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp_max(-1e-300), torch.zeros_like(centre))
    frequency = (k.double() + delta.clamp(-0.5, 0.5)) / n
    return (frequency + 0.5).remainder(1.0).squeeze(-1) - 0.5


def estimate_carrier(signals: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blind (offset, phase) of each window by the ``order``-th power estimator: two float64 [B].

    Offset (cycles/sample): the peak of the zero-padded FFT of z^M divided by M; unambiguous for
    |offset| < 1 / (2 M). Phase (rad): the angle of the mean of the de-rotated z^M, against the sign
    the textbook constellation gives it, divided by M: known only modulo 2 pi / M (the M-fold
    ambiguity every blind estimator has; a constellation with M-fold symmetry looks the same).
    """
    offset, phase, _ = carrier_of(as_complex128(signals), order)
    return offset, phase


def recover_carrier(signals: torch.Tensor, order: int) -> torch.Tensor:
    """Each window with its blindly estimated carrier offset and phase removed: [B, 2, T] -> [B, 2, T].

    Batched and on the signals' device; the power of every window is unchanged.
    """
    return recover_carrier_with_offset(signals, order)[0]


def recover_carrier_with_offset(signals: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`recover_carrier`, and the offset (cycles/sample, float64 [B]) removed from each window: a component
    at frequency f of the window sits at f - offset in the recovered one."""
    offset, phase, derotated = carrier_of(as_complex128(signals), order)
    recovered = derotated * torch.polar(torch.ones_like(phase), -phase)[..., None]
    return torch.stack([recovered.real, recovered.imag], dim=-2).to(signals.dtype), offset


def carrier_of(z: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offset and phase of complex windows z [B, T] (as :func:`estimate_carrier`), and z with the offset removed."""
    if order not in CARRIER_REFERENCE:
        raise ValueError(f"carrier recovery order must be one of {sorted(CARRIER_REFERENCE)}, got {order}")
    offset = peak_frequency(power_spectrum(z, order)) / order
    n = torch.arange(z.shape[-1], device=z.device, dtype=torch.float64)
    derotated = z * torch.polar(torch.ones_like(n), -2 * torch.pi * offset[..., None] * n)
    moment = derotated.pow(order).mean(dim=-1) * CARRIER_REFERENCE[order]
    return offset, torch.angle(moment) / order, derotated


AUTO_MARGIN_DB = 3.0  # a power's line "stands out" when its median strength beats noise's by this much
NOISE_REFERENCE_WINDOWS = 256


@functools.lru_cache(maxsize=16)
def noise_line_strengths(length: int, orders: tuple[int, ...] = CARRIER_ORDERS) -> torch.Tensor:
    """Median line strength (dB) of complex white Gaussian noise windows of ``length`` samples, per order.

    The level a window with no line reaches by chance; seeded, so the same for every run (computed once
    per length).
    """
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((NOISE_REFERENCE_WINDOWS, 2, length), generator=generator)
    return power_line_strengths(noise, orders).median(dim=0).values


def choose_carrier_order(signals: torch.Tensor,
                         orders=CARRIER_ORDERS) -> tuple[int, dict[int, float], dict[int, float]]:
    """The carrier-recovery order ``auto`` picks from training windows [N, 2, T], or 0 (off).

    The lowest order M whose z^M line, median over the windows, stands AUTO_MARGIN_DB above what
    noise reaches (QPSK: 4; BPSK: 2; 8-PSK: 8; OFDM, a chirp or noise: none, so 0). Returns the order,
    the windows' median strength per order and noise's, both in dB.
    """
    seen = power_line_strengths(signals, orders).median(dim=0).values
    noise = noise_line_strengths(int(signals.shape[-1]), tuple(orders))
    strengths = {order: float(value) for order, value in zip(orders, seen)}
    reference = {order: float(value) for order, value in zip(orders, noise)}
    chosen = next((order for order in orders if strengths[order] - reference[order] >= AUTO_MARGIN_DB), 0)
    return chosen, strengths, reference


# --------------------------------------------------------------------------------------------------
# Blind SNR: the noise floor of a time-trimmed spectrogram
# --------------------------------------------------------------------------------------------------
# A window's power is signal plus white noise; the noise fills every frequency at one level, the
# signal of a band-limited emission only its band. So the level of the quietest frequencies is the
# noise density and the SNR is total power / noise power - 1. Three steps make that level robust on a
# window of a few hundred samples:
# 1. a spectrogram (Hann segments of SNR_SEGMENT samples, SNR_HOP apart); per frequency bin the mean
#    of its quietest SNR_KEEP share of segments, so power that visits a bin only part of the time
#    (a chirp sweeping through, the symbol transitions of OFDM) does not count as noise;
# 2. the noise level: the mean of the bins below SNR_GAMMA times the level, iterated from the mean of
#    the quietest SNR_START share of bins. A truncated mean reaches the same fixed point whatever share
#    of the band is noise only, so it is unbiased for narrow and wide signals alike (a plain low
#    quantile is not: with few noise-only bins it climbs into the signal);
# 3. both statistics shrink pure noise by a known factor, measured once per window length on seeded
#    complex white noise and divided out.
# Limits: a signal that fills the whole band (no noise-only bins) reads as noise (SNR near 0 dB or
# below); a signal's own out-of-band emission counts as noise, so the estimate saturates where that
# emission meets the noise (rectangular-symbol OFDM: its guard band is ~20 dB under its in-band level,
# so it reads ~2 dB low at 20 dB). docs/usage.md gives the measured error per family and SNR.

SNR_SEGMENT = 32  # spectrogram segment (samples; fewer for shorter windows)
SNR_HOP = 8  # samples between segments
SNR_KEEP = 0.8  # share of each bin's quietest segments averaged
SNR_START = 0.1  # share of the quietest bins that starts the noise-level iteration
SNR_GAMMA = 1.4  # bins below this multiple of the current level count as noise
SNR_ITERATIONS = 8
SNR_RANGE_DB = (-30.0, 100.0)  # estimates are clipped here (an all-zero or noiseless window hits an edge)
SNR_REFERENCE_WINDOWS = 256


def spectrogram_floor(signals: torch.Tensor) -> torch.Tensor:
    """The uncalibrated noise level of each window (steps 1 and 2 above): [..., 2, T] -> float64 [...]."""
    z = as_complex128(signals)
    length = z.shape[-1]
    segment = min(SNR_SEGMENT, length)
    hop = max(1, min(SNR_HOP, segment // 4))
    window = (torch.hann_window(segment, periodic=False, dtype=torch.float64, device=z.device) if segment > 2
              else torch.ones(segment, dtype=torch.float64, device=z.device))
    cells = torch.fft.fft(z.unfold(-1, segment, hop) * window, dim=-1).abs().pow(2) / window.pow(2).sum()
    kept = max(1, round(SNR_KEEP * cells.shape[-2]))
    bins = cells.sort(dim=-2).values[..., :kept, :].mean(dim=-2)  # [..., segment]
    start = max(1, round(SNR_START * segment))
    level = bins.sort(dim=-1).values[..., :start].mean(dim=-1, keepdim=True)
    for _ in range(SNR_ITERATIONS):
        below = (bins <= SNR_GAMMA * level).double()
        level = torch.where(below.sum(-1, keepdim=True) > 0,
                            (bins * below).sum(-1, keepdim=True) / below.sum(-1, keepdim=True).clamp_min(1), level)
    return level.squeeze(-1)


@functools.lru_cache(maxsize=16)
def snr_calibration(length: int) -> float:
    """What :func:`spectrogram_floor` reads on complex white noise of unit power, ``length`` samples (median of
    seeded windows): the factor that turns it into the noise power."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn((SNR_REFERENCE_WINDOWS, 2, length), generator=generator, dtype=torch.float64)
    floor = spectrogram_floor(noise)
    power = noise.pow(2).sum(dim=-2).mean(dim=-1)
    return float((floor / power).median())


def blind_snr_db(signals: torch.Tensor) -> torch.Tensor:
    """Each window's SNR in dB, estimated blindly (no labels, any modulation): [..., 2, T] -> float64 [...].

    Total power over the calibrated noise floor of a time-trimmed spectrogram, minus one (see above);
    independent of the window's scale, clipped to SNR_RANGE_DB. On 256-sample windows of the embedded
    families the median over 32 windows is within about 1 dB from 0 to 20 dB (OFDM: see the limits
    above), single windows within about +-1.5 dB.
    """
    power = signals.double().pow(2).sum(dim=-2).mean(dim=-1)
    noise = spectrogram_floor(signals) / snr_calibration(int(signals.shape[-1]))
    ratio = torch.where(noise > 0, power / noise.clamp_min(1e-300) - 1.0, torch.full_like(power, float("inf")))
    ratio = torch.where(power > 0, ratio, torch.zeros_like(power))  # an all-zero window: no signal
    low, high = (10.0 ** (edge / 10.0) for edge in SNR_RANGE_DB)
    return 10.0 * torch.log10(ratio.clamp(low, high))
