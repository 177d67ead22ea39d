"""Typed, frozen configuration objects, validated once and saved with every store, run and model.

They round-trip through plain dicts (``to_dict`` / ``from_dict``) so a ``config.json`` is all that
is needed to rebuild them. Each declares its fields' constraints once (``_constraints``), checked by
:func:`genrekit._params.check_params`. A leaf module: it imports nothing of genrekit but the exceptions
and that checker (which import nothing else), so any module may use it. Feature kinds are the registry's business
(:mod:`genrekit.features`): a config names its kind, and :func:`genrekit.features.default_config`
gives a kind's defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from ._params import Constraint, Interval, OneOf, check_params, from_dict
from .exceptions import ParameterError

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "SEGMENT_SECONDS",
    "AudioConfig",
    "FeatureConfig",
    "config_hash",
]

# The original pipeline's parameters.
SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
SEGMENT_SECONDS = 3.0

# Upper bounds on sizes, so a config from elsewhere (a model file's metadata) cannot ask for gigabytes:
# n_fft = 2**30 allocated 4.5 GB of STFT window and filterbank before anything else could refuse it.
MAX_SAMPLE_RATE = 384_000
MAX_N_FFT = 1 << 16
MAX_N_MELS = 1024
MAX_SEGMENT_SAMPLES = 1 << 23  # 380 s at 22050 Hz, 32 MB of float32 per segment
MAX_SEGMENTS_PER_SAMPLE = 64  # windows overlapping one sample: segment_seconds / hop_seconds
MAX_FEATURE_VALUES = 1 << 20  # values of one segment's log-mel (n_mels * frames); cnn2's first dense layer holds 128 weights per value

Scaling = Literal["seed", "standard"]
_SCALINGS = ("seed", "standard")


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

    _constraints: ClassVar[dict[str, Constraint]] = {
        "sample_rate": Interval(0, MAX_SAMPLE_RATE, closed="right", integer=True),
        "segment_seconds": Interval(0, None, closed="neither"),
        "hop_seconds": Interval(0, None, closed="neither"),
        "min_last_fraction": Interval(0, 1, closed="right"),
        "min_duration": Interval(0, None, closed="neither"),
    }

    def __post_init__(self) -> None:
        check_params(self, self._constraints)
        if self.segment_samples < 1 or self.hop_samples < 1:
            raise ParameterError(
                f"segment_seconds and hop_seconds must each span at least one sample at {self.sample_rate} Hz. "
                f"Got {self.segment_seconds!r} and {self.hop_seconds!r} instead."
            )
        if self.segment_samples > MAX_SEGMENT_SAMPLES or self.segment_samples > MAX_SEGMENTS_PER_SAMPLE * self.hop_samples:
            raise ParameterError(
                f"segment_seconds must span at most {MAX_SEGMENT_SAMPLES} samples and {MAX_SEGMENTS_PER_SAMPLE} hops (hop_seconds). "
                f"Got {self.segment_seconds!r} and {self.hop_seconds!r} at {self.sample_rate} Hz instead."
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
    kind : str, default="logmel"
        A registered feature kind (:func:`genrekit.features.logmel.available_feature_kinds`), checked where
        features are computed. ``logmel``: the original log-mel spectrogram, shape (n_mels, frames).
        ``musicnn``: pretrained musicnn embeddings (see :mod:`genrekit.features.musicnn`).
        ``musicnn-patches``: musicnn's log-mel input, shape (frames, 96): what an exported musicnn
        model reads, the networks being part of its graph (see :mod:`genrekit.runtime.export`).
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

    kind: str = "logmel"
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    f_min: float = 0.0
    f_max: float | None = None
    scaling: Scaling = "seed"
    top_db: float = 80.0
    audio: AudioConfig = field(default_factory=AudioConfig)

    _constraints: ClassVar[dict[str, Constraint]] = {
        "scaling": OneOf(_SCALINGS),
        "n_fft": Interval(0, MAX_N_FFT, closed="right", integer=True),
        "hop_length": Interval(0, MAX_N_FFT, closed="right", integer=True),
        "n_mels": Interval(0, MAX_N_MELS, closed="right", integer=True),
        "f_min": Interval(0, None),
        "f_max": Interval(0, None, closed="neither", optional=True),
        "top_db": Interval(0, None, closed="neither"),
    }

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ParameterError.invalid("kind", "a name such as logmel or musicnn", self.kind, subject="The feature kind")
        if not isinstance(self.audio, AudioConfig):
            raise ParameterError(f"The 'audio' parameter must be an AudioConfig. Got {type(self.audio).__name__} instead.")
        check_params(self, self._constraints)
        nyquist = self.audio.sample_rate / 2
        f_max = nyquist if self.f_max is None else self.f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ParameterError(
                f"Mel band edges must satisfy 0 <= f_min < f_max <= {nyquist:g} Hz. "
                f"Got f_min={self.f_min!r}, f_max={self.f_max!r} instead."
            )
        frames = 1 + self.audio.segment_samples // self.hop_length  # genrekit.features.logmel.n_frames
        if self.n_mels * frames > MAX_FEATURE_VALUES:
            raise ParameterError(
                f"A segment's log-mel (n_mels x frames) must hold at most {MAX_FEATURE_VALUES} values. "
                f"Got {self.n_mels} x {frames} (hop_length={self.hop_length}) instead."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Rebuild a saved config; unknown keys (nested ones too) are one-line errors naming them."""
        return from_dict(cls, data, what="feature config", nested={"audio": AudioConfig})


def config_hash(config: FeatureConfig) -> str:
    """A short, stable digest of a configuration: what the feature cache is keyed on."""
    payload = json.dumps(config.to_dict(), sort_keys=True).encode()
    return hashlib.blake2b(payload, digest_size=8).hexdigest()
