"""Basilar membrane: the hydrodynamic shallow-water cochlea of Sieroka, Dosch & Rupp (2006),
solved in the frequency domain (docs/audio.md §2).

Channel j sits at place c_j = c_max * j / (channels - 1) along the membrane (c = 0 is the base:
channel 0 has the highest best frequency). Its velocity response to the sound is
v(omega, c) * X(omega), with X the sound's spectrum and v the closed-form WKB solution below; the
response is taken back to time by an inverse FFT of the positive half-spectrum, which yields
N/2 samples at half the input rate (SHD's convention: 24 kHz out of 48 kHz).

The matrix v over (frequency, channel) is the expensive part (Hankel functions of complex
argument). It depends only on the padded length N, and every length N_base / m shares the
frequency grid k * fs / N with every m-th row of the base length's grid, so one base matrix
serves all recordings up to N_base samples: a recording is zero-padded to the smallest such
length that holds it. The padding also removes the circular wrap-around of the FFT's tail.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osttp.errors import OsttpError

# 2^10 * 3^3 * 5 samples = 2.88 s at 48 kHz: its many divisors give dense bucket lengths, all of
# them 5-smooth (fast FFT sizes); every FSDD recording (at most 2.3 s) fits.
BASE_LENGTH = 138240
CHANNEL_BLOCK = 100  # channels per block of the frequency-domain product: bounds the working memory


@dataclass(frozen=True)
class MembraneParams:
    """Model constants (SI units as in Sieroka et al. 2006): stiffness c0 exp(-alpha c) - a, mass m,
    damping de sqrt(c0 m) exp(-alpha c / 2), fluid density rho, channel height h."""

    a: float = 3500.0
    alpha: float = 3.0
    rho: float = 1.0
    c_max: float = 3.5
    c0: float = 1e9
    de: float = 0.15
    h: float = 0.1
    m: float = 0.05


def places(channels: int, p: MembraneParams) -> np.ndarray:
    """The channels' places along the membrane, base (0) to apex (c_max)."""
    return np.linspace(0.0, p.c_max, channels)


def stiffness(p: MembraneParams, c: np.ndarray) -> np.ndarray:
    return p.c0 * np.exp(-p.alpha * c) - p.a


def damping(p: MembraneParams, c: np.ndarray) -> np.ndarray:
    return p.de * np.sqrt(p.c0 * p.m) * np.exp(-p.alpha * c / 2.0)


