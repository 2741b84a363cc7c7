"""Embedded synthetic RF signal families, written in the MIT RF Challenge InterferenceSet layout.

Each family is one generator ``(rng, n_frames, frame_length, shaping) -> complex128 [n_frames, frame_length]``
of unit average power (E|x|^2 = 1 by construction), registered in :data:`FAMILIES`. To add a family,
write one such function and append one entry to :data:`FAMILIES` (append, so the seeds of the existing
families, derived from their position, stay the same). Names carry no underscore: the toolkit shows a
file by its stem before the first underscore.

The families:
    QPSK, QAM16     Gray QPSK / 16-QAM with root-raised-cosine (RRC) pulses; ``--sps``, ``--rolloff``.
    OFDM            64-subcarrier cyclic-prefix OFDM.
    Chirp           linear-FM sawtooth sweep.
    GMSK            GMSK, BT 0.3.
    FM              narrowband single-tone FM.
    Near-OOD variants of QPSK, each changing one thing and keeping the rest:
    PSK8            8-PSK symbols, same RRC shaping (same spectrum, other constellation).
    QPSKro20        roll-off 0.20 (a steeper spectrum edge).
    QPSKsr          5/4 the samples per symbol (20 % lower symbol rate, 20 % narrower spectrum).
    QPSKpn          Wiener (random-walk) phase noise.
    QPSKiq          IQ imbalance: 1 dB gain, 5 degree phase skew.
    QPSKcw          a tone 15 dB below the QPSK, inside its band.
    Near-OOD neighbours of QAM16, other constellations with the same RRC shaping (``--sps``, ``--rolloff``):
    QAM32           32-QAM cross constellation (the 6x6 odd-level grid without its 4 corners).
    QAM64           square Gray 64-QAM.
    APSK16          DVB-S2 16-APSK: 4 + 12 points on two rings, radius ratio 2.57.
    PSK16           16-PSK.

Every frame then gets the same channel impairments (:func:`apply_impairments`): a random carrier
frequency offset, a random carrier phase and complex AWGN at the frame's SNR relative to the unit
signal power. ``--snr_db`` is one value for all frames, or a range ``LO:HI`` from which each frame's SNR
is drawn uniformly (from a generator of its own, so the signals stay those of a single-value run).

Output: ``<out>/interferenceset_frame/<Name>_raw_data.h5`` with dataset ``dataset`` = complex64
[n_frames, frame_length], dataset ``sig_type`` = the family name as bytes, dataset ``snr_db`` =
float32 [n_frames] (each frame's SNR) and the settings as file attributes.

Example::

    python -m src.data.synthetic --out demo_out/raw --n_frames 64 --frame_length 4096 --snr_db 0:20
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python src/data/synthetic.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

import h5py
import numpy as np

from src.cli import Parser, comma_list, positive_int, run_main, setup_logging
from src.errors import UserError
from src.io import atomic_path

log = logging.getLogger("rfood")

RAW_SUBDIR = "interferenceset_frame"
SPS = 8  # samples per symbol of the single-carrier families (default of --sps)
ROLLOFF = 0.35  # RRC excess bandwidth (default of --rolloff)
SPAN = 8  # RRC length in symbols

SnrSpec = float | tuple[float, float]  # one SNR in dB, or a (lo, hi) range to draw from


@dataclass(frozen=True)
class Shaping:
    """Pulse shaping of the RRC families (QPSK, QAM16, the QPSK variants and the QAM neighbours).

    sps: samples per symbol (>= 2, so that the RRC band (1 + rolloff) / (2 sps) fits below Nyquist).
    rolloff: RRC excess bandwidth in (0, 1].
    """
    sps: int = SPS
    rolloff: float = ROLLOFF


BASE_SHAPING = Shaping()

Generator = Callable[[np.random.Generator, int, int, Shaping], np.ndarray]
SymbolSource = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


# --------------------------------------------------------------------------------------------------
# Building blocks: Gray-coded constellations and root-raised-cosine pulse shaping
# --------------------------------------------------------------------------------------------------

def gray_pam_levels(bits: np.ndarray) -> np.ndarray:
    """Map Gray-coded bit groups ``bits[..., k]`` to the 2^k PAM levels -(2^k-1), ..., -1, +1, ..., 2^k-1.

    Gray code: neighbouring levels differ in exactly one bit (k=2: 00 -> -3, 01 -> -1, 11 -> +1,
    10 -> +3), so the most likely symbol error costs one bit error. The level index is the Gray
    word decoded to binary (b_i = g_0 xor ... xor g_i, most significant bit first).
    """
    bits_per_level = bits.shape[-1]
    binary = np.bitwise_xor.accumulate(bits.astype(np.int64), axis=-1)
    weights = 1 << np.arange(bits_per_level - 1, -1, -1)
    index = binary @ weights
    return 2.0 * index - (2 ** bits_per_level - 1)


def gray_qam_symbols(rng: np.random.Generator, shape: tuple[int, ...], bits_per_axis: int) -> np.ndarray:
    """Uniform random symbols of a square Gray-coded QAM with unit average power.

    ``bits_per_axis`` = 1 gives QPSK (4 points), 2 gives 16-QAM. In-phase and quadrature are
    independent Gray PAMs with M = 2^bits_per_axis levels; the mean power of the square QAM,
    2 (M^2 - 1) / 3, is divided out (QPSK: 2, 16-QAM: 10).
    """
    bits = rng.integers(0, 2, size=(*shape, 2, bits_per_axis))
    levels = gray_pam_levels(bits)
    levels_per_axis = 2 ** bits_per_axis
    mean_power = 2.0 * (levels_per_axis ** 2 - 1) / 3.0
    return (levels[..., 0] + 1j * levels[..., 1]) / np.sqrt(mean_power)


def psk_symbols(rng: np.random.Generator, shape: tuple[int, ...], order: int) -> np.ndarray:
    """Uniform random symbols of ``order``-PSK: exp(2 pi j k / order), k uniform in 0..order-1 (unit power).

    Points sit at multiples of 2 pi / order, so 8-PSK contains the QPSK points' angles pi/4 + k pi/2.
    (Gray labelling would only matter for bit errors; the symbols are uniform either way.)
    """
    return np.exp(2j * np.pi * rng.integers(0, order, size=shape) / order)


def cross_qam32_points() -> np.ndarray:
    """The 32 points of cross 32-QAM, unnormalised: the 6x6 grid of odd levels {+-1, +-3, +-5}^2 without
    its 4 corners (+-5, +-5). Mean power (12 * 70 - 4 * 50) / 32 = 20."""
    levels = np.arange(-5.0, 6.0, 2.0)
    in_phase, quadrature = np.meshgrid(levels, levels, indexing="ij")
    corner = (np.abs(in_phase) == 5) & (np.abs(quadrature) == 5)
    return (in_phase + 1j * quadrature)[~corner]


def cross_qam32_symbols(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random symbols of cross 32-QAM (:func:`cross_qam32_points`) with unit average power.

    Dropping the four highest-energy corners keeps the peak-to-mean power at 34 / 20 = 1.7 (the square
    64-QAM's: 98 / 42 = 2.33). (Its quasi-Gray labelling would only matter for bit errors; the symbols
    are uniform either way.)
    """
    points = cross_qam32_points()
    return points[rng.integers(0, len(points), size=shape)] / np.sqrt(np.mean(np.abs(points) ** 2))


