"""On-the-fly augmentation: seeded, in the store's domain, and doing what each transform says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit.training.augment import AugmentConfig, Augmenter, mixup
from genrekit.config import FeatureConfig
from genrekit.exceptions import ParameterError

SEED_CONFIG = FeatureConfig()


def _batch(rng: np.random.Generator, n: int = 8) -> torch.Tensor:
    """Seed-scaled log-mel-like batch: values in [-80, 0] with each segment's maximum at 0."""
    x = rng.uniform(-80, -10, size=(n, 128, 44)).astype(np.float32)
    x[:, 40, :] = 0.0
    return torch.from_numpy(x)


def test_same_seed_same_batch_and_probability_zero_is_identity(rng: np.random.Generator) -> None:
    x = _batch(rng)
    config = AugmentConfig(noise_prob=0.5, gain_prob=0.5, pitch_prob=0.5, time_mask_prob=0.5, freq_mask_prob=0.5)
    aug = Augmenter(config, SEED_CONFIG)
    a = aug(x, np.random.default_rng(1))
    assert torch.equal(a, aug(x, np.random.default_rng(1)))
    assert not torch.equal(a, aug(x, np.random.default_rng(2)))
    assert torch.equal(Augmenter(AugmentConfig(), SEED_CONFIG)(x, np.random.default_rng(1)), x)
    assert a.shape == x.shape and float(a.max()) <= 0.0 and float(a.min()) >= -80.0


def test_gain_is_undone_by_seed_scaling_but_not_by_standard(rng: np.random.Generator) -> None:
    x = _batch(rng)
    gain = AugmentConfig(gain_prob=1.0, gain_db=6.0)
    torch.testing.assert_close(Augmenter(gain, SEED_CONFIG)(x, rng), x)
    standard = Augmenter(gain, FeatureConfig(scaling="standard"))(x - 20, rng)
    shift = (standard - (x - 20)).mean(dim=(1, 2))
    assert bool((shift.abs() > 0).all()) and bool((shift.abs() <= 6.0 + 1e-4).all())


def test_noise_level_follows_the_snr(rng: np.random.Generator) -> None:
    x = _batch(rng)
    quiet = Augmenter(AugmentConfig(noise_prob=1.0, snr_db=(60.0, 60.0)), SEED_CONFIG)(x, rng)
    loud = Augmenter(AugmentConfig(noise_prob=1.0, snr_db=(0.0, 0.0)), SEED_CONFIG)(x, rng)
    change_quiet = float((quiet - x).abs().mean())
    change_loud = float((loud - x).abs().mean())
    assert change_quiet < 1.0 < change_loud
    # Noise fills the quiet bins: at 0 dB SNR the floor rises far above -80 dB.
    assert float(loud.mean()) > float(x.mean()) + 10


def test_pitch_shift_moves_a_tone_along_the_mel_axis(rng: np.random.Generator) -> None:
    x = torch.full((64, 128, 44), -80.0)
    x[:, 60, :] = 0.0
    out = Augmenter(AugmentConfig(pitch_prob=1.0, pitch_semitones=2.0), SEED_CONFIG)(x, rng)
    peaks = out.mean(dim=2).argmax(dim=1)
    assert int(peaks.min()) < 60 < int(peaks.max())
    assert int((peaks - 60).abs().max()) <= 6  # ±2 semitones is a few bands around 1.5 kHz
    unchanged = Augmenter(AugmentConfig(pitch_prob=1.0, pitch_semitones=0.0), SEED_CONFIG)(x, rng)
    torch.testing.assert_close(unchanged, x)


def test_specaugment_masks_set_a_band_or_frame_range_to_the_segment_mean(rng: np.random.Generator) -> None:
    x = _batch(rng, 16)
    out = Augmenter(AugmentConfig(time_mask_prob=1.0, time_mask_frames=10), SEED_CONFIG)(x, rng)
    changed = (out != x).any(dim=1)  # (batch, frames)
    assert int(changed.sum(dim=1).max()) <= 10 and bool(changed.any())
    out = Augmenter(AugmentConfig(freq_mask_prob=1.0, freq_mask_bands=8), SEED_CONFIG)(x, rng)
    assert int((out != x).any(dim=2).sum(dim=1).max()) <= 8


def test_mixup_is_a_convex_combination(rng: np.random.Generator) -> None:
    x = torch.randn(8, 4)
    y = torch.arange(8)
    same, y_a, y_b, lam = mixup(x, y, rng, alpha=0.2, prob=0.0)
    assert same is x and lam == 1.0 and torch.equal(y_a, y_b)
    mixed, y_a, y_b, lam = mixup(x, y, rng, alpha=0.4, prob=1.0)
    assert 0.0 <= lam <= 1.0
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[y_b])


def test_bad_configs_and_non_logmel_features_are_refused() -> None:
    with pytest.raises(ParameterError, match="noise_prob"):
        AugmentConfig(noise_prob=1.5)
    with pytest.raises(ParameterError, match="snr_db"):
        AugmentConfig(snr_db=(30.0, 10.0))
    with pytest.raises(ParameterError, match="mixup_alpha"):
        AugmentConfig(mixup_alpha=0.0)
    assert AugmentConfig.from_dict(AugmentConfig(snr_db=(5.0, 6.0)).to_dict()) == AugmentConfig(snr_db=(5.0, 6.0))
    with pytest.raises(ParameterError, match="log-mel"):
        Augmenter(AugmentConfig(noise_prob=0.5), FeatureConfig(kind="musicnn"))