def impedance(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """xi = s(c) - m omega^2 - i omega r(c): the membrane's mechanical impedance term."""
    return stiffness(p, c) - p.m * omega ** 2 - 1j * omega * damping(p, c)


def wavenumber(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """k = omega sqrt(rho / (h xi)): the local wavenumber of the travelling wave."""
    return omega * np.sqrt(p.rho / (p.h * impedance(p, omega, c)))


def _phase_term(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """B(c) = (alpha/2) e^{alpha c/2} (-2 sqrt(xi) + i (2 (a + m omega^2) + i omega r(c)) / sqrt(a + m omega^2)):
    the antiderivative of the wavenumber along c, up to its prefactor."""
    q = p.a + p.m * omega ** 2
    inner = -2.0 * np.sqrt(impedance(p, omega, c)) + 1j * (2.0 * q + 1j * omega * damping(p, c)) / np.sqrt(q)
    return 0.5 * p.alpha * np.exp(p.alpha * c / 2.0) * inner


def wkb_phase(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """G(omega, c) = 2 k(omega, 0) / alpha - 2 i omega / (alpha sqrt(h (a + m omega^2))) log(B(0) / B(c)):
    the accumulated WKB phase from the base to place c (the ratio inside one log keeps the branch)."""
    q = p.a + p.m * omega ** 2
    zero = np.zeros_like(c)
    ratio = _phase_term(p, omega, zero) / _phase_term(p, omega, c)
    return 2.0 * wavenumber(p, omega, zero) / p.alpha - 2j * omega / (p.alpha * np.sqrt(p.h * q)) * np.log(ratio)


def pressure(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """P(omega, c) = sqrt(G / k(omega, c)) H0^(1)(G): the fluid pressure of the travelling wave."""
    from scipy.special import hankel1

    g = wkb_phase(p, omega, c)
    return np.sqrt(g / wavenumber(p, omega, c)) * hankel1(0, g)


def stapes_impedance(p: MembraneParams, omega: np.ndarray) -> np.ndarray:
    """Z(omega) = sqrt(2 c0 / h) (i J0(u) + Y0(u)) / (J1(u) - i Y1(u)), u = 2 omega / alpha sqrt(2 / (h c0))."""
    from scipy.special import j0, j1, y0, y1

    u = 2.0 * omega / p.alpha * np.sqrt(2.0 / (p.h * p.c0))
    return np.sqrt(2.0 * p.c0 / p.h) * (1j * j0(u) + y0(u)) / (j1(u) - 1j * y1(u))


def velocity_transfer(p: MembraneParams, omega: np.ndarray, c: np.ndarray) -> np.ndarray:
    """v(omega, c) = 2 omega / xi(omega, c) * P(omega, c) / P(omega, 0) * Z(omega), shape (len(omega), len(c))."""
    w = np.asarray(omega, dtype=np.float64)[:, None]
    cc = np.asarray(c, dtype=np.float64)[None, :]
    at_base = pressure(p, w, np.zeros_like(cc))
    return 2.0 * w / impedance(p, w, cc) * pressure(p, w, cc) / at_base * stapes_impedance(p, w)


def frequency_grid(length: int, rate: int) -> np.ndarray:
    """Angular frequencies of the half-spectrum of a length-sample signal: 2 pi k rate / length for
    k = 0 .. length/2, with the DC bin evaluated at 1 Hz (the model has a pole at omega = 0)."""
    f = np.arange(length // 2 + 1, dtype=np.float64) * (rate / length)
    f[0] = 1.0
    return 2.0 * np.pi * f


def padded_length(n: int, base: int = BASE_LENGTH) -> int:
    """The smallest even base/m (m a positive integer dividing base) that holds n samples, or, for
    n > base, the smallest multiple of base that does (those need their own matrix)."""
    if n <= 0:
        raise OsttpError(f"a recording of {n} samples; expected at least 1")
    if n > base:
        return -(-n // base) * base
    m = base // n
    while m > 1 and (base % m or (base // m) % 2):
        m -= 1
    return base // m


class BasilarMembrane:
    """Frequency-domain basilar membrane over `channels` places at input rate `rate`.

    The base matrix (float complex64, frequency-major) is computed once, or loaded from
    cache_dir/<name>.npy when given (the file is written there after a computation)."""

    def __init__(self, channels: int = 700, rate: int = 48000, params: MembraneParams | None = None,
                 base: int = BASE_LENGTH, cache_dir: str | os.PathLike[str] | None = None) -> None:
        if channels < 2:
            raise OsttpError(f"basilar membrane: channels={channels}; expected at least 2")
        if base % 2:
            raise OsttpError(f"basilar membrane: base length {base} must be even")
        self.channels, self.rate, self.base = channels, rate, base
        self.params = params or MembraneParams()
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._base_matrix: np.ndarray | None = None
        self._last: tuple[int, np.ndarray] | None = None  # the matrix of the last length used

    @property
    def cache_name(self) -> str:
        p = self.params
        return (f"basilar-{self.channels}ch-{self.rate}Hz-{self.base}-"
                f"{p.a:g}-{p.alpha:g}-{p.rho:g}-{p.c_max:g}-{p.c0:g}-{p.de:g}-{p.h:g}-{p.m:g}")

    def compute(self, length: int, channel_slice: slice = slice(None)) -> np.ndarray:
        """v on the grid of `length` samples for the channels in channel_slice, complex64 (freq, channel)."""
        omega = frequency_grid(length, self.rate)
        c = places(self.channels, self.params)[channel_slice]
        out = np.empty((omega.size, c.size), dtype=np.complex64)
        for lo in range(0, c.size, CHANNEL_BLOCK):
            out[:, lo:lo + CHANNEL_BLOCK] = velocity_transfer(self.params, omega, c[lo:lo + CHANNEL_BLOCK])
        return out

    def _cache_path(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.cache_name}.npy"

    def base_matrix(self) -> np.ndarray:
        if self._base_matrix is None:
            self._base_matrix = self.compute(self.base)
            path = self._cache_path()
            if path is not None:
                save_atomic(path, self._base_matrix)
        return self._base_matrix

    def _base_rows(self, step: int) -> np.ndarray:
        """Every step-th row of the base matrix: from memory if held, else read row by row from
        the cache file (reading, not mapping, it: a mapped file's pages would all count towards
        every worker's memory though a short recording needs only a few of them)."""
        path = self._cache_path()
        if self._base_matrix is not None or path is None or not path.is_file():
            return np.ascontiguousarray(self.base_matrix()[::step])
        return read_rows(path, step, (self.base // 2 + 1, self.channels))

    def set_base_matrix(self, matrix: np.ndarray) -> None:
        """Use a base matrix computed elsewhere (e.g. in blocks by several processes)."""
        want = (self.base // 2 + 1, self.channels)
        if matrix.shape != want:
            raise OsttpError(f"basilar membrane: base matrix of shape {matrix.shape}; expected {want}")
        self._base_matrix = matrix

    def transfer(self, length: int) -> np.ndarray:
        """v on the grid of an even `length`, (length/2 + 1, channels), kept for the next call: the base
        matrix's every (base/length)-th row when length divides base, else computed."""
        if self._last is None or self._last[0] != length:
            self._last = None  # free the previous one first: a process holds one length at a time
            if self.base % length == 0 and length % 2 == 0:
                matrix = self._base_rows(self.base // length)
            else:
                matrix = self.compute(length)
            self._last = (length, matrix)
        return self._last[1]

    def velocity(self, samples: np.ndarray) -> np.ndarray:
        """Membrane velocity, time-major (n//2, channels) float64 at rate // 2, for samples at `rate`."""
        from scipy import fft

        n = samples.size
        length = padded_length(max(n, 2), self.base)
        half = length // 2
        spectrum = fft.rfft(np.asarray(samples, dtype=np.float64), n=length)[:half].astype(np.complex64)
        v = self.transfer(length)
        keep = max(n // 2, 1)
        out = np.empty((keep, self.channels), dtype=np.float64)
        for lo in range(0, self.channels, CHANNEL_BLOCK):
            block = v[:half, lo:lo + CHANNEL_BLOCK] * spectrum[:, None]
            # The inverse FFT of the positive half-spectrum alone (bins 0 .. length/2 - 1) is the
            # response's analytic signal at exactly half the rate; its real part is the velocity.
            # Only the recording's own span is kept (the rest is the padding's tail).
            out[:, lo:lo + CHANNEL_BLOCK] = fft.ifft(block, axis=0, workers=1).real[:keep]
        return out


def read_rows(path: Path, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Rows 0, step, 2 step, ... of a 2-D complex64 .npy file (C order), checked against shape."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        got, fortran, dtype = read_header(f)  # the header is a literal dict: nothing is unpickled
        if tuple(got) != shape or fortran or dtype != np.complex64:
            raise OsttpError(f"basilar-membrane cache {path}: holds {dtype} {tuple(got)}; expected complex64 "
                             f"{shape} (delete it to recompute)")
        start, row = f.tell(), shape[1] * 8
        rows = range(0, shape[0], step)
        out = np.empty((len(rows), shape[1]), dtype=np.complex64)
        buf = out.reshape(-1).view(np.uint8)
        for i, r in enumerate(rows):
            chunk = os.pread(f.fileno(), row, start + r * row)
            if len(chunk) != row:
                raise OsttpError(f"basilar-membrane cache {path}: truncated (delete it to recompute)")
            buf[i * row:(i + 1) * row] = np.frombuffer(chunk, dtype=np.uint8)
    return out


def save_atomic(path: Path, array: np.ndarray) -> None:
    """np.save to path through a temporary file in the same folder, so no half-written file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)
