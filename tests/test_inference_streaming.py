"""Streamed prediction (decode in blocks, segment across block boundaries, features and model a batch at a
time) gives the predictions of the whole-file path: load_audio, segment_audio, features, model."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from genrekit import load_model
from genrekit.audio import load_audio
from genrekit.checkpoint import Checkpoint
from genrekit.config import FeatureConfig
from genrekit.datasets.discover import GTZAN_GENRES
from genrekit.exceptions import AudioDecodeError
from genrekit.features.pipeline import FileFeatures
from genrekit.classifier import GenreClassifier, Prediction, PredictionError
from genrekit.runtime.torch import TorchRunner
from genrekit.models import build_model

from conftest import synth_tone

# Every case is bit-exact today (streamed soxr equals one-shot soxr, and segments, features and model
# batches are the same), so the tolerance only allows for float reordering in other library versions.
ATOL = 1e-5


@pytest.fixture(scope="module")
def cnn1() -> GenreClassifier:
    torch.manual_seed(0)
    model = build_model("cnn1", (128, 130), 10)
    return GenreClassifier(TorchRunner(Checkpoint("cnn1", {}, model.state_dict(), list(GTZAN_GENRES), FeatureConfig())))


@pytest.fixture(scope="module")
def musicnn() -> GenreClassifier:
    model = load_model()  # the shipped model: musicnn embeddings of 16 kHz audio
    assert model.feature_config.kind == "musicnn" and model.feature_config.audio.sample_rate == 16000
    return model


def _write(path: Path, seconds: float, sample_rate: int, *, channels: int = 1, subtype: str | None = None) -> Path:
    y = synth_tone(4, seconds, sample_rate, np.random.default_rng(int(seconds * 1000)))
    if channels == 2:
        y = np.stack([y, -0.7 * y[::-1]], axis=1)
    sf.write(path, y, sample_rate, subtype=subtype)
    return path


def _whole_file(clf: GenreClassifier, path: Path) -> Prediction:
    """The pre-streaming path: the whole decoded signal, all its segments, then the model."""
    rate = clf.feature_config.audio.sample_rate
    return clf.predict(load_audio(path, sample_rate=rate), sample_rate=rate)


def _segment_probs(result: Prediction) -> np.ndarray:
    return np.array([list(s.probabilities.values()) for s in result.segments])


def _assert_same(streamed: Prediction, whole: Prediction) -> float:
    """Same timeline, duration and probabilities; returns the largest probability difference."""
    assert streamed.duration_s == whole.duration_s
    assert [(s.start_s, s.end_s) for s in streamed.segments] == [(s.start_s, s.end_s) for s in whole.segments]
    diff = float(np.abs(_segment_probs(streamed) - _segment_probs(whole)).max())
    assert diff <= ATOL
    np.testing.assert_allclose(list(streamed.probabilities.values()), list(whole.probabilities.values()), atol=ATOL)
    assert streamed.genre == whole.genre
    return diff


@pytest.mark.parametrize(
    ("seconds", "n_segments"),
    [
        (0.6, 1),  # shorter than one segment: one padded window
        (2.69, 1),  # just under the 2.7 s a partial window must cover
        (3.0, 1),  # exactly one segment
        (30.0, 10),  # exact multiple
        (29.98, 10),  # final partial window kept (2.98 s >= 2.7 s)
        (31.0, 10),  # final partial window dropped (1 s)
        (32.8, 11),  # kept again (2.8 s)
        (99.0, 33),  # exact multiple over several model batches and decoded blocks
        (100.5, 33),  # partial 1.5 s dropped after several batches
    ],
)
def test_streamed_equals_whole_file_at_the_model_rate(cnn1: GenreClassifier, tmp_path: Path, seconds: float, n_segments: int) -> None:
    path = _write(tmp_path / "x.wav", seconds, 22050, subtype="PCM_16")
    streamed = cnn1.predict(path)
    assert len(streamed.segments) == n_segments
    _assert_same(streamed, _whole_file(cnn1, path))


@pytest.mark.parametrize(
    ("name", "seconds", "sample_rate", "channels", "subtype"),
    [
        ("stereo.wav", 31.0, 22050, 2, "FLOAT"),
        ("cd.flac", 35.0, 44100, 2, None),
        ("dat.wav", 29.98, 48000, 1, "PCM_24"),
        ("phone.wav", 20.0, 8000, 1, "PCM_16"),
        ("short.ogg", 2.0, 44100, 2, None),
        ("song.ogg", 33.0, 48000, 1, None),
    ],
)
def test_streamed_equals_whole_file_for_other_rates_channels_and_formats(
    cnn1: GenreClassifier, tmp_path: Path, name: str, seconds: float, sample_rate: int, channels: int, subtype: str | None
) -> None:
    path = _write(tmp_path / name, seconds, sample_rate, channels=channels, subtype=subtype)
    _assert_same(cnn1.predict(path), _whole_file(cnn1, path))


def test_streamed_equals_whole_file_for_mp3(cnn1: GenreClassifier, tmp_path: Path) -> None:
    """libsndfile garbles MP3 samples when SoundFile.read seeks between blocks; the streamed decoder does not seek."""
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write MP3")
    for sample_rate in (22050, 44100):
        y = synth_tone(2, 20.0, sample_rate, np.random.default_rng(0))
        path = tmp_path / f"x{sample_rate}.mp3"
        sf.write(path, np.stack([y, y], axis=1), sample_rate, format="MP3")
        _assert_same(cnn1.predict(path), _whole_file(cnn1, path))


@pytest.mark.parametrize(
    ("name", "seconds", "sample_rate", "channels"),
    [("short.wav", 1.2, 16000, 1), ("exact.wav", 12.0, 16000, 1), ("cd.wav", 20.5, 44100, 2), ("phone.wav", 9.5, 8000, 1)],
)
def test_streamed_equals_whole_file_for_the_musicnn_model(
    musicnn: GenreClassifier, tmp_path: Path, name: str, seconds: float, sample_rate: int, channels: int
) -> None:
    path = _write(tmp_path / name, seconds, sample_rate, channels=channels)
    _assert_same(musicnn.predict(path), _whole_file(musicnn, path))


def test_predict_many_streams_in_workers_and_in_process(cnn1: GenreClassifier, tmp_path: Path) -> None:
    paths = [_write(tmp_path / "a.wav", 20.0, 44100, channels=2), _write(tmp_path / "b.flac", 7.0, 22050)]
    (tmp_path / "bad.wav").write_text("not audio")
    paths.insert(1, tmp_path / "bad.wav")
    for jobs in (1, 2):
        results = list(cnn1.predict_many(paths, jobs=jobs))
        assert isinstance(results[1], PredictionError) and results[1].path.endswith("bad.wav") and results[1].kind == "decode"
        for path, result in zip(paths[::2], results[::2]):
            assert isinstance(result, Prediction) and result.path == str(path)
            _assert_same(result, _whole_file(cnn1, path))


def test_streamed_errors_name_the_file(cnn1: GenreClassifier, tmp_path: Path) -> None:
    short = _write(tmp_path / "short.wav", 0.3, 22050)
    with pytest.raises(AudioDecodeError, match=r"short\.wav: too short \(0\.300 s\)"):
        cnn1.predict(short)
    y = synth_tone(1, 40.0, 22050, np.random.default_rng(0))
    y[35 * 22050] = np.inf  # past the first decoded blocks and model batch
    sf.write(tmp_path / "inf.wav", y, 22050, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"inf\.wav: contains NaN or infinite samples"):
        cnn1.predict(tmp_path / "inf.wav")


def test_truncated_file_warning_reaches_the_prediction(cnn1: GenreClassifier, tmp_path: Path) -> None:
    full = _write(tmp_path / "full.wav", 8.0, 22050, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 2 * 22050 * 4])  # header still promises 8 s
    result = cnn1.predict(cut)
    assert result.duration_s == pytest.approx(4.0) and len(result.segments) == 1
    assert len(result.warnings) == 1 and "truncated, header promises 8.00 s but only 4.00 s" in result.warnings[0]
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_streaming_memory_does_not_grow_with_the_file(cnn1: GenreClassifier, tmp_path: Path) -> None:
    """A 10-minute file's features are computed holding one block and one batch: numpy's traced peak stays
    far below the decoded signal alone (600 s at 22050 Hz = 53 MB float32; with its segments, 106 MB)."""
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", 8000, 1, subtype="PCM_16") as f:
        for i in range(20):
            f.write(synth_tone(i % 10, 30.0, 8000, np.random.default_rng(i)))
    tracemalloc.start()
    try:
        stream = FileFeatures(str(path), cnn1.feature_config)
        n_segments = sum(len(features) for features in stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_segments == 200 and stream.duration_s == pytest.approx(600.0)
    assert peak < 25e6  # one batch of segments and its features, one block
