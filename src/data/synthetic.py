"""Embedded synthetic RF signal families, written in the MIT RF Challenge InterferenceSet layout.

Each family is one generator ``(rng, n_frames, frame_length) -> complex128 [n_frames, frame_length]``
of unit average power (E|x|^2 = 1 by construction), registered in :data:`FAMILIES`. To add a family,
write one such function and append one entry to :data:`FAMILIES` (append, so the seeds of the existing
families, derived from their position, stay the same).

Every frame then gets the same channel impairments (:func:`apply_impairments`): a random carrier
frequency offset, a random carrier phase and complex AWGN at ``snr_db`` relative to the unit signal power.

Output: ``<out>/interferenceset_frame/<Name>_raw_data.h5`` with dataset ``dataset`` = complex64
[n_frames, frame_length] and dataset ``sig_type`` = the family name as bytes.

Example::

    python -m src.data.synthetic --out demo_out/raw --n_frames 64 --frame_length 4096 --snr_db 20
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python src/data/synthetic.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import logging
import os
from typing import Callable

import h5py
import numpy as np

from src.cli import Parser, comma_list, positive_int, run_main, setup_logging
from src.errors import UserError
from src.io import atomic_path

log = logging.getLogger("rfood")

Generator = Callable[[np.random.Generator, int, int], np.ndarray]

RAW_SUBDIR = "interferenceset_frame"
SPS = 8  # samples per symbol of the single-carrier families
ROLLOFF = 0.35  # RRC excess bandwidth
SPAN = 8  # RRC length in symbols


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


def rrc_modulate(rng: np.random.Generator, n_frames: int, frame_length: int, bits_per_axis: int) -> np.ndarray:
    """Square Gray QAM symbols, upsampled by zero insertion and shaped by an RRC filter; unit power.

    The symbol timing is random per frame, and the filter's start-up transient is cut off. With unit
    power symbols every ``SPS`` samples and unit-energy taps the output power is 1 / SPS, hence the
    sqrt(SPS) gain.
    """
    taps = rrc_taps(SPS, ROLLOFF, SPAN)
    n_symbols = -(-(frame_length + 2 * len(taps)) // SPS)
    upsampled = np.zeros((n_frames, n_symbols * SPS), dtype=complex)
    upsampled[:, ::SPS] = gray_qam_symbols(rng, (n_frames, n_symbols), bits_per_axis)
    shaped = np.stack([np.convolve(row, taps, mode="valid") for row in upsampled]) * np.sqrt(SPS)
    return random_windows(rng, shaped, frame_length, max_offset=SPS)


# --------------------------------------------------------------------------------------------------
# The families
# --------------------------------------------------------------------------------------------------

def qpsk(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """Gray QPSK, RRC shaped: 8 samples/symbol, roll-off 0.35, 8-symbol filter span, random timing."""
    return rrc_modulate(rng, n_frames, frame_length, bits_per_axis=1)


def qam16(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """Square Gray 16-QAM with the same RRC shaping as QPSK: the near-OOD case for a QPSK model."""
    return rrc_modulate(rng, n_frames, frame_length, bits_per_axis=2)


OFDM_NFFT = 64
OFDM_CP = 16
# 48 data subcarriers +-1..+-24; DC (bin 0) and the band-edge guards +-25..+-32 stay empty.
OFDM_DATA_BINS = np.r_[1:25, OFDM_NFFT - 24:OFDM_NFFT]


def ofdm(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """Cyclic-prefix OFDM: 64-point IFFT, 16-sample cyclic prefix, 48 Gray-QPSK data subcarriers.

    DC and the edge guard bins are null. OFDM symbols (80 samples each) are concatenated and cut to
    ``frame_length`` at a random start offset in [0, 80). The orthonormal IFFT of 48 unit-power bins
    out of 64 has power 48 / 64 per sample, hence the sqrt(64 / 48) gain.
    """
    symbol_length = OFDM_NFFT + OFDM_CP
    n_symbols = frame_length // symbol_length + 2
    grid = np.zeros((n_frames, n_symbols, OFDM_NFFT), dtype=complex)
    grid[..., OFDM_DATA_BINS] = gray_qam_symbols(rng, (n_frames, n_symbols, len(OFDM_DATA_BINS)), 1)
    body = np.fft.ifft(grid, axis=-1, norm="ortho") * np.sqrt(OFDM_NFFT / len(OFDM_DATA_BINS))
    with_prefix = np.concatenate([body[..., -OFDM_CP:], body], axis=-1)
    stream = with_prefix.reshape(n_frames, n_symbols * symbol_length)
    return random_windows(rng, stream, frame_length, max_offset=symbol_length)


def chirp(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """Linear-FM sawtooth sweep interferer (constant envelope, unit power).

    The instantaneous frequency ramps linearly from -B/2 to +B/2 cycles/sample over P samples and
    jumps back: f[n] = B * (((n + n0) mod P) / P - 1/2); phase = 2 pi * cumsum(f). Per frame:
    sweep bandwidth B uniform in [0.2, 0.8] of the sample rate, period P uniform in 256..1024
    samples, and the sweep's starting point n0 uniform in [0, P).
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


