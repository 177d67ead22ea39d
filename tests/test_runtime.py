"""Runtimes as an interface (genrekit.runtime): a third runtime is one class plus one registration, the arrow points
classifier -> runtime, and the shipped models classify without importing PyTorch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import genrekit.runtime as runtime
from genrekit import load_model
from genrekit.checkpoint import load_checkpoint
from genrekit.classifier import GenreClassifier
from genrekit.config import FeatureConfig
from genrekit.exceptions import ParameterError
from genrekit.features.pipeline import featurize_signal
from genrekit.results import PredictionError
from genrekit.runtime import ModelSource, Rebuild, available_runtimes, register_runtime

from conftest import synth_tone, write_random_model

LABELS = ["low", "high"]
SAMPLE_RATE = 22050


class NumpyRunner:
    """A linear model over each mel band's mean log-mel level, in NumPy: the smallest runner there is."""

    backend = "numpy"
    runtime = "NumPy, float32"
    device = "cpu"
    model_name = "numpy-linear"
    has_tags = False
    checkpoint = None

    def __init__(self, path: str) -> None:
        self.path = path
        with np.load(path) as file:
            self.weights = file["weights"]
            self.labels = [str(label) for label in file["labels"]]
        self.feature_config = self.input_config = FeatureConfig()
        self.metadata: Mapping[str, Any] = {"description": "bass against treble"}

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, None]:
        logits = features.mean(axis=-1) @ self.weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32), None

    def rebuild(self, threads: int = 1) -> Rebuild:
        return NumpyRunner, (self.path,), {}


def _load_numpy(source: ModelSource, *, device: str, threads: int) -> NumpyRunner:
    assert source.path is not None
    return NumpyRunner(str(source.path))


@pytest.fixture
def numpy_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """"numpy" registered for this test only; the file it reads: "low" scores the lower half of the mel bands, "high" the upper."""
    monkeypatch.setattr(runtime, "_RUNTIMES", dict(runtime._RUNTIMES))
    register_runtime("numpy", _load_numpy, prefers=lambda source: source.path is not None and source.path.suffix == ".npz")
    n_mels = FeatureConfig().n_mels
    ramp = np.linspace(-1.0, 1.0, n_mels, dtype=np.float32)
    path = tmp_path / "linear.npz"
    np.savez(path, weights=np.stack([-ramp, ramp], axis=1) * 0.5, labels=np.array(LABELS))
    return path


def _tone(hz: float, seconds: float = 7.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_a_registered_numpy_runtime_classifies_through_genre_classifier(numpy_runtime: Path) -> None:
    assert "numpy" in available_runtimes()
    model = load_model(numpy_runtime, backend="numpy")
    assert isinstance(model, GenreClassifier) and isinstance(model.runner, NumpyRunner)
    assert (model.backend, model.runtime, model.device, model.classes_) == ("numpy", "NumPy, float32", "cpu", LABELS)
    described = model.describe()
    assert described["architecture"] == "numpy-linear" and described["runtime"] == "NumPy, float32" and described["description"] == "bass against treble"
    low, high = model.predict(_tone(110.0), sample_rate=SAMPLE_RATE), model.predict(_tone(6000.0), sample_rate=SAMPLE_RATE)
    assert (low.genre, high.genre) == ("low", "high") and low.tags is None
    # The classifier's soft vote is the mean of the runner's segment probabilities.
    features, _, silent = featurize_signal(_tone(110.0), model.input_config)
    expected = model.runner.segment_outputs(features)[0][~silent].mean(axis=0)
    np.testing.assert_allclose([low.probabilities[c] for c in LABELS], expected / expected.sum(), atol=1e-6)
    assert len(low.segments) == len(features)


def test_auto_takes_a_runtime_that_prefers_the_file_and_workers_rebuild_it(numpy_runtime: Path, tmp_path: Path) -> None:
    model = load_model(numpy_runtime)  # backend="auto": the numpy runtime prefers .npz files
    assert model.backend == "numpy"
    import soundfile as sf

    paths = []
    for i, hz in enumerate((110.0, 6000.0, 220.0)):
        paths.append(tmp_path / f"t{i}.wav")
        sf.write(paths[-1], _tone(hz, 4.0), SAMPLE_RATE)
    here = [r.probabilities for r in model.predict_many(paths, jobs=1)]
    workers = list(model.predict_many(paths, jobs=2))  # each worker builds its runner from NumpyRunner.rebuild()
    assert [r.genre for r in workers] == ["low", "high", "low"]
    for a, b in zip(here, workers):
        assert a == pytest.approx(b.probabilities, abs=1e-6)


def test_backend_names_come_from_the_registry(numpy_runtime: Path) -> None:
    with pytest.raises(ParameterError, match=r"The 'backend' parameter must be one of auto, torch, onnxruntime or numpy\. Got 'tensorflow' instead\."):
        load_model("default", backend="tensorflow")
    with pytest.raises(ParameterError, match="'auto' is the choice among them"):
        register_runtime("auto", _load_numpy)


def test_predict_featurized_is_predict_on_features_computed_elsewhere(tmp_path: Path) -> None:
    import soundfile as sf

    from genrekit.features.pipeline import FileResult, featurize_file

    model = load_model("zero-shot")
    clip = tmp_path / "clip.wav"
    sf.write(clip, synth_tone(4, 6.0, 16000, np.random.default_rng(0)), 16000)
    remote = model.predict_featurized(featurize_file(str(clip), model.input_config))
    local = model.predict(clip)
    assert remote.genre == local.genre and remote.probabilities == pytest.approx(local.probabilities, abs=1e-6)
    failure = PredictionError(str(clip), "unreadable", "cannot be read")
    assert model.predict_featurized(FileResult(str(clip), failure=failure)) == failure


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def test_runtime_modules_never_import_the_classifier() -> None:
    """classifier -> runtime: a runtime that imported the classifier would tie every runtime to it again."""
    code = "import sys, genrekit.runtime.onnx, genrekit.runtime.torch, genrekit.runtime.device; print('genrekit.classifier' in sys.modules)"
    assert _python(code) == "False"


def test_the_shipped_models_classify_without_importing_torch() -> None:
    code = (
        "import sys, numpy as np, genrekit\n"
        "y = np.sin(np.arange(16000 * 4) / 7).astype(np.float32)\n"
        "for name in ('default', 'zero-shot'):\n"
        "    m = genrekit.load_model(name)\n"
        "    assert m.predict_proba(y, sample_rate=16000).shape == (1, 10) and m.describe()['runtime'].startswith('onnxruntime')\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'torch' or k == 'genrekit.runtime.torch'))"
    )
    assert _python(code) == "[]"


def test_a_torch_runners_worker_copy_sets_its_threads(tmp_path: Path) -> None:
    """Engines leave PyTorch's process-wide thread count to the runner's rebuild (the Ray engine's model tasks)."""
    import torch

    from genrekit.runtime.torch import TorchRunner

    runner = TorchRunner(load_checkpoint(write_random_model(tmp_path / "model.pt")))
    factory, args, kwargs = runner.rebuild(threads=2)
    before = torch.get_num_threads()
    try:
        copy = factory(*args, **kwargs)
        assert torch.get_num_threads() == 2 and isinstance(copy, TorchRunner)
    finally:
        torch.set_num_threads(before)
