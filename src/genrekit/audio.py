"""Decode any audio file to mono float32 at a target rate, and cut it into fixed-length segments."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import AudioConfig
from .exceptions import AudioDecodeError, AudioWarning

__all__ = ["AUDIO_EXTENSIONS", "is_audio_file", "load_audio", "segment_audio", "segment_starts", "load_segments"]

AUDIO_EXTENSIONS = frozenset({".wav", ".au", ".flac", ".ogg", ".mp3"})


def is_audio_file(path: Path) -> bool:
    """True for a visible file with a supported extension (case-insensitive); macOS ``._*`` stubs are not audio."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def load_audio(path: str | Path, *, sample_rate: int) -> np.ndarray:
    """Decode ``path`` to a mono float32 signal at ``sample_rate``.

    Channels are averaged; other rates are resampled with soxr (high quality, as librosa does).

    Raises
    ------
    AudioDecodeError
        The file is missing, empty, not audio, or holds non-finite samples.

    Warns
    -----
    AudioWarning
        The file is shorter than its header says (truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"{path}: empty file (0 bytes)")
    try:
        with sf.SoundFile(path) as f:
            declared = f.frames
            native_rate = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioDecodeError(f"{path}: not decodable audio ({e})") from e
    if data.size == 0:
        raise AudioDecodeError(f"{path}: contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"{path}: contains NaN or infinite samples")
    if 0 < declared and len(data) < 0.99 * declared:
        warnings.warn(
            f"{path}: truncated, header promises {declared / native_rate:.2f} s but only "
            f"{len(data) / native_rate:.2f} s could be read",
            AudioWarning,
            stacklevel=2,
        )
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def segment_starts(n_samples: int, config: AudioConfig) -> np.ndarray:
    """Start sample of every kept window.

    Full windows are kept; a final partial window is kept when it covers at least
    ``min_last_fraction`` of a window. Audio shorter than that still gives one (padded) window.
    """
    win, hop = config.segment_samples, config.hop_samples
    min_cover = config.min_last_fraction * win
    if n_samples < min_cover:
        return np.zeros(1, dtype=np.int64)
    n = int(np.floor((n_samples - min_cover) / hop)) + 1
    return np.arange(n, dtype=np.int64) * hop


def segment_audio(y: np.ndarray, config: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``y`` into windows of ``segment_samples``, zero-padding the last one.

    Returns
    -------
    segments : ndarray of shape (n_segments, segment_samples)
    starts : ndarray of shape (n_segments,)
        Start time of each segment in seconds.
    """
    win = config.segment_samples
    starts = segment_starts(len(y), config)
    needed = int(starts[-1]) + win
    padded = np.pad(y, (0, max(0, needed - len(y))))
    index = starts[:, None] + np.arange(win)[None, :]
    return padded[index].astype(np.float32, copy=False), starts / config.sample_rate


def load_segments(path: str | Path, config: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``path`` and segment it; see :func:`load_audio` and :func:`segment_audio`.

    Raises
    ------
    AudioDecodeError
        Also when the audio is shorter than ``config.min_duration``.
    """
    y = load_audio(path, sample_rate=config.sample_rate)
    duration = len(y) / config.sample_rate
    if duration < config.min_duration:
        raise AudioDecodeError(
            f"{path}: too short ({duration:.3f} s); at least {config.min_duration:g} s of audio is needed"
        )
    if duration < config.segment_seconds * config.min_last_fraction:
        warnings.warn(
            f"{path}: {duration:.2f} s is shorter than one {config.segment_seconds:g} s segment; zero-padded",
            AudioWarning,
            stacklevel=2,
        )
    return segment_audio(y, config)
