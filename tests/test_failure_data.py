"""A failure is data from the worker to every output (issue 21 item 2): one corrupt file through predict's table,
JSON and CSV, a library run, the service and prepare's errors list, each showing the path once and the reason
alone, never a message with a path edited in or out."""

from __future__ import annotations

import csv
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import synth_tone, write_random_model
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genrekit.audio import load_audio
from genrekit.classifier import load_model
from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.datasets.store import open_store
from genrekit.datasets.prepare import prepare_store
from genrekit.exceptions import AudioDecodeError, AudioTooLongError, AudioWarning, warning_note
from genrekit.features.pipeline import featurize_file
from genrekit.library.formats import read_results
from genrekit.results import FAILURE_KINDS, PredictionError
from genrekit.serve import create_app

LABELS = ["blues", "classical", "rock"]
CORRUPT = b"RIFF\x24\x00\x00\x00WAVEnot audio at all"
runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", "cnn1", LABELS)


@pytest.fixture
def music(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A folder with one good clip and one corrupt file."""
    root = tmp_path / "music"
    root.mkdir()
    sf.write(root / "good.wav", synth_tone(1, 4.0, 22050, rng), 22050)
    (root / "corrupt.wav").write_bytes(CORRUPT)
    return root


def test_failure_kinds_come_from_the_error_type_and_cause() -> None:
    decode = PredictionError.from_exception("a.wav", AudioDecodeError("a.wav", "not decodable audio", detail="unknown format"))
    assert decode == PredictionError("a.wav", "decode", "not decodable audio (unknown format)") and decode.lasting
    assert PredictionError.from_exception("a.wav", AudioTooLongError("a.wav", "too long (9.0 s)")).kind == "too-long"
    try:
        try:
            raise OSError(5, "Input/output error")
        except OSError as e:
            raise AudioDecodeError("a.wav", "cannot be read") from e
    except AudioDecodeError as e:
        unreadable = PredictionError.from_exception("shown.wav", e)
    assert (unreadable.path, unreadable.kind, unreadable.lasting) == ("shown.wav", "unreadable", False)  # the path given, not the error's
    assert str(decode) == "a.wav: not decodable audio (unknown format)"  # one line for terminals, composed, never parsed
    assert decode.to_dict() == {"path": "a.wav", "error": "not decodable audio (unknown format)", "error_kind": "decode"}
    assert set(FAILURE_KINDS) == {"missing", "unreadable", "decode", "too-long", "out-of-memory", "internal"}


def test_the_worker_returns_the_failure_not_a_message(music: Path) -> None:
    result = featurize_file(music / "corrupt.wav", FeatureConfig())
    assert result.features is None and result.failure is not None
    assert (result.failure.path, result.failure.kind) == (str(music / "corrupt.wav"), "decode")
    assert str(music) not in result.failure.error


def test_predict_table_json_and_csv_show_the_path_once(model_file: Path, music: Path) -> None:
    corrupt = str(music / "corrupt.wav")
    table = runner.invoke(app, ["predict", str(music), "-m", str(model_file), "-j", "1"], terminal_width=200)
    assert table.exit_code == 1
    (row,) = [line for line in table.stdout.splitlines() if "corrupt.wav" in line]  # the table names the file once
    assert "not decodable audio" in row and row.count("corrupt.wav") == 1
    assert f"failed {corrupt}: not decodable audio" in " ".join(table.output.split())

    out = runner.invoke(app, ["predict", str(music), "-m", str(model_file), "-f", "json", "-j", "1"])
    failed = [r for r in json.loads(out.stdout)["results"] if "error" in r]
    assert len(failed) == 1 and failed[0]["path"] == corrupt and failed[0]["error_kind"] == "decode"
    assert failed[0]["error"].startswith("not decodable audio") and corrupt not in failed[0]["error"]

    out = runner.invoke(app, ["predict", str(music), "-m", str(model_file), "-f", "csv", "-j", "1"])
    rows = {r["path"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert rows[corrupt]["error"] == failed[0]["error"] and rows[corrupt]["error_kind"] == "decode"
    assert rows[str(music / "good.wav")]["error"] == "" and rows[str(music / "good.wav")]["genre"] in LABELS


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_library_run_rows_hold_the_reason_and_its_kind(model_file: Path, music: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results{suffix}"
    result = runner.invoke(app, ["predict", str(music), str(music / "gone.wav"), "-m", str(model_file), "--out", str(out), "-j", "1"])
    assert result.exit_code == 1, result.output
    rows = {Path(r["path"]).name: r for r in read_results(out)}
    assert (rows["corrupt.wav"]["error_kind"], rows["gone.wav"]["error_kind"], rows["good.wav"]["error_kind"]) == ("decode", "missing", None)
    assert rows["gone.wav"]["error"] == "no such file or folder"
    assert all(r["path"] not in (r["error"] or "") for r in rows.values())


def test_service_tells_the_uploads_name_and_the_reason(model_file: Path, music: Path) -> None:
    with TestClient(create_app(load_model(model_file))) as client, open(music / "corrupt.wav", "rb") as f:
        response = client.post("/v1/predict", files={"file": ("my song.wav", f, "application/octet-stream")})
    assert response.status_code == 415 and response.json()["error"] == "not_audio"
    assert response.json()["detail"].startswith("“my song.wav” could not be read as audio: not decodable audio")
    failure = response.json()["failure"]
    assert (failure["path"], failure["error_kind"]) == ("my song.wav", "decode") and failure["error"].startswith("not decodable audio")


def test_service_gives_a_too_long_uploads_failure_as_data(model_file: Path, music: Path) -> None:
    with TestClient(create_app(load_model(model_file), max_duration_s=1.0)) as client, open(music / "good.wav", "rb") as f:
        response = client.post("/v1/predict", files={"file": ("long song.wav", f, "audio/wav")})
    assert response.status_code == 422 and response.json()["error"] == "too_long"
    failure = response.json()["failure"]
    assert (failure["path"], failure["error_kind"]) == ("long song.wav", "too-long")
    assert "long song.wav" not in failure["error"] and "at most 1.0 seconds" in failure["error"]


def test_service_errors_about_the_request_have_no_failure(model_file: Path) -> None:
    with TestClient(create_app(load_model(model_file))) as client:
        response = client.post("/v1/predict", files={"song": ("a.wav", b"RIFF", "audio/wav")})
    assert response.json()["error"] == "missing_file" and "failure" not in response.json()


def test_prepare_lists_failures_with_their_kind(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    data = make_dataset(per_label=1, seconds=6.5)
    broken = data / "rock" / "broken.wav"
    broken.write_bytes(CORRUPT)
    out = tmp_path / "store"
    report = prepare_store(data, out, jobs=1)
    ((path, reason),) = report.errors
    assert path == str(broken) and reason.startswith("not decodable audio") and str(broken) not in reason
    with open(out / "errors.csv", encoding="utf-8", newline="") as f:
        assert list(csv.DictReader(f)) == [{"path": path, "kind": "decode", "reason": reason}]
    assert open_store(out).errors == report.errors
    again = prepare_store(data, out, jobs=1)  # the cached failure, read back as data for this path
    assert again.errors == report.errors and again.n_computed == 0


def _truncated(path: Path, rng: np.random.Generator) -> Path:
    """A WAV whose header promises 8 s of which only 4 s are there."""
    full = path.with_name("full-" + path.name)
    sf.write(full, synth_tone(1, 8.0, 22050, rng), 22050, subtype="PCM_16")
    path.write_bytes(full.read_bytes()[: 44 + 2 * 22050 * 4])
    full.unlink()
    return path


def test_a_decoding_note_is_data_too(model_file: Path, tmp_path: Path, rng: np.random.Generator, make_dataset: Callable[..., Path]) -> None:
    """A truncated file's note reaches the prediction, the service and prepare without its path in the words."""
    with pytest.warns(AudioWarning) as caught:
        load_audio(_truncated(tmp_path / "cut.wav", rng), sample_rate=22050)
    warning = caught[0].message
    assert isinstance(warning, AudioWarning) and warning.path == str(tmp_path / "cut.wav")
    assert str(warning) == f"{warning.path}: {warning.note}" and warning_note(warning) == warning.note
    assert pickle.loads(pickle.dumps(warning)).note == warning.note
    result = featurize_file(tmp_path / "cut.wav", FeatureConfig())
    assert result.warnings == (warning.note,) and warning.note.startswith("truncated, header promises 8.00 s")
    prediction = load_model(model_file).predict(tmp_path / "cut.wav")
    assert prediction.warnings == (warning.note,)
    with TestClient(create_app(load_model(model_file))) as client, open(tmp_path / "cut.wav", "rb") as f:
        response = client.post("/v1/predict", files={"file": ("my song.wav", f, "audio/wav")})
    assert response.status_code == 200 and response.json()["warnings"] == [warning.note]
    data = make_dataset(per_label=1, seconds=6.5)
    cut = _truncated(data / "rock" / "cut.wav", rng)
    report = prepare_store(data, tmp_path / "store", jobs=1)
    assert report.warnings == [(str(cut), warning.note)]
