"""Inference API and the predict/models/spectrogram/demo commands, on synthesized audio and a random-weight model."""

from __future__ import annotations

import csv
import gc
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from genrekit import load_model
from genrekit.checkpoint import Checkpoint, save_checkpoint
from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.datasets.discover import GTZAN_GENRES
from genrekit.exceptions import AudioDecodeError, ModelNotFoundError
from genrekit.classifier import GenreClassifier, Prediction, PredictionError
from genrekit.runtime.torch import TorchRunner
from genrekit.models.folding import FoldedConvNet
from genrekit.models import build_model

from conftest import synth_tone, write_random_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = {"validation": {"track_accuracy": 0.5, "track_accuracy_ci95": [0.4, 0.6]}, "training_data": "synthetic"}
    return write_random_model(tmp_path_factory.mktemp("model") / "model.pt", metadata=meta)


@pytest.fixture
def clips(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    out = {}
    for name, seconds, sr, channels in (("a.wav", 30.0, 22050, 1), ("long.flac", 95.0, 44100, 2), ("b.ogg", 4.0, 16000, 1)):
        y = synth_tone(3, seconds, sr, rng)
        if channels == 2:
            y = np.stack([y, 0.5 * y], axis=1)
        out[name] = tmp_path / "music" / name
        out[name].parent.mkdir(exist_ok=True)
        sf.write(out[name], y, sr)
    (tmp_path / "music" / "broken.mp3").write_text("this is not audio")
    out["broken.mp3"] = tmp_path / "music" / "broken.mp3"
    return out


def test_predict_file_gives_full_distribution_and_whole_track_timeline(model_file: Path, clips: dict[str, Path]) -> None:
    clf = load_model(model_file)
    result = clf.predict(clips["long.flac"])
    assert set(result.probabilities) == set(GTZAN_GENRES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert result.genre == max(result.probabilities, key=result.probabilities.get)
    assert len(result.segments) == 31  # 95 s analysed over its whole length, 3 s windows
    assert result.segments[-1].start_s == pytest.approx(90.0)
    assert result.duration_s == pytest.approx(95.0, abs=0.01)
    mean = np.mean([[s.probabilities[g] for g in GTZAN_GENRES] for s in result.segments], axis=0)
    assert np.allclose(mean, [result.probabilities[g] for g in GTZAN_GENRES], atol=1e-6)  # soft voting


def _trained_like(name: str, input_shape: tuple[int, int], *, bn_scale_sign: float = 1.0) -> Checkpoint:
    """A random model whose BatchNorms carry non-trivial running statistics and affine parameters, as after training."""
    torch.manual_seed(0)
    model = build_model(name, input_shape, 10)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-1, 1)
                layer.running_var.uniform_(0.1, 3)
                layer.weight.uniform_(0.2, 2).mul_(bn_scale_sign)
                layer.bias.uniform_(-1, 1)
    config = FeatureConfig(n_mels=input_shape[0])
    return Checkpoint(name, {}, model.state_dict(), list(GTZAN_GENRES), config)


@pytest.mark.parametrize(("name", "input_shape"), [("cnn1", (128, 130)), ("cnn2", (128, 130)), ("cnn2", (96, 130))])
def test_classifier_probabilities_are_the_checkpoint_models(name: str, input_shape: tuple[int, int], rng: np.random.Generator) -> None:
    """The classifier folds BatchNorm into the next layer and runs oneDNN layouts; its probabilities are the model's."""
    checkpoint = _trained_like(name, input_shape)
    classifier = GenreClassifier(TorchRunner(checkpoint))
    assert isinstance(classifier.runner.network, FoldedConvNet)
    for n in (1, 12, 33):  # 33: more than one model call
        features = rng.uniform(-80, 0, (n, *input_shape)).astype(np.float32)
        with torch.inference_mode():
            expected = torch.softmax(checkpoint.build()(torch.from_numpy(features)), dim=-1).numpy()
        np.testing.assert_allclose(classifier.predict_proba_features(features), expected, atol=1e-5)


def test_batchnorm_that_does_not_commute_with_pooling_is_not_folded(rng: np.random.Generator) -> None:
    """A negative BatchNorm scale turns max-pooling into min-pooling: that model runs as trained, unfolded."""
    checkpoint = _trained_like("cnn2", (128, 130), bn_scale_sign=-1.0)
    classifier = GenreClassifier(TorchRunner(checkpoint))
    assert not isinstance(classifier.runner.network, FoldedConvNet)
    features = rng.uniform(-80, 0, (3, 128, 130)).astype(np.float32)
    with torch.inference_mode():
        expected = torch.softmax(checkpoint.build()(torch.from_numpy(features)), dim=-1).numpy()
    np.testing.assert_allclose(classifier.predict_proba_features(features), expected, atol=1e-5)


def test_predict_of_a_decoded_array_matches_predict_file(model_file: Path, clips: dict[str, Path]) -> None:
    clf = load_model(model_file)
    y, sr = sf.read(clips["a.wav"], dtype="float32")
    from_array = clf.predict(y.T, sample_rate=sr)
    from_file = clf.predict(clips["a.wav"])
    assert from_array.genre == from_file.genre
    for g in GTZAN_GENRES:
        assert from_array.probabilities[g] == pytest.approx(from_file.probabilities[g], abs=1e-5)


def test_predict_many_keeps_order_and_reports_bad_files(model_file: Path, clips: dict[str, Path]) -> None:
    clf = load_model(model_file)
    paths = [clips["a.wav"], clips["broken.mp3"], clips["b.ogg"]]
    results = list(clf.predict_many(paths, jobs=1))
    assert [r.path for r in results] == [str(p) for p in paths]
    assert isinstance(results[0], Prediction) and isinstance(results[2], Prediction)
    assert isinstance(results[1], PredictionError) and results[1].path.endswith("broken.mp3") and results[1].kind == "decode"


def test_predict_raises_named_error_for_bad_file(model_file: Path, clips: dict[str, Path]) -> None:
    with pytest.raises(AudioDecodeError, match="broken.mp3"):
        load_model(model_file).predict(clips["broken.mp3"])


def test_unknown_model_lists_available() -> None:
    with pytest.raises(ModelNotFoundError, match="available models"):
        load_model("no-such-model")


def test_json_schema(model_file: Path, clips: dict[str, Path]) -> None:
    d = load_model(model_file).predict(clips["b.ogg"]).to_dict(top_k=2, segments=True)
    assert set(d) >= {"path", "genre", "confidence", "top_k", "probabilities", "duration_s", "n_segments", "segments"}
    assert len(d["top_k"]) == 2 and d["top_k"][0]["genre"] == d["genre"]
    assert d["n_segments"] == len(d["segments"]) == 1
    assert set(d["segments"][0]) == {"start_s", "end_s", "genre", "confidence", "probabilities"}


def test_cli_predict_folder_json_exit_code_names_failure(model_file: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", str(tmp_path / "music"), "--model", str(model_file), "--format", "json", "--jobs", "1"])
    assert result.exit_code == 1  # one file failed
    assert "Traceback" not in result.output
    payload = json.loads(result.stdout)
    assert len(payload["results"]) == 4
    errors = [r for r in payload["results"] if "error" in r]
    assert len(errors) == 1 and "broken.mp3" in errors[0]["path"]
    assert payload["model"]["labels"] == list(GTZAN_GENRES)


def test_cli_predict_csv_segments_and_plots(model_file: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "seg.csv"
    plots = tmp_path / "plots"
    result = runner.invoke(
        app, ["predict", str(clips["a.wav"]), str(clips["b.ogg"]), "-m", str(model_file), "-f", "csv", "--segments", "--out", str(out), "--plot", str(plots), "-j", "1"]
    )
    assert result.exit_code == 2 and "--segments or --plot" in result.output  # a .csv --out is a results file: one row per track
    result = runner.invoke(app, ["predict", str(clips["a.wav"]), str(clips["b.ogg"]), "-m", str(model_file), "-f", "csv", "--segments", "--plot", str(plots), "-j", "1"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 10 + 1
    assert {f"p_{g}" for g in GTZAN_GENRES} <= set(rows[0])
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]
    assert (plots / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_predict_table(model_file: Path, clips: dict[str, Path]) -> None:
    result = runner.invoke(app, ["predict", str(clips["a.wav"]), "-m", str(model_file), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "a.wav" in result.output and "top 3" in result.output


@pytest.mark.parametrize("model", ["model_file", "missing"])
def test_cli_predict_restores_threads_and_collector(model: str, model_file: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    """predict runs the model on one thread with the collector frozen; an in-process caller gets both back, also on failure."""
    threads = torch.get_num_threads()
    path = model_file if model == "model_file" else tmp_path / "missing.pt"
    result = runner.invoke(app, ["predict", str(clips["b.ogg"]), "-m", str(path)])
    assert result.exit_code == (0 if model == "model_file" else 2), result.output
    assert torch.get_num_threads() == threads
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_cli_spectrogram(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "spec"
    result = runner.invoke(app, ["spectrogram", str(clips["b.ogg"]), "--out", str(out), "--per-segment"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["b_seg000.png"]
    result = runner.invoke(app, ["spectrogram", str(clips["a.wav"]), "--out", str(out)])
    assert result.exit_code == 0 and (out / "a.png").exists()


def test_cli_demo_writes_html_and_plots(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--model", str(model_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    shipped = [p for p in (Path(__file__).parents[1] / "src/genrekit/samples").iterdir() if p.suffix in {".ogg", ".mp3"}]
    assert len(list((out / "timelines").glob("*.png"))) == len(shipped)
    page = (out / "index.html").read_text()
    assert all(p.name in page for p in shipped)
    assert "index.html" in result.output


def test_silent_input_gets_a_note_instead_of_a_genre(model_file: Path, tmp_path: Path) -> None:
    clf = load_model(model_file)
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(22050 * 9, dtype=np.float32), 22050)
    for result in (clf.predict(path), clf.predict(np.zeros(22050 * 9, dtype=np.float32), sample_rate=22050)):
        assert result.genre is None and result.silent and result.uncertain
        assert result.confidence == 0.0 and result.top(3) == []
        assert all(s.genre is None for s in result.segments)
    assert any("silent" in w for w in clf.predict(path).warnings)
    out = runner.invoke(app, ["predict", str(path), "--model", str(model_file), "--format", "json"])
    assert json.loads(out.stdout)["results"][0]["genre"] is None


def test_silent_segments_take_no_part_in_the_vote(model_file: Path, rng: np.random.Generator) -> None:
    """Music followed by silence: the vote equals that of the music alone; the silent segments are marked."""
    clf = load_model(model_file)
    music = synth_tone(2, 9.0, 22050, rng)
    alone = clf.predict(music, sample_rate=22050)
    padded = clf.predict(np.concatenate([music, np.zeros(22050 * 9, dtype=np.float32)]), sample_rate=22050)
    assert [s.genre is None for s in padded.segments] == [False] * 3 + [True] * 3
    assert padded.genre == alone.genre
    assert padded.probabilities == pytest.approx(alone.probabilities, abs=1e-6)


def test_uncertain_follows_the_models_recorded_threshold(model_file: Path, rng: np.random.Generator, tmp_path: Path) -> None:
    """A random-weight model is never sure: with a threshold above its top probability every result is flagged."""
    ckpt = load_model(model_file).checkpoint
    y = synth_tone(1, 6.0, 22050, rng)
    assert not GenreClassifier(TorchRunner(ckpt)).predict(y, sample_rate=22050).uncertain  # no threshold recorded: never flagged
    strict = Checkpoint(ckpt.model_name, ckpt.model_options, ckpt.state_dict, ckpt.labels, ckpt.feature_config,
                        metadata={**ckpt.metadata, "calibration": {"uncertain_below": 0.99}})
    result = GenreClassifier(TorchRunner(strict)).predict(y, sample_rate=22050)
    assert result.uncertain and result.to_dict()["uncertain"] is True
    path = tmp_path / "strict.pt"
    save_checkpoint(strict, path)
    sf.write(tmp_path / "a.wav", y, 22050)
    out = runner.invoke(app, ["predict", str(tmp_path / "a.wav"), "--model", str(path), "--format", "csv"])
    row = next(csv.DictReader(io.StringIO(out.stdout)))
    assert row["uncertain"] == "true"


def test_models_prints_a_model_card_for_every_shipped_model() -> None:
    """Readable: no raw dicts or machine paths; each model with its protocol and accuracy interval."""
    out = runner.invoke(app, ["models"], terminal_width=160)
    assert out.exit_code == 0, out.output
    for name in ("default", "zero-shot"):
        assert name in out.stdout
    assert "cross-validation" in out.stdout and "%" in out.stdout and "[" in out.stdout
    assert "{" not in out.stdout and "/work/" not in out.stdout and "/root/" not in out.stdout
    default, zero_shot = load_model("default").describe(), load_model("zero-shot").describe()
    assert default["validation"]["track_accuracy"] > zero_shot["validation"]["track_accuracy"]
    assert default["validation"]["macro_recall"] > zero_shot["validation"]["macro_recall"]
