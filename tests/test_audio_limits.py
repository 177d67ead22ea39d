"""Lying headers and over-long files: refused by name, in bounded memory and time, and never cached as the file's fault."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from genrekit import audio
from conftest import write_open_length_flac
from genrekit.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, declared_duration, load_audio, load_segments, stream_audio
from genrekit.cli import app
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.exceptions import AudioDecodeError, AudioTooLongError
from genrekit.datasets.prepare import prepare_store

runner = CliRunner()


def _noise_wav(path: Path, n_samples: int, rate: int, rng: np.random.Generator) -> Path:
    """A 16-bit WAV of ``n_samples`` frames whose header claims ``rate`` Hz (what a crafted file does)."""
    sf.write(path, (0.1 * rng.standard_normal(n_samples)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.mark.parametrize("rate", [1, 100, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1])
def test_implausible_sample_rate_is_refused_before_decoding(tmp_path: Path, rng: np.random.Generator, rate: int) -> None:
    # The bomb: 1.3 MB at 1 Hz grew predict to 16.9 GB; at 100 Hz it ran past 60 s.
    path = _noise_wav(tmp_path / "liar.wav", 650_000, rate, rng)
    start = time.perf_counter()
    for decode in (lambda: load_audio(path, sample_rate=22050), lambda: list(stream_audio(path, sample_rate=22050))):
        with pytest.raises(AudioDecodeError, match=rf"^{tmp_path}.*liar.wav: implausible sample rate {rate} Hz"):
            decode()
    assert time.perf_counter() - start < 5


def test_stream_blocks_are_bounded_by_their_output_size(tmp_path: Path, rng: np.random.Generator) -> None:
    # The lowest accepted rate upsampled 22x: each block must stay near _BLOCK_OUTPUT samples, not 22 x 65,536.
    path = _noise_wav(tmp_path / "low.wav", 200_000, MIN_SAMPLE_RATE, rng)
    blocks = list(stream_audio(path, sample_rate=22050))
    assert max(len(b) for b in blocks) <= 1.05 * audio._BLOCK_OUTPUT  # plus what the resampler held back
    assert len(blocks) > 10
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path, sample_rate=22050))


def test_max_duration_refuses_long_audio_by_name(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _noise_wav(tmp_path / "long.wav", 22050 * 10, 22050, rng)
    with pytest.raises(AudioTooLongError, match=r"long.wav: too long \(10.0 s\); the limit is 5 s"):
        load_segments(path, AudioConfig(), max_duration=5)
    with pytest.raises(AudioTooLongError):
        list(stream_audio(path, sample_rate=22050, max_duration=5))
    assert len(load_audio(path, sample_rate=22050, max_duration=11)) == 22050 * 10


def test_cli_predict_rejects_lying_rate_and_max_duration(tmp_path: Path, rng: np.random.Generator) -> None:
    liar = _noise_wav(tmp_path / "liar.wav", 650_000, 1, rng)
    long = _noise_wav(tmp_path / "long.wav", 22050 * 10, 22050, rng)
    result = runner.invoke(app, ["predict", str(liar), str(long), "--max-duration", "5", "--format", "csv", "--jobs", "1"])
    assert result.exit_code == 1
    rows = {r.split(",")[0]: r for r in result.stdout.splitlines()[1:]}
    assert "implausible sample rate 1 Hz" in rows[str(liar)]
    assert "too long (10.0 s)" in rows[str(long)]


def test_prepare_does_not_cache_limits_or_memory_errors(tmp_path: Path, make_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_dataset(labels=("a", "b"), per_label=2, seconds=4.0)
    store = tmp_path / "store"
    report = prepare_store(data, store, FeatureConfig(), jobs=1, max_duration=2)
    assert len(report.errors) == 4 and all("too long (4.0 s)" in reason for _, reason in report.errors)
    assert not list(store.glob("cache/*/*.error.json"))
    report = prepare_store(data, store, FeatureConfig(), jobs=1)  # a higher limit: the files are used
    assert not report.errors and report.n_computed == 4

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr("genrekit.features.pipeline.stream_audio", out_of_memory)
    report = prepare_store(data, tmp_path / "store2", FeatureConfig(), jobs=1)
    assert all("out of memory" in reason for _, reason in report.errors)
    assert not list((tmp_path / "store2").glob("cache/*/*.error.json"))


def test_cli_prepare_max_duration(tmp_path: Path, make_dataset) -> None:
    data = make_dataset(labels=("a", "b"), per_label=1, seconds=4.0)
    result = runner.invoke(app, ["prepare", str(data), "--out", str(tmp_path / "s"), "--max-duration", "2", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("too long") == 2
    assert json.loads((tmp_path / "s" / "store.json").read_text())["n_tracks"] == 0


def test_flac_of_open_length_is_measured_as_it_decodes(tmp_path: Path, rng: np.random.Generator) -> None:
    y = rng.uniform(-0.5, 0.5, 3 * 8000).astype(np.float32)
    path = write_open_length_flac(tmp_path / "open.flac", y, 8000)
    assert sf.info(str(path)).frames == 2**63 - 1  # what libsndfile reports for "unknown"
    assert declared_duration(path) is None
    sf.write(tmp_path / "closed.flac", y, 8000)
    expected = load_audio(tmp_path / "closed.flac", sample_rate=16000)
    # before: refused as 19215358410114.1 minutes long (or, without a limit, "not decodable audio")
    np.testing.assert_array_equal(load_audio(path, sample_rate=16000, max_duration=900), expected)
    np.testing.assert_array_equal(np.concatenate(list(stream_audio(path, sample_rate=16000, max_duration=900))), expected)
    with pytest.raises(AudioTooLongError, match=r"too long \(3\.0 s\); the limit is 2 s"):
        load_audio(path, sample_rate=16000, max_duration=2)
