"""Training-time augmentation, applied on the fly to batches of stored log-mel features.

The original pipeline augmented raw audio with additive noise, gain and pitch shift. genrekit
applies all three in the log-mel domain instead, on the batch that is about to be trained on:

* Pitch shift on raw audio (``librosa.effects.pitch_shift``: phase vocoder plus resampling)
  measured 142 ms per 3-s segment, i.e. 9.1 s per batch of 64, plus 2.9 s to recompute the batch's
  log-mel: about as long as the cnn2 training step on that batch (``scripts/augment_cost.py``, one
  torch thread, on the shared 2-core development machine under a load average of about 8, so the
  absolute times are inflated; the ratios are what matter). It would also need the raw audio, which
  the store does not keep, and precomputed copies (``prepare --augment``) would multiply the store
  size and freeze the shifts. A shift of ``s`` semitones scales every frequency by ``2 ** (s / 12)``;
  on the spectrogram that is a resampling of the mel axis at the band centre frequencies, measured
  at 133 ms per batch of 64 in the same run (about 1 % of a training step, 90x cheaper than raw
  audio), with fresh continuous shifts every epoch. Hence on-the-fly, in the log-mel domain.
* Noise is specified as a signal-to-noise ratio, not an absolute level: white noise is added in the
  mel power domain (flat across Slaney-normalized bands), at a power set by the segment's own mean
  mel power, fluctuating like the chi-square power of each band's effective number of FFT bins.
* Gain adds decibels. Under ``scaling="seed"`` every segment is referenced to its own maximum, so
  gain is exactly undone by the feature itself (as it would be on raw audio); it only changes
  ``scaling="standard"`` features.

SpecAugment time and frequency masking and mixup are options. Every transform is applied to each
segment with its own probability and draws from a caller-supplied ``numpy.random.Generator``, so
the same seed gives the same augmented batches (what makes ``--resume`` exact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from .._params import Constraint, Interval, check_params, from_dict
from ..config import FeatureConfig
from ..exceptions import Mention, ParameterError
from ..features.logmel import AMIN, mel_filterbank

__all__ = ["AugmentConfig", "Augmenter", "mixup"]

_STANDARD_FLOOR_DB = 10.0 * np.log10(AMIN)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly; every probability defaults to 0 (the original's training).

    Parameters
    ----------
    noise_prob : float in [0, 1], default=0
        Probability that a segment gets white noise.
    snr_db : (float, float), default=(10, 30)
        Signal-to-noise ratio range in dB, drawn uniformly.
    gain_prob : float in [0, 1], default=0
    gain_db : float >= 0, default=6
        Gain is drawn uniformly from [-gain_db, gain_db].
    pitch_prob : float in [0, 1], default=0
    pitch_semitones : float >= 0, default=2
        Shift drawn uniformly from [-pitch_semitones, pitch_semitones] (the original's ±2).
    time_mask_prob, freq_mask_prob : float in [0, 1], default=0
        SpecAugment: one mask of up to ``time_mask_frames`` frames / ``freq_mask_bands`` bands.
    time_mask_frames : int >= 1, default=20
    freq_mask_bands : int >= 1, default=16
    mixup_prob : float in [0, 1], default=0
        Probability that a batch is mixed with a permutation of itself.
    mixup_alpha : float > 0, default=0.2
        The mixing weight is drawn from Beta(alpha, alpha).
    """

    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    gain_prob: float = 0.0
    gain_db: float = 6.0
    pitch_prob: float = 0.0
    pitch_semitones: float = 2.0
    time_mask_prob: float = 0.0
    time_mask_frames: int = 20
    freq_mask_prob: float = 0.0
    freq_mask_bands: int = 16
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.2

    _constraints: ClassVar[dict[str, Constraint]] = {
        **{name: Interval(0, 1, closed="both") for name in ("noise_prob", "gain_prob", "pitch_prob", "time_mask_prob", "freq_mask_prob", "mixup_prob")},
        "gain_db": Interval(0, None),
        "pitch_semitones": Interval(0, None),
        "time_mask_frames": Interval(1, None, integer=True),
        "freq_mask_bands": Interval(1, None, integer=True),
        "mixup_alpha": Interval(0, None, closed="neither"),
    }

    def __post_init__(self) -> None:
        check_params(self, self._constraints)
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ParameterError.invalid("snr_db", "a (low, high) pair with low <= high", self.snr_db)

    @property
    def spectral(self) -> bool:
        """Whether any per-segment (spectrogram) transform is enabled."""
        return any(p > 0 for p in (self.noise_prob, self.gain_prob, self.pitch_prob, self.time_mask_prob, self.freq_mask_prob))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Rebuild a saved config; unknown keys are one-line errors naming them."""
        values = dict(data) if isinstance(data, dict) else data
        if isinstance(values, dict) and isinstance(values.get("snr_db"), list):
            values["snr_db"] = tuple(values["snr_db"])
        return from_dict(cls, values, what="augmentation")


class Augmenter:
    """Applies an :class:`AugmentConfig` to batches of log-mel features of shape (batch, n_mels, n_frames).

    Parameters
    ----------
    config : AugmentConfig
    feature_config : FeatureConfig
        The store's features; the spectral transforms need log-mel (``kind="logmel"``).

    Raises
    ------
    ParameterError
        Spectral transforms were requested for features that are not log-mel spectrograms.
    """

    def __init__(self, config: AugmentConfig, feature_config: FeatureConfig) -> None:
        if config.spectral and feature_config.kind != "logmel":
            raise ParameterError(
                "The noise, gain, pitch and specaugment augmentations (", Mention("augment"), ") work on log-mel features; this store holds "
                f"{feature_config.kind} features: use only mixup (", Mention("mixup_alpha"), ") with them."
            )
        self.config = config
        self.feature_config = feature_config
        if feature_config.kind == "logmel":
            basis = mel_filterbank(feature_config).astype(np.float64)
            # Effective number of FFT bins per band: the chi-square degrees of freedom of white noise power there.
            dof = basis.sum(axis=1) ** 2 / np.maximum((basis**2).sum(axis=1), 1e-30)
            self._sigma = torch.tensor(np.sqrt(np.log1p(1.0 / np.maximum(dof, 1e-6))), dtype=torch.float32)[None, :, None]
            import librosa

            f_max = feature_config.f_max or feature_config.audio.sample_rate / 2
            self._centers = librosa.mel_frequencies(feature_config.n_mels + 2, fmin=feature_config.f_min, fmax=f_max)[1:-1]

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Augment a float32 batch in its stored domain (dB); returns a new tensor."""
        c = self.config
        n = len(x)
        # Draw every decision up front, in a fixed order, so the stream of random numbers does not depend on the data.
        chosen = {name: rng.random(n) < getattr(c, name) for name in ("gain_prob", "noise_prob", "pitch_prob", "freq_mask_prob", "time_mask_prob")}
        x = x.clone()
        if chosen["gain_prob"].any():
            rows = np.flatnonzero(chosen["gain_prob"])
            gain = rng.uniform(-c.gain_db, c.gain_db, len(rows)).astype(np.float32)
            x[rows] = self._rescale(x[rows] + torch.from_numpy(gain)[:, None, None])
        if chosen["noise_prob"].any():
            rows = np.flatnonzero(chosen["noise_prob"])
            x[rows] = self._noise(x[rows], rng)
        if chosen["pitch_prob"].any():
            rows = np.flatnonzero(chosen["pitch_prob"])
            x[rows] = self._pitch(x[rows], rng)
        if chosen["freq_mask_prob"].any():
            rows = np.flatnonzero(chosen["freq_mask_prob"])
            x[rows] = _mask(x[rows], 1, c.freq_mask_bands, rng)
        if chosen["time_mask_prob"].any():
            rows = np.flatnonzero(chosen["time_mask_prob"])
            x[rows] = _mask(x[rows], 2, c.time_mask_frames, rng)
        return x

    def _rescale(self, db: torch.Tensor) -> torch.Tensor:
        """Bring transformed dB values back to the store's scaling (per-segment max reference, floor)."""
        if self.feature_config.scaling == "seed":
            peak = db.amax(dim=(1, 2), keepdim=True)
            return torch.clamp(db - peak, min=-self.feature_config.top_db)
        return torch.clamp(db, min=_STANDARD_FLOOR_DB)

    def _noise(self, db: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        lo, hi = self.config.snr_db
        snr = rng.uniform(lo, hi, len(db))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        power = torch.pow(10.0, db / 10.0)
        noise_level = power.mean(dim=(1, 2)) / torch.from_numpy(10.0 ** (snr / 10.0)).float()
        # Log-normal stand-in for each band's Gamma(dof, 1/dof) fluctuation (same mean and variance), ~3x cheaper to draw.
        fluctuation = torch.exp(self._sigma * torch.randn(db.shape, generator=generator) - self._sigma**2 / 2)
        noisy = power + noise_level[:, None, None] * fluctuation
        return self._rescale(10.0 * torch.log10(torch.clamp(noisy, min=AMIN)))

    def _pitch(self, db: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        n_mels = db.shape[1]
        semitones = rng.uniform(-self.config.pitch_semitones, self.config.pitch_semitones, len(db))
        ratio = 2.0 ** (semitones / 12.0)
        # Band m of the shifted spectrum holds what the original had at centre_m / ratio.
        source = np.stack([np.interp(self._centers / r, self._centers, np.arange(n_mels), left=-1.0, right=float(n_mels)) for r in ratio])
        valid = (source >= 0) & (source <= n_mels - 1)
        lo = np.clip(np.floor(source), 0, n_mels - 2).astype(np.int64)
        frac = torch.from_numpy(np.clip(source - lo, 0.0, 1.0).astype(np.float32))[:, :, None]
        index = torch.from_numpy(lo)[:, :, None].expand(-1, -1, db.shape[2])
        shifted = db.gather(1, index) * (1 - frac) + db.gather(1, index + 1) * frac
        floor = db.amin(dim=(1, 2), keepdim=True).expand_as(shifted)
        shifted = torch.where(torch.from_numpy(valid)[:, :, None], shifted, floor)
        return self._rescale(shifted)


def _mask(x: torch.Tensor, axis: int, max_width: int, rng: np.random.Generator) -> torch.Tensor:
    """SpecAugment: one band (axis 1) or frame range (axis 2) per segment set to the segment's mean."""
    size = x.shape[axis]
    width = rng.integers(0, min(max_width, size) + 1, len(x))
    start = rng.integers(0, size - width + 1)
    pos = np.arange(size)
    hit = torch.from_numpy((pos[None, :] >= start[:, None]) & (pos[None, :] < (start + width)[:, None]))
    hit = hit[:, :, None] if axis == 1 else hit[:, None, :]
    return torch.where(hit, x.mean(dim=(1, 2), keepdim=True), x)


def mixup(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, alpha: float, prob: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a permutation of itself (Zhang et al. 2018), with probability ``prob``.

    Returns
    -------
    x : Tensor
        The mixed batch ``lam * x + (1 - lam) * x[perm]``.
    y_a, y_b : Tensor
        Labels of the two mixed segments; the loss is ``lam * loss(y_a) + (1 - lam) * loss(y_b)``.
    lam : float
        1.0 when the batch was left unmixed.
    """
    apply = rng.random() < prob
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    if not apply:
        return x, y, y, 1.0
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam
