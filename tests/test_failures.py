"""Bad input never crashes genrekit: every corrupt file gives a named error or warning, and a batch goes on."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from genrekit.audio import load_segments
from genrekit.cli import app
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.exceptions import AudioDecodeError, AudioWarning, GenrekitError
from genrekit.datasets.store import open_store

# What each file of ../shared/data/bad-audio must give: ("error" | "warning" | "ok", words of the reason).
from genrekit.datasets.prepare import process_file
EXPECTED = {
    "empty.wav": ("error", "empty file"),
    "jazz.00054.wav": ("error", "not decodable audio"),
    "truncated.wav": ("warning", "truncated, header promises 30.00 s"),
    "not_audio.mp3": ("error", "not decodable audio"),
    "random_bytes.ogg": ("error", "not decodable audio"),
    "nan_samples.wav": ("error", "NaN or infinite"),
    "one_sample.wav": ("error", "too short"),
    "silence.wav": ("ok", ""),
}
runner = CliRunner()
GOOD_CLIPS = ("blues/blues.00000.ogg", "reggae/reggae.00014.au", "rock/rock.00001.ogg")


def _bad_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "bad-audio").iterdir())
    assert files, "bad-audio is empty"
    return files


@pytest.mark.shared_data
def test_shared_data_bad_audio_gives_named_errors_or_warnings(shared_data: Path) -> None:
    for path in _bad_files(shared_data):
        outcome, words = EXPECTED.get(path.name, ("error or warning", ""))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                segments, _ = load_segments(path, AudioConfig())
                got, message = "ok", " ".join(str(w.message) for w in caught if issubclass(w.category, AudioWarning))
            except GenrekitError as e:  # anything else escapes and fails the test
                assert isinstance(e, AudioDecodeError), path
                got, message = "error", str(e)
        if got == "ok" and message:
            got = "warning"
        assert got == outcome or (outcome == "error or warning" and got != "ok"), f"{path.name}: {got} ({message})"
        assert words in message and (got == "ok" or message.startswith(str(path))), f"{path.name}: {message}"


@pytest.mark.shared_data
def test_shared_data_bad_audio_through_process_file(shared_data: Path) -> None:
    for path in _bad_files(shared_data):
        outcome, words = EXPECTED.get(path.name, ("error", ""))
        result = process_file(path, FeatureConfig())
        if outcome == "error":
            assert result.features is None and result.failure is not None, path.name
            assert result.failure.path == str(path) and words in result.failure.error, result.failure
            assert "Error:" not in result.failure.error, f"unexpected exception type: {result.failure}"
        else:
            assert result.failure is None and result.features is not None, path.name
            assert np.isfinite(result.features).all()
            assert any(words in w for w in result.warnings) if outcome == "warning" else not result.warnings


@pytest.mark.shared_data
@pytest.mark.parametrize("scaling", ["seed", "standard"])
def test_shared_data_silence_gives_finite_features(shared_data: Path, scaling: str) -> None:
    result = process_file(shared_data / "bad-audio" / "silence.wav", FeatureConfig(scaling=scaling))  # type: ignore[arg-type]
    assert result.failure is None and result.features is not None
    assert result.features.shape == (10, 128, 130) and np.isfinite(result.features).all()


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_data_prepare_batch_with_bad_files(shared_data: Path, tmp_path: Path) -> None:
    """The issue's check: bad files named with a reason, good ones stored, exit 0, no traceback; --strict exits 1."""
    data = tmp_path / "batch"
    (data / "mixed").mkdir(parents=True)
    for path in _bad_files(shared_data):
        shutil.copy(path, data / "mixed" / path.name)
    for clip in GOOD_CLIPS:
        shutil.copy(shared_data / "gtzan-dev" / clip, data / "mixed")
    out = tmp_path / "store"

    # in-process (the worker pool and `python -m genrekit` are exercised by test_cli_data's real-data run)
    run = runner.invoke(app, ["prepare", str(data), "--out", str(out), "--jobs", "1"], env={"COLUMNS": "80"})
    output = run.output
    assert run.exit_code == 0 and run.exception is None, output
    assert "Traceback" not in output
    for name, (outcome, words) in EXPECTED.items():
        if outcome == "ok":
            continue
        lines = [line for line in output.splitlines() if f"mixed/{name}" in line]
        assert any(words in line for line in lines), f"{name} not reported with '{words}':\n{output}"
        assert any(line.startswith("skipped" if outcome == "error" else "warning:") for line in lines), output
    assert "6 skipped" in output

    store = open_store(out)
    stored = {t.path.name for t in store.tracks}
    assert stored == {Path(c).name for c in GOOD_CLIPS} | {"silence.wav", "truncated.wav"}
    assert all((store.track_ids == t.track_id).sum() == (1 if t.path.name == "truncated.wav" else 10) for t in store.tracks)
    assert {Path(p).name for p, _ in store.errors} == {n for n, (o, _) in EXPECTED.items() if o == "error"}

    strict = runner.invoke(app, ["prepare", str(data), "--out", str(out), "--strict"])
    assert strict.exit_code == 1 and "up to date" in strict.output and "Traceback" not in strict.output
    assert "not decodable audio" in strict.output


@pytest.mark.shared_data
def test_shared_data_silence_gets_no_genre_from_the_shipped_model(shared_data: Path) -> None:
    """30 s of digital silence was "classical 75.7 %": now a note, no genre, flagged uncertain."""
    from genrekit import load_model

    result = load_model().predict(shared_data / "bad-audio" / "silence.wav")
    assert result.genre is None and result.uncertain and any("silent" in w for w in result.warnings)
