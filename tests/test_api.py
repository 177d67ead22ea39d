"""The Python API of the whole workflow: genrekit.prepare -> train -> evaluate, predict_proba, and the
README's example run as the plain script a user would paste."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genrekit
from genrekit.checkpoint import load_checkpoint
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.classifier import GenreClassifier
from genrekit.runtime.torch import TorchRunner
from genrekit.datasets.store import open_store

from conftest import REPO, synth_tone, write_random_model

LABELS = ("blues", "classical", "rock")


def readme_example() -> str:
    """The code block that follows the ``api-example`` marker in README.md, exactly as a user copies it."""
    found = re.search(r"<!-- api-example\b.*?-->\s*```python\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    assert found, "README.md has no python block after an <!-- api-example --> marker"
    return found.group(1)


@pytest.mark.slow
def test_readme_example_runs_as_a_plain_script(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the example's tempfile.mkdtemp() lands here
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "24 tracks, 48 segments"
    (run,) = tmp_path.glob("*/runs/tones")
    assert {"model.pt", "metrics.csv", "history.png"} <= {p.name for p in run.iterdir()}
    figure = run / "eval-test" / "confusion_matrix.png"
    assert str(figure) in done.stdout and figure.read_bytes().startswith(b"\x89PNG")
    assert done.stdout.splitlines()[-1].startswith("(2, 3) ")


def test_import_genrekit_and_the_workflow_names_do_not_import_torch() -> None:
    code = "import sys, genrekit\nfor n in ('prepare', 'train', 'evaluate', 'SplitConfig', 'FeatureConfig'): getattr(genrekit, n)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api") / "data"
    rng = np.random.default_rng(0)
    for i, label in enumerate(LABELS):
        (root / label).mkdir(parents=True)
        for k in range(4):
            sf.write(root / label / f"{label}.{k:05d}.wav", synth_tone(i, 3.0, 22050, rng), 22050)
    return root


@pytest.fixture(scope="module")
def trained(dataset: Path) -> GenreClassifier:
    """One epoch of cnn1: ``config`` says 3 epochs, the keyword option overrides it."""
    store = dataset.parent / "store"
    genrekit.prepare(dataset, store, jobs=1)
    config = genrekit.TrainConfig(model="cnn1", epochs=3, batch_size=8, num_threads=1,
                                  split=genrekit.SplitConfig(val_fraction=0.25, test_fraction=0.25))
    return genrekit.train(store, config, epochs=1, run_dir=dataset.parent / "runs" / "one", device="cpu")


def test_prepare_takes_a_feature_kind_or_a_whole_config(dataset: Path, tmp_path: Path) -> None:
    config = FeatureConfig(audio=AudioConfig(segment_seconds=1.5, hop_seconds=1.5))
    report = genrekit.prepare(dataset, tmp_path / "short", features=config, jobs=1)
    assert report.n_tracks == 12 and report.n_segments == 24 and not report.errors
    assert open_store(tmp_path / "short").config == config
    with pytest.raises(genrekit.ParameterError, match="nope"):
        genrekit.prepare(dataset, tmp_path / "bad", features="nope")


def test_train_returns_the_fitted_model_of_its_run(trained: GenreClassifier, dataset: Path) -> None:
    result = trained.train_result
    assert result is not None and result.run_dir == dataset.parent / "runs" / "one"
    assert len(result.history) == 1  # epochs=1 overrode the config's 3
    assert trained.classes_ == sorted(LABELS)
    saved = load_checkpoint(result.run_dir / "model.pt")
    audio = synth_tone(2, 6.0, 22050, np.random.default_rng(1))
    np.testing.assert_allclose(trained.predict_proba(audio, sample_rate=22050), GenreClassifier(TorchRunner(saved)).predict_proba(audio, sample_rate=22050), atol=1e-5)


def test_train_refuses_unknown_options_before_making_a_run(tmp_path: Path) -> None:
    with pytest.raises(genrekit.ParameterError, match=r"Got epoch instead"):
        genrekit.train(tmp_path / "store", epoch=2, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_evaluate_a_trained_model_or_its_run_folder(trained: GenreClassifier, tmp_path: Path) -> None:
    assert trained.train_result is not None
    report = genrekit.evaluate(trained, partition="val", out_dir=tmp_path / "a")
    again = genrekit.evaluate(trained.train_result.run_dir, partition="val", out_dir=tmp_path / "b")
    assert report.metrics == again.metrics and report.metrics["n_tracks"] == 3
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["track_accuracy"] == report.metrics["track_accuracy"] == report.summary["track_accuracy"]
    assert set(report.evaluation.per_genre) == set(LABELS)
    assert report.figures == {"confusion_matrix": tmp_path / "a" / "confusion_matrix.png"}
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in report.figures.values())


def test_evaluate_refuses_a_model_that_was_not_trained_here(tmp_path: Path) -> None:
    model = GenreClassifier(TorchRunner(load_checkpoint(write_random_model(tmp_path / "model.pt"))), name="model.pt")
    with pytest.raises(genrekit.ParameterError, match="run folder"):
        genrekit.evaluate(model)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> GenreClassifier:
    labels = ["rock", "blues", "jazz"]  # not sorted: columns follow classes_, not the alphabet
    return GenreClassifier(TorchRunner(load_checkpoint(write_random_model(tmp_path_factory.mktemp("m") / "model.pt", labels=labels))))


def test_predict_proba_rows_follow_classes_and_match_predict(classifier: GenreClassifier, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], synth_tone(i, 6.0, 22050, rng), 22050)
    proba = classifier.predict_proba(paths)
    assert proba.shape == (3, 3) and classifier.classes_ == ["rock", "blues", "jazz"]
    for row, path in zip(proba, paths):
        expected = classifier.predict(path).probabilities
        assert row.tolist() == [expected[c] for c in classifier.classes_]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert classifier.predict_proba(str(paths[1])).tolist() == proba[1:2].tolist()  # one path: one row
    y, rate = sf.read(paths[2], dtype="float32")
    assert classifier.predict_proba(y, sample_rate=rate).shape == (1, 3)
    assert classifier.predict_proba([]).shape == (0, 3)


def test_predict_proba_of_silence_is_a_zero_row_and_of_bad_audio_an_error(classifier: GenreClassifier, tmp_path: Path) -> None:
    silent = classifier.predict_proba(np.zeros(22050 * 6, dtype=np.float32), sample_rate=22050)
    assert silent.tolist() == [[0.0, 0.0, 0.0]]
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(genrekit.AudioDecodeError, match="bad.wav"):
        classifier.predict_proba([tmp_path / "bad.wav"])


def test_the_shipped_model_gives_probabilities_in_its_class_order() -> None:
    model = genrekit.load_model()
    proba = model.predict_proba(synth_tone(3, 6.0, 16000, np.random.default_rng(0)), sample_rate=16000)
    assert proba.shape == (1, len(model.classes_)) and abs(proba.sum() - 1) < 1e-5
    assert model.classes_[int(proba.argmax())] == model.predict(synth_tone(3, 6.0, 16000, np.random.default_rng(0)), sample_rate=16000).genre
