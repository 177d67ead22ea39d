"""Model files from elsewhere: malformed metadata is one CheckpointError line, checked before anything is allocated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_random_model
from genrekit.checkpoint import load_checkpoint
from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.exceptions import CheckpointError
from genrekit.classifier import GenreClassifier
from genrekit.runtime.torch import TorchRunner
from genrekit.model_metadata import validate_model_metadata

LABELS = ["blues", "classical", "rock"]


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("labels", "config", "n_outputs", "fault"),
    [
        (LABELS, {"n_fft": 2**30}, None, "'n_fft' parameter must be an integer in (0, 65536]"),
        (LABELS, {"n_mels": 1024, "hop_length": 1}, None, "log-mel"),
        (LABELS, {"audio": {"segment_seconds": 1e6}}, None, "segment_seconds"),
        (LABELS, {"bogus": 1}, None, "Unknown feature config keys bogus"),
        (LABELS, {1: 2}, None, "feature config"),
        (LABELS, [1, 2], None, "must be a JSON object"),
        (LABELS, {}, 10, "outputs 10 classes but the model has 3 labels"),
        ("blues", {}, None, "labels must be a list"),
        (["blues", 3], {}, None, "non-empty strings"),
        (["rock", "rock"], {}, None, "distinct"),
        ([], {}, None, "labels must be a list"),
    ],
)
def test_bad_metadata_is_one_checkpoint_error(labels: object, config: object, n_outputs: int | None, fault: str) -> None:
    with pytest.raises(CheckpointError) as error:
        validate_model_metadata(labels, config, n_outputs, "m.onnx")
    assert _one_line(error).startswith("m.onnx: ") and fault in str(error.value)


def test_good_metadata_gives_labels_and_config() -> None:
    labels, config = validate_model_metadata(LABELS, FeatureConfig().to_dict(), 3, "m.pt")
    assert labels == LABELS and config == FeatureConfig()


def _edited(tmp_path: Path, **changes: object) -> Path:
    """A random cnn1 checkpoint with some payload entries replaced (``None``: removed)."""
    path = write_random_model(tmp_path / "model.pt", labels=LABELS)
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"labels": None}, "without labels"),
        ({"model_options": None}, "without model_options"),
        ({"labels": ["a", "b"]}, "cannot hold this model file's weights"),  # before: RuntimeError at build
        ({"model_options": {"bogus": 1}}, "cannot hold this model file's weights"),  # before: TypeError
        ({"state_dict": {"x": "not a tensor"}}, "must hold tensors"),
        ({"feature_config": {**FeatureConfig().to_dict(), "n_fft": 2**30}}, "n_fft"),  # before: GBs at predict
        ({"metadata": [1]}, "metadata must be a JSON object"),
    ],
)
def test_malformed_checkpoint_is_one_checkpoint_error(tmp_path: Path, changes: dict[str, object], fault: str) -> None:
    path = _edited(tmp_path, **changes)
    with pytest.raises(CheckpointError) as error:
        GenreClassifier(TorchRunner(load_checkpoint(path)))
    assert fault in _one_line(error)


def test_cli_names_the_fault_in_one_line(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    path = _edited(tmp_path, labels=["a", "b"])
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros(22050, dtype=np.float32), 22050)
    result = CliRunner().invoke(app, ["predict", str(song), "--model", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot hold this model file's weights" in result.output


def test_unreadable_checkpoint_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_random_model(tmp_path / "model.pt", labels=LABELS)

    def denied(*args: object, **kwargs: object) -> None:  # chmod 0 is no test under root, which reads any file
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "cannot be read (permission denied)" in _one_line(error) and "not a genrekit model" not in str(error.value)


def _onnx_with(tmp_path: Path, **props: str) -> Path:
    """An exported cnn1 model whose ``genrekit.*`` metadata_props are replaced by ``props``."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from genrekit.runtime.export import export_onnx

    path = export_onnx(load_checkpoint(write_random_model(tmp_path / "model.pt", labels=LABELS)), tmp_path / "model.onnx")
    graph = onnx.load(path)
    values = {p.key: p.value for p in graph.metadata_props}
    values.update({f"genrekit.{key}": value for key, value in props.items()})
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, values)
    onnx.save(graph, path)
    return path


@pytest.mark.parametrize(
    ("props", "fault"),
    [
        ({"labels": "[not json"}, "'genrekit.labels' is not valid JSON"),  # before: JSONDecodeError
        ({"labels": '["a", "b"]'}, "outputs 3 classes but the model has 2 labels"),  # before: IndexError at predict
        ({"feature_config": '{"n_fft": 1073741824}'}, "n_fft"),  # before: 4.5 GB at predict
        ({"feature_config": '{"n_ffts": 512}'}, "Unknown feature config keys n_ffts"),  # before: TypeError
    ],
)
def test_malformed_onnx_metadata_is_one_checkpoint_error(tmp_path: Path, props: dict[str, str], fault: str) -> None:
    from genrekit import load_model

    path = _onnx_with(tmp_path, **props)
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert _one_line(error).startswith(str(path)) and fault in str(error.value)


def test_validation_imports_neither_torch_nor_onnxruntime() -> None:
    """Both loaders (the torch-free onnxruntime one too) call the same checks."""
    import subprocess
    import sys

    code = "import sys, genrekit.model_metadata; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnxruntime')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-1000:]
