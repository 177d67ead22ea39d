"""The original log-mel spectrogram (feature kind ``"logmel"``), in NumPy.

All functions here are pure: same segments and config, same output.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from ..config import FeatureConfig
from .kinds import FeatureKind, register_feature_kind

__all__ = [
    "AMIN",
    "mel_filterbank",
    "PowerSpectrogram",
    "power_spectrogram",
    "mel_power",
    "logmel",
    "n_frames",
]

AMIN = 1e-10  # power floor before log10, as librosa.power_to_db
_BAND_ROWS = 8  # mel bands per block of the banded filterbank product


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``hz_to_mel(htk=False)``): linear below 1 kHz, logarithmic above."""
    mels = hz / (200.0 / 3)
    log_t = hz >= 1000.0
    mels[log_t] = 15.0 + np.log(hz[log_t] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = (200.0 / 3) * mels
    log_t = mels >= 15.0
    hz[log_t] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_t] - 15.0))
    return hz


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    """librosa ``filters.mel(htk=False, norm="slaney")``, step for step, so its values are bit-identical.

    Written out here because importing librosa costs more than a second (scipy.signal, numba),
    which every ``genrekit predict`` and every ``prepare`` worker would pay for one small matrix.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = _hz_to_mel(np.array([f_min, f_max], dtype=np.float64))
    mel_f = _mel_to_hz(np.linspace(edges[0], edges[1], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    basis = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        basis[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    basis *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=8)
def _mel_bands(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The filterbank as blocks of ``_BAND_ROWS`` bands, each cut to the frequency bins it touches.

    Each mel filter spans a few bins, so the blocks hold ~7% of the dense matrix: the mel product
    costs ~9x less and skips only exact zeros.
    Items: (first band, end band, first bin, end bin, weights of shape (bands, bins)).
    """
    basis = _mel_basis(sample_rate, n_fft, n_mels, f_min, f_max)
    blocks = []
    for lo in range(0, n_mels, _BAND_ROWS):
        rows = basis[lo : lo + _BAND_ROWS]
        used = np.flatnonzero(rows.any(axis=0))
        first, end = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        blocks.append((lo, lo + len(rows), first, end, np.ascontiguousarray(rows[:, first:end])))
    return tuple(blocks)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney-scale mel filters of shape (n_mels, 1 + n_fft // 2), exactly librosa's."""
    return _mel_basis(config.audio.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centered STFT: 130 for 3 s at 22050 Hz with hop 512."""
    return 1 + n_samples // hop_length


@lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window (``torch.hann_window(n_fft)``, ``scipy.signal.get_window("hann", n_fft)``)."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    window.setflags(write=False)
    return window


class PowerSpectrogram:
    """``|STFT|^2`` of equal-length signals, one at a time, into buffers reused from signal to signal.

    The STFT of ``librosa.stft(center=True, pad_mode="constant")`` and ``torch.stft(center=True,
    pad_mode="constant")``: zero-padded by ``n_fft // 2`` on both sides, periodic Hann window. In NumPy,
    so classifying needs no PyTorch; the FFT runs in float64, which NumPy computes ~4x faster than float32.
    Why buffers: a segment's frames and spectrum are multi-MB arrays, which glibc maps fresh for every
    allocation and the kernel then faults in page by page: 4.2 ms a 3 s segment at 22050 Hz, against
    1.0 ms with the memory reused (the FFT itself is 0.6 ms).
    """

    def __init__(self, n_samples: int, n_fft: int, hop_length: int) -> None:
        frames, bins = n_frames(n_samples, hop_length), 1 + n_fft // 2
        self.n_fft, self.hop_length, self.n_samples = n_fft, hop_length, n_samples
        self._padded = np.zeros(n_samples + 2 * (n_fft // 2), dtype=np.float64)
        self._windows = np.lib.stride_tricks.sliding_window_view(self._padded, n_fft)[::hop_length]
        self._frames = np.empty((frames, n_fft), dtype=np.float64)
        self._spec = np.empty((frames, bins), dtype=np.complex128)
        self._squares = np.empty((frames, bins, 2), dtype=np.float64)
        self._power = np.empty((frames, bins), dtype=np.float64)
        self.out = np.empty((bins, frames), dtype=np.float32)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        """The power spectrogram of ``signal``, shape (1 + n_fft // 2, n_frames), float32: :attr:`out`, overwritten by the next call."""
        half = self.n_fft // 2
        self._padded[half : half + self.n_samples] = signal
        np.multiply(self._windows, _hann(self.n_fft), out=self._frames)
        np.fft.rfft(self._frames, axis=-1, out=self._spec)
        np.square(self._spec.view(np.float64).reshape(self._squares.shape), out=self._squares)
        np.add(self._squares[..., 0], self._squares[..., 1], out=self._power)
        self.out[:] = self._power.T
        return self.out


def power_spectrogram(signal: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|STFT|^2`` of one signal, shape (1 + n_fft // 2, n_frames), float32 (see :class:`PowerSpectrogram`)."""
    signal = np.asarray(signal)
    return PowerSpectrogram(len(signal), n_fft, hop_length)(signal)


def mel_power(signal: np.ndarray, config: FeatureConfig, out: np.ndarray | None = None, *, stft: PowerSpectrogram | None = None) -> np.ndarray:
    """The mel power spectrogram of one signal, shape (n_mels, n_frames), float32 (written into ``out`` if given;
    ``stft`` reuses the buffers of earlier signals of the same length)."""
    power = (stft or PowerSpectrogram(len(signal), config.n_fft, config.hop_length))(signal)
    mel = np.empty((config.n_mels, power.shape[1]), dtype=np.float32) if out is None else out
    for first_band, end_band, first_bin, end_bin, weights in _mel_bands(config.audio.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max):
        np.matmul(weights, power[first_bin:end_bin], out=mel[first_band:end_band])
    return mel


def logmel(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel spectrograms of a batch of equal-length segments.

    Matches ``librosa.power_to_db(librosa.feature.melspectrogram(y=seg, sr=..., n_fft=..., hop_length=...,
    n_mels=...), ref=...)`` per segment (Hann window, centered with zero padding, power 2), one segment
    at a time, so one segment's spectrogram stays in cache from the FFT to the mel product.

    Parameters
    ----------
    segments : ndarray of shape (n_segments, n_samples)
    config : FeatureConfig
        ``scaling="seed"`` references each segment to its own maximum and floors at ``-top_db``;
        ``scaling="standard"`` uses a fixed reference of 1.0 (floor ``10 * log10(AMIN)`` = -100 dB).

    Returns
    -------
    ndarray of shape (n_segments, n_mels, n_frames), float32
    """
    segments = np.atleast_2d(np.asarray(segments, dtype=np.float32))
    out = np.empty((len(segments), config.n_mels, n_frames(segments.shape[1], config.hop_length)), dtype=np.float32)
    stft = PowerSpectrogram(segments.shape[1], config.n_fft, config.hop_length)
    for signal, mel in zip(segments, out):
        mel_power(signal, config, out=mel, stft=stft)
    np.maximum(out, AMIN, out=out)
    np.log10(out, out=out)
    out *= 10.0
    if config.scaling == "seed" and len(out):
        out -= out.max(axis=(1, 2), keepdims=True)
        np.maximum(out, -config.top_db, out=out)
    return out


def _logmel_input(y: np.ndarray, config: FeatureConfig, whole: bool) -> tuple[np.ndarray, str]:
    """dB, referenced to the loudest bin of each segment with ``"seed"`` scaling, or of the whole track when ``whole``."""
    seconds = max(len(y) / config.audio.sample_rate, 0.1)
    one = replace(config, audio=replace(config.audio, segment_seconds=seconds, hop_seconds=seconds))
    reference = "the track's loudest bin" if whole else "the segment's loudest bin"
    return logmel(np.asarray(y)[None, :], one)[0], ("dB below " + reference if config.scaling == "seed" else "dB (fixed reference)")


register_feature_kind(
    FeatureKind(
        name="logmel",
        default_config=lambda **overrides: FeatureConfig(**{"kind": "logmel", **overrides}),
        shape=lambda config: (config.n_mels, n_frames(config.audio.segment_samples, config.hop_length)),
        extract=logmel,
        model_input=_logmel_input,
    )
)
