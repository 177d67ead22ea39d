"""Per-segment features: the original log-mel spectrogram (vectorized over segments), and the dispatch
to other feature kinds such as musicnn embeddings.

All functions here are pure: same segments and config, same output.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import torch

from .config import FeatureConfig

__all__ = ["AMIN", "mel_filterbank", "logmel", "extract_features", "feature_shape", "n_frames"]

AMIN = 1e-10  # power floor before log10, as librosa.power_to_db
_BATCH = 64  # segments per STFT call: bounds memory on long tracks


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=False, norm="slaney")
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=8)
def _mel_basis_tensor(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> torch.Tensor:
    return torch.tensor(_mel_basis(sample_rate, n_fft, n_mels, f_min, f_max))


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney-scale mel filters of shape (n_mels, 1 + n_fft // 2), exactly librosa's."""
    return _mel_basis(config.audio.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centered STFT: 130 for 3 s at 22050 Hz with hop 512."""
    return 1 + n_samples // hop_length


def logmel(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel spectrograms of a batch of equal-length segments.

    Matches ``librosa.power_to_db(librosa.feature.melspectrogram(y=seg, sr=..., n_fft=..., hop_length=...,
    n_mels=...), ref=...)`` per segment (Hann window, centered with zero padding, power 2), but computes
    all segments in a few batched STFTs.

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
    segments = np.ascontiguousarray(np.atleast_2d(segments), dtype=np.float32)  # torch rejects negative strides
    a = config.audio
    basis = _mel_basis_tensor(a.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)
    window = torch.hann_window(config.n_fft, periodic=True)
    out = np.empty((len(segments), config.n_mels, n_frames(segments.shape[1], config.hop_length)), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(segments), _BATCH):
            x = torch.from_numpy(segments[lo : lo + _BATCH])
            spec = torch.stft(
                x, config.n_fft, hop_length=config.hop_length, window=window, center=True, pad_mode="constant", return_complex=True
            )
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(basis, power)
            db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
            if config.scaling == "seed":
                peak = db.amax(dim=(1, 2), keepdim=True)
                db = torch.maximum(db - peak, torch.tensor(-config.top_db))
            out[lo : lo + len(x)] = db.numpy()
    return out


def feature_shape(config: FeatureConfig) -> tuple[int, ...]:
    """Shape of one segment's features."""
    if config.kind == "musicnn":
        from .musicnn import embedding_shape

        return embedding_shape(config)
    return (config.n_mels, n_frames(config.audio.segment_samples, config.hop_length))


def extract_features(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of a batch of segments for any feature kind, shape (n_segments, *feature_shape(config))."""
    if config.kind == "musicnn":
        from .musicnn import extract_embeddings

        return extract_embeddings(segments, config)
    return logmel(segments, config)