# 16-APSK outer/inner ring radius ratio: DVB-S2's value for code rate 9/10 (ETSI EN 302 307-1, Table 9,
# which gives 3.15, 2.85, 2.75, 2.70, 2.60, 2.57 for rates 2/3, 3/4, 4/5, 5/6, 8/9, 9/10).
APSK16_GAMMA = 2.57


def apsk16_points(gamma: float = APSK16_GAMMA) -> np.ndarray:
    """The 16 points of DVB-S2 16-APSK with unit average power: 4 on an inner ring at pi/4 + k pi/2 and 12
    on an outer ring at pi/12 + k pi/6, radii r1 and r2 = gamma r1 with (4 r1^2 + 12 r2^2) / 16 = 1."""
    inner_radius = np.sqrt(16.0 / (4.0 + 12.0 * gamma ** 2))
    inner = inner_radius * np.exp(1j * (np.pi / 4 + np.arange(4) * np.pi / 2))
    outer = gamma * inner_radius * np.exp(1j * (np.pi / 12 + np.arange(12) * np.pi / 6))
    return np.concatenate([inner, outer])


def apsk16_symbols(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random symbols of DVB-S2 16-APSK (:func:`apsk16_points`, ring ratio ``APSK16_GAMMA``), unit power.

    Two constant-envelope rings rather than a grid: the constellation of satellite links, whose
    amplifiers run near saturation. (The symbols are uniform; the labelling only matters for bit errors.)
    """
    points = apsk16_points()
    return points[rng.integers(0, len(points), size=shape)]


def rrc_taps(sps: int, rolloff: float, span: int) -> np.ndarray:
    """Root-raised-cosine filter taps, ``span * sps + 1`` of them, normalised to unit energy.

    With t in symbol periods (T = 1) the impulse response is (Proakis, "Digital Communications"):

        h(t) = [sin(pi t (1 - b)) + 4 b t cos(pi t (1 + b))] / [pi t (1 - (4 b t)^2)]

    with the removable singularities
        h(0)            = 1 + b (4 / pi - 1)
        h(+-1 / (4 b))  = b / sqrt(2) * [(1 + 2 / pi) sin(pi / (4 b)) + (1 - 2 / pi) cos(pi / (4 b))].
    A pair of RRC filters (transmit and matched receive) forms a raised-cosine pulse, which is zero
    at every nonzero multiple of T: no inter-symbol interference.

    Args:
        sps: samples per symbol.
        rolloff: excess bandwidth b, in (0, 1].
        span: filter length in symbols.
    """
    if sps < 1 or span < 1 or not 0.0 < rolloff <= 1.0:
        raise ValueError(f"rrc_taps needs sps >= 1, span >= 1 and 0 < rolloff <= 1, got {sps}, {span}, {rolloff}")
    t = (np.arange(span * sps + 1) - span * sps / 2) / sps
    at_zero = np.isclose(t, 0.0)
    at_edge = np.isclose(np.abs(4 * rolloff * t), 1.0)
    regular = ~(at_zero | at_edge)
    taps = np.empty_like(t)
    tr = t[regular]
    taps[regular] = (np.sin(np.pi * tr * (1 - rolloff)) + 4 * rolloff * tr * np.cos(np.pi * tr * (1 + rolloff))) / (
        np.pi * tr * (1 - (4 * rolloff * tr) ** 2))
    taps[at_zero] = 1 + rolloff * (4 / np.pi - 1)
    quarter = np.pi / (4 * rolloff)
    taps[at_edge] = rolloff / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(quarter) + (1 - 2 / np.pi) * np.cos(quarter))
    return taps / np.sqrt(np.sum(taps ** 2))


def random_windows(rng: np.random.Generator, stream: np.ndarray, frame_length: int, max_offset: int) -> np.ndarray:
    """Cut one ``frame_length`` window per row of ``stream``, each starting at a random offset < max_offset."""
    offsets = rng.integers(0, max_offset, size=(stream.shape[0], 1))
    return np.take_along_axis(stream, offsets + np.arange(frame_length), axis=1)


def rrc_modulate(rng: np.random.Generator, n_frames: int, frame_length: int, symbols: SymbolSource,
                 shaping: Shaping) -> np.ndarray:
    """Unit-power symbols from ``symbols(rng, shape)``, upsampled by zero insertion and RRC shaped; unit power.

    The symbol timing is random per frame, and the filter's start-up transient is cut off. With unit
    power symbols every ``sps`` samples and unit-energy taps the output power is 1 / sps, hence the
    sqrt(sps) gain. The spectrum is the raised cosine: flat up to (1 - rolloff) / (2 sps) cycles/sample,
    zero beyond (1 + rolloff) / (2 sps).
    """
    sps = shaping.sps
    taps = rrc_taps(sps, shaping.rolloff, SPAN)
    n_symbols = -(-(frame_length + 2 * len(taps)) // sps)
    upsampled = np.zeros((n_frames, n_symbols * sps), dtype=complex)
    upsampled[:, ::sps] = symbols(rng, (n_frames, n_symbols))
    shaped = np.stack([np.convolve(row, taps, mode="valid") for row in upsampled]) * np.sqrt(sps)
    return random_windows(rng, shaped, frame_length, max_offset=sps)


# --------------------------------------------------------------------------------------------------
# The families
# --------------------------------------------------------------------------------------------------

def qpsk(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Gray QPSK, RRC shaped (default 8 samples/symbol, roll-off 0.35), 8-symbol filter span, random timing."""
    return rrc_modulate(rng, n_frames, frame_length, partial(gray_qam_symbols, bits_per_axis=1), shaping)


def qam16(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Square Gray 16-QAM with the same RRC shaping as QPSK: the near-OOD case for a QPSK model."""
    return rrc_modulate(rng, n_frames, frame_length, partial(gray_qam_symbols, bits_per_axis=2), shaping)


OFDM_NFFT = 64
OFDM_CP = 16
# 48 data subcarriers +-1..+-24; DC (bin 0) and the band-edge guards +-25..+-32 stay empty.
OFDM_DATA_BINS = np.r_[1:25, OFDM_NFFT - 24:OFDM_NFFT]


def ofdm(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Cyclic-prefix OFDM: 64-point IFFT, 16-sample cyclic prefix, 48 Gray-QPSK data subcarriers.

    DC and the edge guard bins are null. OFDM symbols (80 samples each) are concatenated and cut to
    ``frame_length`` at a random start offset in [0, 80). The orthonormal IFFT of 48 unit-power bins
    out of 64 has power 48 / 64 per sample, hence the sqrt(64 / 48) gain. ``shaping`` does not apply.
    """
    symbol_length = OFDM_NFFT + OFDM_CP
    n_symbols = frame_length // symbol_length + 2
    grid = np.zeros((n_frames, n_symbols, OFDM_NFFT), dtype=complex)
    grid[..., OFDM_DATA_BINS] = gray_qam_symbols(rng, (n_frames, n_symbols, len(OFDM_DATA_BINS)), 1)
    body = np.fft.ifft(grid, axis=-1, norm="ortho") * np.sqrt(OFDM_NFFT / len(OFDM_DATA_BINS))
    with_prefix = np.concatenate([body[..., -OFDM_CP:], body], axis=-1)
    stream = with_prefix.reshape(n_frames, n_symbols * symbol_length)
    return random_windows(rng, stream, frame_length, max_offset=symbol_length)


def chirp(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Linear-FM sawtooth sweep interferer (constant envelope, unit power).

    The instantaneous frequency ramps linearly from -B/2 to +B/2 cycles/sample over P samples and
    jumps back: f[n] = B * (((n + n0) mod P) / P - 1/2); phase = 2 pi * cumsum(f). Per frame:
    sweep bandwidth B uniform in [0.2, 0.8] of the sample rate, period P uniform in 256..1024
    samples, and the sweep's starting point n0 uniform in [0, P). ``shaping`` does not apply.
    """
    bandwidth = rng.uniform(0.2, 0.8, size=(n_frames, 1))
    period = rng.integers(256, 1025, size=(n_frames, 1))
    start = rng.integers(0, period)
    position = (np.arange(frame_length) + start) % period
    frequency = bandwidth * (position / period - 0.5)
    return np.exp(2j * np.pi * np.cumsum(frequency, axis=1))


GMSK_BT = 0.3  # Gaussian filter bandwidth-time product (GSM)
GMSK_SPAN = 4  # Gaussian filter length in symbols


def gaussian_pulse_taps(sps: int, bt: float, span: int) -> np.ndarray:
    """Gaussian frequency-pulse taps, ``span * sps + 1`` of them, summing to 1.

    h(t) = exp(-t^2 / (2 sigma^2)) with sigma = sqrt(ln 2) / (2 pi BT) symbol periods: the filter
    whose 3 dB bandwidth is BT times the symbol rate.
    """
    t = (np.arange(span * sps + 1) - span * sps / 2) / sps
    sigma = np.sqrt(np.log(2.0)) / (2 * np.pi * bt)
    taps = np.exp(-t ** 2 / (2 * sigma ** 2))
    return taps / taps.sum()


def gmsk(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """GMSK (BT 0.3, 8 samples/symbol): continuous-phase, constant envelope, random timing.

    Random +-1 symbols are held for ``SPS`` samples, smoothed by the Gaussian pulse and integrated
    into the phase with modulation index 1/2, so each symbol turns the phase by +-pi/2. A constant
    envelope is what the in-distribution QPSK lacks, and it is easy to reconstruct: the case a
    one-sided score misses. ``shaping`` does not apply (GMSK keeps its own 8 samples/symbol).
    """
    taps = gaussian_pulse_taps(SPS, GMSK_BT, GMSK_SPAN)
    n_symbols = -(-(frame_length + 2 * len(taps)) // SPS)
    held = np.repeat(rng.choice([-1.0, 1.0], size=(n_frames, n_symbols)), SPS, axis=1)
    frequency = np.stack([np.convolve(row, taps, mode="valid") for row in held])
    phase = np.pi / 2 * np.cumsum(frequency, axis=1) / SPS
    stream = np.exp(1j * (phase + rng.uniform(0, 2 * np.pi, size=(n_frames, 1))))
    return random_windows(rng, stream, frame_length, max_offset=SPS)


def fm(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Narrowband FM by a single tone: a nearly pure carrier, the simplest signal to reconstruct.

    phase[n] = 2 pi f_c n + beta sin(2 pi f_m n + phi), per frame: carrier f_c uniform in +-0.05,
    tone f_m uniform in [0.001, 0.005] cycles/sample, modulation index beta uniform in [0.5, 2];
    by Carson's rule the occupied bandwidth 2 (beta + 1) f_m is at most 0.03 of the sample rate.
    ``shaping`` does not apply.
    """
    carrier = rng.uniform(-0.05, 0.05, size=(n_frames, 1))
    tone = rng.uniform(0.001, 0.005, size=(n_frames, 1))
    beta = rng.uniform(0.5, 2.0, size=(n_frames, 1))
    tone_phase = rng.uniform(0, 2 * np.pi, size=(n_frames, 1))
    n = np.arange(frame_length)
    return np.exp(1j * (2 * np.pi * carrier * n + beta * np.sin(2 * np.pi * tone * n + tone_phase)))


# ---------------------------------------------------------------------------------------------- QPSK variants
# Near-OOD for a QPSK model: each changes one property of QPSK and follows the base --sps and --rolloff
# in everything else.

def psk8(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """8-PSK with the base RRC shaping: the QPSK spectrum and constant symbol energy, 8 phases instead of 4."""
    return rrc_modulate(rng, n_frames, frame_length, partial(psk_symbols, order=8), shaping)


VARIANT_ROLLOFF = 0.20  # QPSKro20


def qpsk_rolloff20(rng: np.random.Generator, n_frames: int, frame_length: int,
                   shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """QPSK with roll-off 0.20 (the name's), base sps: same symbol rate, steeper and narrower spectrum edge.

    The band edge moves from (1 + rolloff) / (2 sps) to 1.2 / (2 sps): 11 % narrower at the default 0.35.
    With a base ``--rolloff`` of 0.20 the variant equals QPSK in shape; a warning says so.
    """
    if shaping.rolloff <= VARIANT_ROLLOFF:
        log.warning("QPSKro20: the base --rolloff %g is not above %g, so QPSKro20 is no narrower than QPSK",
                    shaping.rolloff, VARIANT_ROLLOFF)
    return qpsk(rng, n_frames, frame_length, Shaping(shaping.sps, VARIANT_ROLLOFF))


def slower_symbol_rate_sps(sps: int) -> int:
    """QPSKsr's samples per symbol: 5/4 of the base (8 -> 10), rounded, and at least one more than the base."""
    return max(sps + 1, round(sps * 5 / 4))


def qpsk_symbol_rate(rng: np.random.Generator, n_frames: int, frame_length: int,
                     shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """QPSK at a 20 % lower symbol rate (5/4 the base sps, base roll-off): the whole spectrum 4/5 as wide."""
    return qpsk(rng, n_frames, frame_length, Shaping(slower_symbol_rate_sps(shaping.sps), shaping.rolloff))


PHASE_NOISE_STD = 0.05  # QPSKpn: rad per sample of the Wiener phase walk


def qpsk_phase_noise(rng: np.random.Generator, n_frames: int, frame_length: int,
                     shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """QPSK times exp(j phi[n]), phi a Wiener walk with independent N(0, 0.05^2) rad steps per sample.

    An oscillator property, so fixed per sample whatever the sps. Its Lorentzian 3 dB linewidth is
    0.05^2 / (2 pi) = 4e-4 cycles/sample (0.3 % of the default symbol rate): invisible in the QPSK
    spectrum, but the constellation turns by 0.05 sqrt(8) = 0.14 rad (8 degrees) rms per symbol, and
    the fourth-power carrier line of QPSK (x^4) spreads 16-fold wider, to 16 * 4e-4 cycles/sample.
    The power stays exactly that of QPSK.
    """
    clean = qpsk(rng, n_frames, frame_length, shaping)
    steps = rng.normal(0.0, PHASE_NOISE_STD, size=clean.shape)
    return clean * np.exp(1j * np.cumsum(steps, axis=1))


IQ_GAIN_DB = 1.0  # QPSKiq: Q-branch gain relative to I
IQ_SKEW_DEG = 5.0  # QPSKiq: Q-branch phase error


def iq_imbalance(x: np.ndarray, gain_db: float, skew_deg: float) -> np.ndarray:
    """y = mu x + nu conj(x), renormalised to the power of a circular (E[x^2] = 0) unit-power x.

    With Q-branch gain g and skew theta, y = I + j g (Q cos theta - I sin theta), i.e.
    mu = (1 + g e^{-j theta}) / 2 and nu = (1 - g e^{j theta}) / 2, and E|y|^2 = |mu|^2 + |nu|^2.
    The conj(x) term is the image: E[y^2] = 2 mu nu E|x|^2 is no longer 0.
    """
    gain, skew = 10.0 ** (gain_db / 20.0), np.deg2rad(skew_deg)
    mu = (1 + gain * np.exp(-1j * skew)) / 2
    nu = (1 - gain * np.exp(1j * skew)) / 2
    return (mu * x + nu * np.conj(x)) / np.sqrt(abs(mu) ** 2 + abs(nu) ** 2)


def qpsk_iq_imbalance(rng: np.random.Generator, n_frames: int, frame_length: int,
                      shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """QPSK through an IQ-imbalanced mixer: 1 dB gain and 5 degrees phase skew (22.8 dB image rejection).

    The image (the mirrored spectrum) lies 22.8 dB down; the spectrum of an unshifted QPSK is symmetric,
    so it shows as a nonzero E[x^2] (|C20| / C21 = 0.144) rather than in the spectrum's shape.
    """
    return iq_imbalance(qpsk(rng, n_frames, frame_length, shaping), IQ_GAIN_DB, IQ_SKEW_DEG)


TONE_DB = -15.0  # QPSKcw: tone power relative to the QPSK


def qpsk_with_tone(rng: np.random.Generator, n_frames: int, frame_length: int,
                   shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """QPSK plus a continuous-wave tone 15 dB weaker, hidden under it; the sum renormalised to unit power.

    Per frame the tone has a random phase and a frequency uniform in the flat part of the QPSK band,
    |f| <= (1 - rolloff) / (2 sps) cycles/sample (+-0.041 at the defaults). Tone and QPSK are
    uncorrelated, so the sum's power is 1 + 10^(-1.5).
    """
    clean = qpsk(rng, n_frames, frame_length, shaping)
    flat_edge = (1 - shaping.rolloff) / (2 * shaping.sps)
    frequency = rng.uniform(-flat_edge, flat_edge, size=(n_frames, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_frames, 1))
    tone_power = 10.0 ** (TONE_DB / 10.0)
    tone = np.sqrt(tone_power) * np.exp(1j * (2 * np.pi * frequency * np.arange(frame_length) + phase))
    return (clean + tone) / np.sqrt(1 + tone_power)


# ---------------------------------------------------------------------------------------------- QAM neighbours
# Near-OOD for a 16-QAM model: other constellations with the same RRC shaping (base --sps and --rolloff), so
# the same spectrum and unit power; only the symbol alphabet differs.

def qam32(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Cross 32-QAM (the 6x6 odd-level grid without its corners) with the base RRC shaping."""
    return rrc_modulate(rng, n_frames, frame_length, cross_qam32_symbols, shaping)


def qam64(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """Square Gray 64-QAM with the base RRC shaping: twice 16-QAM's levels per axis."""
    return rrc_modulate(rng, n_frames, frame_length, partial(gray_qam_symbols, bits_per_axis=3), shaping)


def apsk16(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """DVB-S2 16-APSK (4 + 12 points on two rings, ratio 2.57) with the base RRC shaping: 16-QAM's bits per symbol."""
    return rrc_modulate(rng, n_frames, frame_length, apsk16_symbols, shaping)


def psk16(rng: np.random.Generator, n_frames: int, frame_length: int, shaping: Shaping = BASE_SHAPING) -> np.ndarray:
    """16-PSK with the base RRC shaping: 16-QAM's bits per symbol at constant symbol energy."""
    return rrc_modulate(rng, n_frames, frame_length, partial(psk_symbols, order=16), shaping)


FAMILIES: dict[str, Generator] = {
    "QPSK": qpsk,
    "QAM16": qam16,
    "OFDM": ofdm,
    "Chirp": chirp,
    "GMSK": gmsk,
    "FM": fm,
    "PSK8": psk8,
    "QPSKro20": qpsk_rolloff20,
    "QPSKsr": qpsk_symbol_rate,
    "QPSKpn": qpsk_phase_noise,
    "QPSKiq": qpsk_iq_imbalance,
    "QPSKcw": qpsk_with_tone,
    "QAM32": qam32,
    "QAM64": qam64,
    "APSK16": apsk16,
    "PSK16": psk16,
}


# --------------------------------------------------------------------------------------------------
# Channel and files
# --------------------------------------------------------------------------------------------------

def noise_std_per_frame(snr_db: float | np.ndarray, n_frames: int) -> np.ndarray:
    """Per-real-dimension AWGN std of each frame, [n_frames, 1]: sqrt(10^(-SNR / 10) / 2) for unit signal power.

    ``snr_db`` is one value for all frames or one per frame. The power is taken in Python floats, one
    frame at a time, so that a single value gives bit for bit the noise of the scalar formula.
    """
    snrs = np.broadcast_to(np.asarray(snr_db, dtype=float), (n_frames,))
    noise_power = np.array([10.0 ** (-float(snr) / 10.0) for snr in snrs])
    return np.sqrt(noise_power / 2.0)[:, None]


def apply_impairments(rng: np.random.Generator, clean: np.ndarray, snr_db: float | np.ndarray,
                      cfo_max: float) -> np.ndarray:
    """Per frame: carrier frequency offset uniform in +-cfo_max cycles/sample, carrier phase uniform
    in [0, 2 pi), then complex AWGN of power 10^(-snr_db / 10) (the clean signal has unit power).

    ``snr_db``: one value in dB for every frame, or an array with one per frame.
    """
    n_frames, frame_length = clean.shape
    cfo = rng.uniform(-cfo_max, cfo_max, size=(n_frames, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_frames, 1))
    rotated = clean * np.exp(1j * (2 * np.pi * cfo * np.arange(frame_length) + phase))
    noise_std = noise_std_per_frame(snr_db, n_frames)
    noise = noise_std * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    return rotated + noise


def family_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The seed of one family's streams: (seed, the family's position in FAMILIES)."""
    return np.random.SeedSequence([seed, list(FAMILIES).index(name)])


def family_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of a family's signal and channel; never the global RNG."""
    return np.random.default_rng(family_seed(seed, name))


def frame_snrs(seed: int, name: str, snr_db: SnrSpec, n_frames: int) -> np.ndarray:
    """Each frame's SNR in dB: the single value repeated, or uniform in [lo, hi] for a range.

    A range draws from a child of the family's seed, a stream of its own, so the signal, offsets and
    noise shapes are those of a single-value run with the same seed.
    """
    if not isinstance(snr_db, tuple):
        return np.full(n_frames, float(snr_db))
    lo, hi = snr_db
    return np.random.default_rng(family_seed(seed, name).spawn(1)[0]).uniform(lo, hi, size=n_frames)


def check_snr_db(snr_db: SnrSpec) -> SnrSpec:
    """Return ``snr_db`` as a float or a (lo, hi) float tuple; UserError for NaN, a non-finite range or hi < lo."""
    if isinstance(snr_db, (tuple, list)):
        if len(snr_db) != 2:
            raise UserError(f"--snr_db range must be two values LO:HI, got {snr_db}")
        lo, hi = float(snr_db[0]), float(snr_db[1])
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise UserError(f"--snr_db range LO:HI needs finite LO <= HI, got {lo:g}:{hi:g}")
        return lo, hi
    if np.isnan(snr_db):
        raise UserError("--snr_db must be a number of dB, got nan")
    return snr_db


def parse_snr_db(value: str) -> SnrSpec:
    """Type of the --snr_db flag: ``20`` (one SNR for all frames) or ``LO:HI`` such as ``0:20`` (a range)."""
    parts = value.split(":")
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected dB as a number (20) or a range LO:HI (0:20), got {value!r}") from None
    if len(numbers) > 2:
        raise argparse.ArgumentTypeError(f"expected dB as a number (20) or a range LO:HI (0:20), got {value!r}")
    try:
        return check_snr_db(numbers[0] if len(numbers) == 1 else tuple(numbers))
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--snr_db ")) from None


def check_shaping(sps: int, rolloff: float) -> Shaping:
    """The RRC shaping from --sps and --rolloff; raise UserError unless sps is an integer >= 2 and 0 < rolloff <= 1."""
    if int(sps) != sps or sps < 2:
        raise UserError(f"--sps must be an integer of at least 2 samples per symbol, got {sps}")
    if not 0.0 < rolloff <= 1.0:
        raise UserError(f"--rolloff must lie in (0, 1], got {rolloff}")
    return Shaping(int(sps), float(rolloff))


def check_families(families: list[str] | None) -> list[str]:
    names = list(FAMILIES) if families is None else list(families)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise UserError(f"unknown signal families {unknown or names}; choose from {','.join(FAMILIES)}")
    return names


def write_family(path: Path, name: str, frames: np.ndarray, snrs: np.ndarray, attrs: dict) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("dataset", data=frames.astype(np.complex64))
            file.create_dataset("sig_type", data=np.bytes_(name))
            file.create_dataset("snr_db", data=snrs.astype(np.float32))
            file.attrs.update(attrs)


def write_synthetic(out_dir: str | os.PathLike, families: list[str] | None = None, n_frames: int = 64,
                    frame_length: int = 4096, snr_db: SnrSpec = 20.0, seed: int = 0,
                    cfo_max: float = 0.01, sps: int = SPS, rolloff: float = ROLLOFF) -> list[Path]:
    """Write one ``<out_dir>/interferenceset_frame/<Name>_raw_data.h5`` per family; return the paths.

    Args:
        out_dir: root of the raw data tree.
        families: names from :data:`FAMILIES` (default: all).
        n_frames, frame_length: shape of each file's ``dataset``.
        snr_db: signal-to-noise ratio of the AWGN in dB, relative to the unit signal power: one value,
            or a (lo, hi) tuple to draw each frame's SNR uniformly from. Each file records the frames'
            SNRs in dataset ``snr_db`` and the setting in attribute ``snr_db`` (the value, or [lo, hi]).
        seed: the same seed gives identical files; each family's stream depends only on
            (seed, family position), not on which other families are written.
        cfo_max: carrier frequency offsets are uniform in +-cfo_max cycles/sample.
        sps, rolloff: RRC samples per symbol and roll-off of QPSK, QAM16 and the QAM neighbours (QAM32,
            QAM64, APSK16, PSK16); the QPSK variants change one of them relative to these (see each
            family). Other families ignore them.
    """
    names = check_families(families)
    if n_frames < 1 or frame_length < 1:
        raise UserError(f"--n_frames and --frame_length must be positive, got {n_frames} and {frame_length}")
    if not 0.0 <= cfo_max < 0.5:
        raise UserError(f"--cfo_max must lie in [0, 0.5) cycles/sample, got {cfo_max}")
    snr_db = check_snr_db(snr_db)
    shaping = check_shaping(sps, rolloff)
    attrs = {"generator": "src.data.synthetic", "seed": seed, "snr_db": snr_db, "cfo_max": cfo_max,
             "sps": shaping.sps, "rolloff": shaping.rolloff}
    paths = []
    for name in names:
        rng = family_rng(seed, name)
        snrs = frame_snrs(seed, name, snr_db, n_frames)
        frames = apply_impairments(rng, FAMILIES[name](rng, n_frames, frame_length, shaping), snrs, cfo_max)
        path = Path(out_dir) / RAW_SUBDIR / f"{name}_raw_data.h5"
        write_family(path, name, frames, snrs, attrs)
        log.info("wrote %s: %d frames x %d samples", path, n_frames, frame_length)
        paths.append(path)
    return paths


def build_parser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--out", required=True, help="root folder of the raw data tree")
    parser.add_argument("--n_frames", type=positive_int, default=64, help="frames per family (default: %(default)s)")
    parser.add_argument("--frame_length", type=positive_int, default=4096,
                        help="samples per frame (default: %(default)s)")
    parser.add_argument("--snr_db", type=parse_snr_db, default=20.0,
                        help="AWGN SNR in dB, one value or a range LO:HI drawn per frame (default: %(default)s)")
    parser.add_argument("--cfo_max", type=float, default=0.01,
                        help="max carrier frequency offset, cycles/sample (default: %(default)s)")
    parser.add_argument("--sps", type=positive_int, default=SPS,
                        help="samples per symbol of the RRC families (default: %(default)s)")
    parser.add_argument("--rolloff", type=float, default=ROLLOFF,
                        help="RRC roll-off of the RRC families, in (0, 1] (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--families", type=comma_list, default=list(FAMILIES),
                        help=f"comma-separated families (default: {','.join(FAMILIES)})")
    return parser


def main() -> None:
    setup_logging()
    args = build_parser().parse_args()
    write_synthetic(args.out, args.families, args.n_frames, args.frame_length, args.snr_db, args.seed, args.cfo_max,
                    args.sps, args.rolloff)


if __name__ == "__main__":
    run_main(main)
