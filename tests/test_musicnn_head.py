"""The shipped model's path end to end on synthesized audio: a musicnn store, musicnn-head training with
standardization, and prediction from the run folder (what scripts/train_default_model.sh does at scale)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from genrekit import load_model
from genrekit.features import default_config
from genrekit.features.musicnn import EMBEDDING_DIM
from genrekit.datasets.splits import SplitConfig
from genrekit.datasets.store import open_store
from genrekit.datasets.prepare import prepare_store
from genrekit.training.config import TrainConfig
from genrekit.training.fit import train


def test_musicnn_head_trains_on_embeddings_and_predicts(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(labels=("classical", "metal"), per_label=3, seconds=3.0)
    config = default_config("musicnn")
    report = prepare_store(data, tmp_path / "store", config, jobs=1)
    assert report.errors == [] and report.n_segments == 6
    store = open_store(tmp_path / "store")
    assert store.features.shape == (6, EMBEDDING_DIM)

    split = SplitConfig(strategy="random", val_fraction=0.34, seed=0)
    result = train(tmp_path / "store", TrainConfig(model="musicnn-head", split=split, epochs=2, lr=1e-3, keep="last"), run_dir=tmp_path / "run")
    assert len(result.history) == 2

    model = load_model(tmp_path / "run")
    assert model.checkpoint.mean is not None and model.checkpoint.mean.shape[0] == EMBEDDING_DIM  # standardization travels
    assert model.feature_config.audio.sample_rate == 16000
    prediction = model.predict(next((data / "metal").iterdir()))
    assert set(prediction.probabilities) == {"classical", "metal"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(list(prediction.probabilities.values())).all()


def test_shipped_default_model_is_self_describing_and_classifies_a_sample() -> None:
    model = load_model()
    assert model.classes_ == ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
    info = model.describe()
    validation = info["validation"]
    lo, hi = validation["track_accuracy_ci95"]
    assert lo <= validation["track_accuracy"] <= hi and "artist-grouped" in validation["protocol"]
    assert info["training_data"]["n_clips"] > 0 and info["training_data"]["n_excerpts"] > 0
    assert 0 < info["calibration"]["uncertain_below"] < 1
    sample = Path(__file__).resolve().parents[1] / "src/genrekit/samples/beethoven_symphony9_mvt2.ogg"
    prediction = model.predict(sample)
    assert len(prediction.segments) == 10
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