def gmsk(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """GMSK (BT 0.3, 8 samples/symbol): continuous-phase, constant envelope, random timing.

    Random +-1 symbols are held for ``SPS`` samples, smoothed by the Gaussian pulse and integrated
    into the phase with modulation index 1/2, so each symbol turns the phase by +-pi/2. A constant
    envelope is what the in-distribution QPSK lacks, and it is easy to reconstruct: the case a
    one-sided score misses.
    """
    taps = gaussian_pulse_taps(SPS, GMSK_BT, GMSK_SPAN)
    n_symbols = -(-(frame_length + 2 * len(taps)) // SPS)
    held = np.repeat(rng.choice([-1.0, 1.0], size=(n_frames, n_symbols)), SPS, axis=1)
    frequency = np.stack([np.convolve(row, taps, mode="valid") for row in held])
    phase = np.pi / 2 * np.cumsum(frequency, axis=1) / SPS
    stream = np.exp(1j * (phase + rng.uniform(0, 2 * np.pi, size=(n_frames, 1))))
    return random_windows(rng, stream, frame_length, max_offset=SPS)


def fm(rng: np.random.Generator, n_frames: int, frame_length: int) -> np.ndarray:
    """Narrowband FM by a single tone: a nearly pure carrier, the simplest signal to reconstruct.

    phase[n] = 2 pi f_c n + beta sin(2 pi f_m n + phi), per frame: carrier f_c uniform in +-0.05,
    tone f_m uniform in [0.001, 0.005] cycles/sample, modulation index beta uniform in [0.5, 2];
    by Carson's rule the occupied bandwidth 2 (beta + 1) f_m is at most 0.03 of the sample rate.
    """
    carrier = rng.uniform(-0.05, 0.05, size=(n_frames, 1))
    tone = rng.uniform(0.001, 0.005, size=(n_frames, 1))
    beta = rng.uniform(0.5, 2.0, size=(n_frames, 1))
    tone_phase = rng.uniform(0, 2 * np.pi, size=(n_frames, 1))
    n = np.arange(frame_length)
    return np.exp(1j * (2 * np.pi * carrier * n + beta * np.sin(2 * np.pi * tone * n + tone_phase)))


FAMILIES: dict[str, Generator] = {
    "QPSK": qpsk,
    "QAM16": qam16,
    "OFDM": ofdm,
    "Chirp": chirp,
    "GMSK": gmsk,
    "FM": fm,
}


# --------------------------------------------------------------------------------------------------
# Channel and files
# --------------------------------------------------------------------------------------------------

def apply_impairments(rng: np.random.Generator, clean: np.ndarray, snr_db: float, cfo_max: float) -> np.ndarray:
    """Per frame: carrier frequency offset uniform in +-cfo_max cycles/sample, carrier phase uniform
    in [0, 2 pi), then complex AWGN of power 10^(-snr_db / 10) (the clean signal has unit power)."""
    n_frames, frame_length = clean.shape
    cfo = rng.uniform(-cfo_max, cfo_max, size=(n_frames, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_frames, 1))
    rotated = clean * np.exp(1j * (2 * np.pi * cfo * np.arange(frame_length) + phase))
    noise_std = np.sqrt(10.0 ** (-snr_db / 10.0) / 2.0)  # per real dimension
    noise = noise_std * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    return rotated + noise


def family_rng(seed: int, name: str) -> np.random.Generator:
    """A generator seeded from (seed, the family's position in FAMILIES); never the global RNG."""
    return np.random.default_rng(np.random.SeedSequence([seed, list(FAMILIES).index(name)]))


def check_families(families: list[str] | None) -> list[str]:
    names = list(FAMILIES) if families is None else list(families)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise UserError(f"unknown signal families {unknown or names}; choose from {','.join(FAMILIES)}")
    return names


def write_family(path: Path, name: str, frames: np.ndarray, attrs: dict) -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as file:
            file.create_dataset("dataset", data=frames.astype(np.complex64))
            file.create_dataset("sig_type", data=np.bytes_(name))
            file.attrs.update(attrs)


def write_synthetic(out_dir: str | os.PathLike, families: list[str] | None = None, n_frames: int = 64,
                    frame_length: int = 4096, snr_db: float = 20.0, seed: int = 0,
                    cfo_max: float = 0.01) -> list[Path]:
    """Write one ``<out_dir>/interferenceset_frame/<Name>_raw_data.h5`` per family; return the paths.

    Args:
        out_dir: root of the raw data tree.
        families: names from :data:`FAMILIES` (default: all).
        n_frames, frame_length: shape of each file's ``dataset``.
        snr_db: signal-to-noise ratio of the AWGN, relative to the unit signal power.
        seed: the same seed gives identical files; each family's stream depends only on
            (seed, family position), not on which other families are written.
        cfo_max: carrier frequency offsets are uniform in +-cfo_max cycles/sample.
    """
    names = check_families(families)
    if n_frames < 1 or frame_length < 1:
        raise UserError(f"--n_frames and --frame_length must be positive, got {n_frames} and {frame_length}")
    if not 0.0 <= cfo_max < 0.5:
        raise UserError(f"--cfo_max must lie in [0, 0.5) cycles/sample, got {cfo_max}")
    paths = []
    for name in names:
        rng = family_rng(seed, name)
        frames = apply_impairments(rng, FAMILIES[name](rng, n_frames, frame_length), snr_db, cfo_max)
        path = Path(out_dir) / RAW_SUBDIR / f"{name}_raw_data.h5"
        write_family(path, name, frames, {"generator": "src.data.synthetic", "seed": seed,
                                          "snr_db": snr_db, "cfo_max": cfo_max})
        log.info("wrote %s: %d frames x %d samples", path, n_frames, frame_length)
        paths.append(path)
    return paths


def build_parser() -> Parser:
    parser = Parser(__doc__)
    parser.add_argument("--out", required=True, help="root folder of the raw data tree")
    parser.add_argument("--n_frames", type=positive_int, default=64, help="frames per family (default: %(default)s)")
    parser.add_argument("--frame_length", type=positive_int, default=4096,
                        help="samples per frame (default: %(default)s)")
    parser.add_argument("--snr_db", type=float, default=20.0, help="AWGN SNR in dB (default: %(default)s)")
    parser.add_argument("--cfo_max", type=float, default=0.01,
                        help="max carrier frequency offset, cycles/sample (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--families", type=comma_list, default=list(FAMILIES),
                        help=f"comma-separated families (default: {','.join(FAMILIES)})")
    return parser


def main() -> None:
    setup_logging()
    args = build_parser().parse_args()
    write_synthetic(args.out, args.families, args.n_frames, args.frame_length, args.snr_db, args.seed, args.cfo_max)


if __name__ == "__main__":
    run_main(main)
