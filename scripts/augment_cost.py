"""Measure what pitch shift costs on raw audio vs on log-mel, beside one cnn2 training step.

Run: ``nice .venv/bin/python scripts/augment_cost.py`` (one torch thread; numbers quoted in
``genrekit.training.augment``'s docstring).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import librosa
import numpy as np
import torch

from genrekit.training.augment import AugmentConfig, Augmenter
from genrekit.config import FeatureConfig
from genrekit.features.logmel import logmel
from genrekit.models import build_model


def clock(f: Callable[[], object], n: int) -> float:
    f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(66150).astype(np.float32) * 0.1
    config = FeatureConfig()
    raw = clock(lambda: librosa.effects.pitch_shift(audio, sr=22050, n_steps=float(rng.uniform(-2, 2))), 10)
    features = clock(lambda: logmel(np.tile(audio, (64, 1)), config), 3)
    x = torch.from_numpy(logmel(np.tile(audio, (64, 1)), config))
    pitch = clock(lambda: Augmenter(AugmentConfig(pitch_prob=1.0), config)(x, rng), 10)
    noise = clock(lambda: Augmenter(AugmentConfig(noise_prob=1.0), config)(x, rng), 10)
    model = build_model("cnn2", (128, 130), 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    y = torch.randint(0, 10, (64,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    train_step = clock(step, 3)
    print(f"raw-audio pitch shift: {raw * 1e3:.0f} ms per 3-s segment = {raw * 64:.2f} s per batch of 64 "
          f"(+ {features:.2f} s to recompute its log-mel)")
    print(f"log-mel pitch shift: {pitch * 1e3:.0f} ms per batch of 64; log-mel noise: {noise * 1e3:.0f} ms per batch of 64")
    print(f"cnn2 training step, batch of 64: {train_step:.2f} s")


if __name__ == "__main__":
    main()
