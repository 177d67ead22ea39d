"""musicnn's input, without PyTorch: its log-mel representation, its configuration, and the patches an
exported musicnn graph reads.

Classifying with the shipped models runs the musicnn networks inside an ONNX graph
(:mod:`genrekit.runtime.onnx`); what stays outside is this front end, in NumPy, so ``genrekit predict``
never imports PyTorch. The networks themselves, the embeddings genrekit stores for training and tag
scores are :mod:`genrekit.features.musicnn` (PyTorch).

Input representation (the original's ``extractor.batch_data``): 16 kHz mono, centered STFT with
n_fft 512, hop 256, periodic Hann window and zero padding (librosa >= 0.10), power 2, 96 Slaney mel
bands from 0 to 8 kHz, then ``log10(10000 * mel + 1)`` in float32 (the original casts the mel power to
float16 first, which overflows to inf on loud audio); patches of 187 frames (3 s).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..config import AudioConfig, FeatureConfig
from ..exceptions import ParameterError
from .logmel import PowerSpectrogram, mel_power
from .kinds import FeatureKind, feature_kind, register_feature_kind

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "SEGMENT_SECONDS",
    "PATCH_FRAMES",
    "patch_frames",
    "log_mel",
    "default_feature_config",
    "check_config",
    "network_input_shape",
    "musicnn_patches",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
SEGMENT_SECONDS = 3.0
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1


def patch_frames(n_samples: int) -> int:
    """Frames musicnn feeds per patch of ``n_samples`` (187 for 3 s), as its extractor counts them."""
    return (n_samples - N_FFT // 2) // HOP_LENGTH + 1


def log_mel(audio: np.ndarray) -> np.ndarray:
    """musicnn's input representation of one signal or a batch of equal-length signals at 16 kHz.

    Parameters
    ----------
    audio : ndarray of shape (n_samples,) or (n_signals, n_samples)

    Returns
    -------
    ndarray of shape (n_signals, 1 + n_samples // 256, 96), float32
    """
    signals = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    config = default_feature_config()
    out = np.empty((len(signals), 1 + signals.shape[1] // HOP_LENGTH, N_MELS), dtype=np.float32)
    stft = PowerSpectrogram(signals.shape[1], N_FFT, HOP_LENGTH)
    for signal, mel in zip(signals, out):
        mel[:] = mel_power(signal, config, stft=stft).T
    out *= 10000.0
    out += 1.0
    return np.log10(out, out=out)


def default_feature_config(**overrides: Any) -> FeatureConfig:
    """The feature configuration of ``kind="musicnn"``: 16 kHz audio in 3 s segments, musicnn's mel.

    Parameters
    ----------
    **overrides
        :class:`FeatureConfig` fields; ``audio=AudioConfig(sample_rate=16000, hop_seconds=1.5)`` gives
        overlapping segments, for example. The mel parameters are the network's and cannot change.
        ``scaling`` is ``"standard"``: training standardizes every embedding dimension with
        training-split statistics that travel in the model checkpoint (``"seed"`` scaling is a log-mel
        notion and is rejected); ``top_db`` does not apply.

    Raises
    ------
    ParameterError
        An override contradicts what the network was trained on.
    """
    values: dict[str, Any] = {
        "kind": "musicnn",
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "f_min": 0.0,
        "f_max": None,
        "scaling": "standard",
        "audio": AudioConfig(sample_rate=SAMPLE_RATE, segment_seconds=SEGMENT_SECONDS, hop_seconds=SEGMENT_SECONDS),
    }
    values.update(overrides)
    config = FeatureConfig(**values)
    check_config(config)
    return config


def check_config(config: FeatureConfig) -> None:
    """Raise :class:`ParameterError` where ``config`` contradicts what the musicnn networks were trained on."""
    required = {
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "f_min": 0.0,
        "scaling": "standard",
        "audio.sample_rate": SAMPLE_RATE,
    }
    if config.kind not in ("musicnn", "musicnn-patches"):
        raise ParameterError(f"musicnn features need kind='musicnn'; got {config.kind!r}. Use genrekit.features.default_config('musicnn').")
    actual = {**{k: getattr(config, k) for k in required if "." not in k}, "audio.sample_rate": config.audio.sample_rate}
    for name, value in required.items():
        if actual[name] != value:
            raise ParameterError(
                f"musicnn features need {name}={value!r} (the network's input); got {actual[name]!r}. "
                "Use genrekit.features.default_config('musicnn')."
            )
    if config.f_max not in (None, SAMPLE_RATE / 2):
        raise ParameterError(f"musicnn features need f_max=None (8000 Hz); got {config.f_max!r}.")
    if config.audio.segment_samples < N_FFT:
        raise ParameterError(
            f"musicnn features need segments of at least {N_FFT / SAMPLE_RATE:g} s; got segment_seconds={config.audio.segment_seconds!r}."
        )


def network_input_shape(config: FeatureConfig) -> tuple[int, ...]:
    """Shape of one segment's graph input: the features, or musicnn's log-mel patch for musicnn models."""
    if config.kind in ("musicnn", "musicnn-patches"):
        return (patch_frames(config.audio.segment_samples), N_MELS)
    return feature_kind(config.kind).shape(config)


def musicnn_patches(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """musicnn's input for equal-length segments: each segment's own log-mel cut to its patch length.

    The same patches :func:`genrekit.features.musicnn.extract_embeddings` feeds its networks, shape
    (n_segments, frames, 96), float32.
    """
    segments = np.atleast_2d(np.asarray(segments, dtype=np.float32))
    frames = network_input_shape(config)[0]
    return np.ascontiguousarray(log_mel(segments)[:, :frames]) if len(segments) else np.zeros((0, frames, N_MELS), np.float32)


def _patches_config(**overrides: Any) -> FeatureConfig:
    return replace(default_feature_config(), **{"kind": "musicnn-patches", **overrides})


def model_input(y: np.ndarray, config: FeatureConfig, whole: bool) -> tuple[np.ndarray, str]:
    """What the musicnn networks look at: their log-mel, (96, frames)."""
    return log_mel(y)[0].T, "log10(10000 · mel + 1), musicnn's input"


# What an exported musicnn model reads: the networks are in its graph, so the features are their log-mel input.
register_feature_kind(
    FeatureKind(name="musicnn-patches", default_config=_patches_config, shape=network_input_shape, extract=musicnn_patches, model_input=model_input)
)
