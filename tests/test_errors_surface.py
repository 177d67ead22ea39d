"""Bugs fail loudly: only bad audio (decode and I/O errors) is a skipped file; anything else stops the command.

A ``ValueError`` raised by feature code stands for any bug in genrekit or a dependency: it must reach the
caller, not turn into "file skipped" with exit code 0.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import genrekit.audio
import genrekit.features.pipeline

from genrekit.checkpoint import load_checkpoint
from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.exceptions import AudioDecodeError, AudioTooLongError, CheckpointError, ModelNotFoundError
from genrekit.classifier import GenreClassifier
from genrekit.runtime.torch import TorchRunner
from genrekit.datasets.prepare import prepare_store, process_file

from conftest import write_random_model

runner = CliRunner()


def _broken_features(*_: object, **__: object) -> np.ndarray:
    raise ValueError("a bug in feature code")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> GenreClassifier:
    return GenreClassifier(TorchRunner(load_checkpoint(write_random_model(tmp_path_factory.mktemp("model") / "model.pt"))))


def test_decode_error_carries_path_and_reason_and_survives_pickling(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"not audio at all, just bytes")
    with pytest.raises(AudioDecodeError) as info:
        genrekit.audio.load_audio(tmp_path / "x.wav", sample_rate=22050)
    error = info.value
    assert error.path == str(tmp_path / "x.wav") and error.reason == "not decodable audio" and error.detail
    assert str(error) == f"{error.path}: not decodable audio ({error.detail})"
    assert isinstance(error.__cause__, Exception)  # chained with `from`
    for original in (error, AudioTooLongError("a.wav", "too long (9.0 s)"), AudioDecodeError(None, "signal contains NaN")):
        copy = pickle.loads(pickle.dumps(original))  # how a worker's error reaches the parent
        assert type(copy) is type(original) and str(copy) == str(original)
        assert (copy.path, copy.reason, copy.detail) == (original.path, original.reason, original.detail)


def test_feature_bug_is_not_a_skipped_file(make_dataset: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = make_dataset(per_label=1, seconds=4.0)
    monkeypatch.setattr(genrekit.features.pipeline, "extract_features", _broken_features)
    with pytest.raises(ValueError, match="a bug in feature code"):
        process_file(data / "blues" / "blues.00000.wav", FeatureConfig())
    with pytest.raises(ValueError, match="a bug in feature code"):
        prepare_store(data, tmp_path / "store", jobs=1)
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "store2"), "--jobs", "1"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


def test_bad_audio_is_still_a_skipped_file(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(per_label=1, seconds=4.0)
    (data / "blues" / "blues.00001.wav").write_bytes(b"RIFF broken")
    report = prepare_store(data, tmp_path / "store", jobs=1)
    assert [p for p, _ in report.errors] == [str(data / "blues" / "blues.00001.wav")]


def test_feature_bug_fails_predict(classifier: GenreClassifier, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.sin(np.arange(22050 * 4) * 0.05).astype(np.float32) * 0.3, 22050)
    monkeypatch.setattr(genrekit.features.pipeline, "extract_features", _broken_features)
    with pytest.raises(ValueError, match="a bug in feature code"):
        classifier.predict(path)
    with pytest.raises(ValueError, match="a bug in feature code"):
        list(classifier.predict_many([path, path], jobs=1))


def test_missing_and_corrupt_models_are_distinct(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "damaged.pt").write_bytes(b"PK\x03\x04 a damaged zip, not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged.pt: not a genrekit model file"):
        load_checkpoint(tmp_path / "damaged.pt")
    torch.save({"format": -1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a genrekit model file"):
        load_checkpoint(tmp_path / "other.pt")
