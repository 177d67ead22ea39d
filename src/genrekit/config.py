"""Typed, frozen configuration objects, validated once and saved with every store, run and model.

They round-trip through plain dicts (``to_dict`` / ``from_dict``) so a ``config.json`` is all that
is needed to rebuild them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .exceptions import ParameterError, words

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "SEGMENT_SECONDS",
    "AudioConfig",
    "FeatureConfig",
    "config_hash",
    "check_known_keys",
]

# The original pipeline's parameters.
SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
SEGMENT_SECONDS = 3.0

FeatureKind = Literal["logmel", "musicnn", "musicnn-patches"]
Scaling = Literal["seed", "standard"]
_FEATURE_KINDS = ("logmel", "musicnn", "musicnn-patches")
_SCALINGS = ("seed", "standard")


def check_known_keys(cls: type, data: dict[str, Any], what: str) -> None:
    """Reject keys a config dataclass does not have, so a typo in a saved config.json fails loudly."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ParameterError(f"Unknown {what} keys {', '.join(sorted(unknown))}; known keys are {', '.join(sorted(known))}.")


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ParameterError(f"The {name!r} parameter must be > 0. Got {value!r} instead.")


@dataclass(frozen=True)
class AudioConfig:
    """How a file becomes fixed-length mono segments.

    Parameters
    ----------
    sample_rate : int, default=22050
        Every file is decoded to mono float32 at this rate.
    segment_seconds : float, default=3.0
        Window length. The original pipeline cut 30 s clips into ten 3 s windows.
    hop_seconds : float, default=3.0
        Distance between window starts; smaller than ``segment_seconds`` gives overlap.
    min_last_fraction : float in (0, 1], default=0.9
        A final partial window is kept (zero-padded) when it covers at least this fraction of a
        window, so a 29.98 s GTZAN clip still gives 10 segments while a 95 s track gives 31.
    min_duration : float, default=0.5
        Shorter audio is rejected as unusable; anything between this and one window is padded
        to a single segment.
    """

    sample_rate: int = SAMPLE_RATE
    segment_seconds: float = SEGMENT_SECONDS
    hop_seconds: float = SEGMENT_SECONDS
    min_last_fraction: float = 0.9
    min_duration: float = 0.5

    def __post_init__(self) -> None:
        _check_positive("sample_rate", self.sample_rate)
        _check_positive("segment_seconds", self.segment_seconds)
        _check_positive("hop_seconds", self.hop_seconds)
        _check_positive("min_duration", self.min_duration)
        if not 0 < self.min_last_fraction <= 1:
            raise ParameterError(
                f"The 'min_last_fraction' parameter must be in (0, 1]. Got {self.min_last_fraction!r} instead."
            )
        if self.segment_samples < 1 or self.hop_samples < 1:
            raise ParameterError(
                f"segment_seconds and hop_seconds must each span at least one sample at {self.sample_rate} Hz. "
                f"Got {self.segment_seconds!r} and {self.hop_seconds!r} instead."
            )

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureConfig:
    """What is computed for each segment.

    Parameters
    ----------
    kind : {"logmel", "musicnn"}, default="logmel"
        ``logmel``: the original log-mel spectrogram, shape (n_mels, frames).
        ``musicnn``: pretrained musicnn embeddings (see :mod:`genrekit.musicnn`).
        ``musicnn-patches``: musicnn's log-mel input, shape (frames, 96): what an exported musicnn
        model reads, the networks being part of its graph (see :mod:`genrekit.export`).
    n_fft, hop_length, n_mels : int
        STFT and mel parameters (Hann window, centered frames, Slaney mel scale, power 2).
    f_min, f_max : float
        Mel band edges in Hz; ``f_max=None`` means Nyquist.
    scaling : {"seed", "standard"}, default="seed"
        ``seed``: dB relative to each segment's own maximum, floored at ``-top_db`` (the original).
        ``standard``: dB relative to a fixed reference (1.0); per-band mean/std are learned on the
        training split and stored with the model.
    top_db : float, default=80.0
        Dynamic range kept by ``seed`` scaling.
    audio : AudioConfig
        Decoding and segmentation.
    """

    kind: FeatureKind = "logmel"
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = 0.0
    f_max: float | None = None
    scaling: Scaling = "seed"
    top_db: float = 80.0
    audio: AudioConfig = field(default_factory=AudioConfig)

    def __post_init__(self) -> None:
        if self.kind not in _FEATURE_KINDS:
            raise ParameterError(f"The 'kind' parameter must be one of {words(_FEATURE_KINDS)}. Got {self.kind!r} instead.")
        if self.scaling not in _SCALINGS:
            raise ParameterError(f"The 'scaling' parameter must be one of {words(_SCALINGS)}. Got {self.scaling!r} instead.")
        for name in ("n_fft", "hop_length", "n_mels", "top_db"):
            _check_positive(name, getattr(self, name))
        nyquist = self.audio.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ParameterError(
                f"Mel band edges must satisfy 0 <= f_min < f_max <= {nyquist:g} Hz. "
                f"Got f_min={self.f_min!r}, f_max={self.f_max!r} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        check_known_keys(cls, data, "feature config")
        values = dict(data)
        if isinstance(values.get("audio"), dict):
            values["audio"] = AudioConfig(**values["audio"])
        return cls(**values)

    @classmethod
    def for_kind(cls, kind: FeatureKind, **overrides: Any) -> FeatureConfig:
        """The default configuration of a feature kind (musicnn works on 16 kHz audio)."""
        if kind == "musicnn":
            from .musicnn import default_feature_config

            return default_feature_config(**overrides)
        return cls(kind=kind, **overrides)


def config_hash(config: FeatureConfig) -> str:
    """A short, stable digest of a configuration: what the feature cache is keyed on."""
    payload = json.dumps(config.to_dict(), sort_keys=True).encode()
    return hashlib.blake2b(payload, digest_size=8).hexdigest()
