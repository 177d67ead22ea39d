"""Run the original ``musicnn==0.1.0`` once on a fixed synthesized input and save what the port must reproduce.

Run in the TensorFlow venv described in ``scripts/convert_musicnn.py``::

    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python scripts/make_musicnn_reference.py

Writes ``tests/data/musicnn_reference.npz`` with the input (10 s of 16 kHz int16 audio: tones, a sweep,
noise bursts and noise, quiet enough that the original's float16 overflow does not trigger) and, for
``msd`` and ``mtt``: ``taggram`` (n_patches, 50), ``mean_pool`` and ``max_pool`` (n_patches, 753), all
from ``musicnn.extractor.extractor`` as shipped, and ``penultimate`` (n_patches, 200) from a second run
with ``configuration.BATCH_SIZE`` set to the number of patches: with the shipped batch size of 1, every
patch after the first gets patch 0's penultimate (a loop-variable bug), which the script checks.
``tests/test_musicnn.py`` compares :mod:`genrekit.features.musicnn` against this file without TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "musicnn_reference.npz"
SAMPLE_RATE = 16000
SECONDS = 10.0
MODELS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}


def synthesize() -> np.ndarray:
    """10 s whose three 3 s patches differ: a chord, a sweep with noise bursts, a high melody; plus noise."""
    rng = np.random.default_rng(20190701)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    y = 0.004 * rng.standard_normal(len(t))
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0))
    y += 0.02 * chord * (t < 3.2)
    sweep = np.sin(2 * np.pi * (200.0 * t + 150.0 * t**2))
    bursts = rng.standard_normal(len(t)) * (np.mod(t, 0.5) < 0.06)
    y += ((t >= 3.0) & (t < 6.5)) * (0.03 * sweep + 0.03 * bursts)
    notes = np.array([659.25, 783.99, 880.0, 1046.5, 987.77, 783.99])
    melody = np.sin(2 * np.pi * notes[(t * 4).astype(int) % len(notes)] * t)
    y += (t >= 6.0) * 0.04 * melody
    return np.round(np.clip(y, -1, 1) * 32767).astype(np.int16)


def main() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import soundfile as sf
    from musicnn import configuration
    from musicnn.extractor import extractor

    audio = synthesize()
    arrays: dict[str, np.ndarray] = {"audio": audio, "sample_rate": np.array(SAMPLE_RATE)}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "reference.wav"
        sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
        for key, model in MODELS.items():
            taggram, _, features = extractor(str(wav), model=model, input_length=3, extract_features=True)
            n_patches = len(taggram)
            if not np.all(features["penultimate"] == features["penultimate"][0]):
                raise SystemExit("expected the original's penultimate rows to be copies of patch 0")
            batch_size = configuration.BATCH_SIZE
            configuration.BATCH_SIZE = n_patches
            try:
                taggram_full, _, features_full = extractor(str(wav), model=model, input_length=3, extract_features=True)
            finally:
                configuration.BATCH_SIZE = batch_size
            if not np.allclose(taggram_full, taggram, atol=1e-5):
                raise SystemExit("batched and unbatched taggrams differ")
            arrays[f"{key}_taggram"] = taggram.astype(np.float32)
            arrays[f"{key}_mean_pool"] = features["mean_pool"].astype(np.float32)
            arrays[f"{key}_max_pool"] = features["max_pool"].astype(np.float32)
            arrays[f"{key}_penultimate"] = features_full["penultimate"].astype(np.float32)
            for name, value in arrays.items():
                if name.startswith(key) and not np.all(np.isfinite(value)):
                    raise SystemExit(f"{name} is not finite: the input is too loud for the original's float16 step")
            print(f"{model}: {n_patches} patches, top tags of patch 0: "
                  f"{[configuration.MSD_LABELS if key == 'msd' else configuration.MTT_LABELS][0][int(np.argmax(taggram[0]))]}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
