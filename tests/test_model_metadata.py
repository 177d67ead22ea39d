"""Model files from elsewhere: malformed metadata is one CheckpointError line, checked before anything is allocated."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_random_model
from genrekit.checkpoint import load_checkpoint
from genrekit.cli import app
from genrekit.config import FeatureConfig
from genrekit.exceptions import CheckpointError, ModelNotFoundError
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


def _failing_read(monkeypatch: pytest.MonkeyPatch, path: Path, error: OSError) -> None:
    """Reading ``path`` raises ``error`` (chmod 0 is no test under root, which reads any file; EIO cannot be made)."""
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise error
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_unreadable_checkpoint_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_random_model(tmp_path / "model.pt", labels=LABELS)
    _failing_read(monkeypatch, path, PermissionError(errno.EACCES, "Permission denied", str(path)))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "cannot be read (permission denied)" in _one_line(error) and "not a genrekit model" not in str(error.value)


class _Opaque:
    """What a weights-only load refuses: a pickled object of the caller's own class."""


def test_each_load_failure_has_its_own_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing, permission denied, an I/O error, a damaged file, a pickle of objects: five messages, each one line naming the file."""
    with pytest.raises(ModelNotFoundError) as missing:
        load_checkpoint(tmp_path / "missing.pt")
    assert _one_line(missing) == f"{tmp_path / 'missing.pt'}: no such model file"
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 a damaged zip")
    with pytest.raises(CheckpointError) as corrupt:
        load_checkpoint(damaged)
    assert _one_line(corrupt).startswith(f"{damaged}: not a genrekit model file (PytorchStreamReader failed reading zip archive")
    objects = tmp_path / "objects.pt"
    torch.save({"format": 1, "model": _Opaque()}, objects)
    with pytest.raises(CheckpointError) as pickled:
        load_checkpoint(objects)
    assert _one_line(pickled) == f"{objects}: not a genrekit model file (it holds Python objects, not only tensors, strings and numbers)"
    assert "weights_only" not in str(pickled.value)  # torch's advice to load it unsafely is not passed on
    broken = write_random_model(tmp_path / "broken.pt", labels=LABELS)
    _failing_read(monkeypatch, broken, OSError(errno.EIO, "Input/output error", str(broken)))
    with pytest.raises(CheckpointError) as io_error:
        load_checkpoint(broken)
    assert _one_line(io_error) == f"{broken}: cannot be read (I/O error: input/output error)"
    messages = {str(e.value).removeprefix(str(p)) for e, p in ((missing, tmp_path / "missing.pt"), (corrupt, damaged), (pickled, objects), (io_error, broken))}
    assert len(messages) == 4


def _onnx_with(tmp_path: Path, **props: str) -> Path:
    """An exported cnn1 model whose ``genrekit.*`` metadata_props are replaced by ``props``."""
    import onnx

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
