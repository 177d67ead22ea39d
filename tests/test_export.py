"""ONNX export and the onnxruntime backend: same probabilities as PyTorch, metadata that makes the file
self-sufficient, the backend choice, and the CLI."""

from __future__ import annotations

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
from genrekit.exceptions import CheckpointError, ModelNotFoundError, ParameterError
from genrekit.runtime.export import export_onnx, musicnn_patches
from genrekit.features import default_config, extract_features
from genrekit.classifier import GenreClassifier
from genrekit.models import build_model
from genrekit.features.musicnn import EMBEDDING_DIM
from genrekit.runtime.onnx import OnnxRunner
from genrekit.runtime.torch import TorchRunner

from conftest import synth_tone


def _trained_like(name: str) -> GenreClassifier:
    """A random-weight checkpoint of ``name`` with non-trivial batch-norm statistics and standardization."""
    torch.manual_seed(0)
    config = default_config("musicnn") if name == "musicnn-head" else FeatureConfig(scaling="standard")
    shape = (EMBEDDING_DIM,) if name == "musicnn-head" else (128, 130)
    model = build_model(name, shape, 10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    mean, std = (torch.randn(shape) * 0.1, torch.rand(shape) + 0.5) if name == "musicnn-head" else (torch.full((128, 1), -40.0), torch.full((128, 1), 15.0))
    return GenreClassifier(TorchRunner(Checkpoint(name, {}, model.state_dict(), list(GTZAN_GENRES), config, mean, std)), name=name)


def _segments(config: FeatureConfig, n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    y = np.concatenate([synth_tone(i % 10, config.audio.segment_seconds, config.audio.sample_rate, rng) for i in range(n)])
    return y.reshape(n, -1).astype(np.float32)


@pytest.mark.parametrize("name", ["cnn1", "cnn2", "musicnn-head", "default", "zero-shot"])
def test_exported_probabilities_match_torch_at_batch_1_and_n(name: str, tmp_path: Path) -> None:
    torch_model = load_model(name, backend="torch") if name in ("default", "zero-shot") else _trained_like(name)
    path = export_onnx(torch_model.checkpoint, tmp_path / f"{name}.onnx")
    onnx_model = load_model(path)
    assert isinstance(onnx_model.runner, OnnxRunner) and onnx_model.backend == "onnxruntime"
    assert onnx_model.classes_ == torch_model.classes_ and onnx_model.feature_config == torch_model.feature_config
    for n in (1, 7):
        segments = _segments(torch_model.feature_config, n)
        expected = torch_model.predict_proba_features(extract_features(segments, torch_model.feature_config))
        got = onnx_model.predict_proba_features(extract_features(segments, onnx_model.input_config))
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_musicnn_patches_are_what_the_embedding_reads() -> None:
    config = default_config("musicnn")
    patches = musicnn_patches(_segments(config, 3), config)
    assert patches.shape == (3, 187, 96) and patches.dtype == np.float32
    assert musicnn_patches(np.zeros((0, config.audio.segment_samples), np.float32), config).shape == (0, 187, 96)


def test_onnx_file_carries_labels_config_and_calibration(tmp_path: Path) -> None:
    torch_model = load_model("default", backend="torch")
    onnx_model = load_model(export_onnx(torch_model.checkpoint, tmp_path / "m.onnx"))
    assert onnx_model.uncertain_below == torch_model.uncertain_below > 0
    assert onnx_model.describe()["architecture"] == "musicnn-linear"
    assert onnx_model.input_config.kind == "musicnn-patches" and onnx_model.feature_config.kind == "musicnn"
    with pytest.raises(AttributeError, match="an ONNX model holds no PyTorch checkpoint"):
        onnx_model.checkpoint  # noqa: B018  # the file alone: no weights to export again
    converted = load_model("default", backend="onnxruntime")  # a checkpoint run by onnxruntime keeps its Checkpoint
    assert converted.checkpoint is not None and converted.checkpoint.state_dict.keys() == torch_model.checkpoint.state_dict.keys()


def test_backend_choice() -> None:
    assert load_model("default").backend == "onnxruntime"  # auto: the measured faster runtime for musicnn models
    assert load_model("default", backend="torch").backend == "torch"
    assert load_model("default", backend="onnxruntime").backend == "onnxruntime"
    with pytest.raises(ParameterError, match="backend"):
        load_model("default", backend="tensorflow")


def test_onnx_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.onnx: not an ONNX model"):
        load_model(tmp_path / "junk.onnx")
    path = export_onnx(load_model("zero-shot", backend="torch").checkpoint, tmp_path / "z.onnx")
    with pytest.raises(ParameterError, match="runs with onnxruntime"):
        load_model(path, backend="torch")


def test_predict_many_runs_the_model_in_workers_with_both_backends(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"t{i}.wav")
        sf.write(paths[-1], synth_tone(i, 6.0, 16000, rng), 16000)
    for backend in ("torch", "onnxruntime"):
        model = load_model("default", backend=backend)
        one = [r.probabilities for r in model.predict_many(paths, jobs=1)]
        two = [r.probabilities for r in model.predict_many(paths, jobs=2)]
        for a, b in zip(one, two):
            assert a.keys() == b.keys()
            np.testing.assert_allclose(list(a.values()), list(b.values()), atol=1e-6)


def test_cli_export_then_predict_with_the_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(_trained_like("cnn2").checkpoint, run / "model.pt")
    clip = tmp_path / "clip.wav"
    sf.write(clip, synth_tone(2, 4.0, 22050, np.random.default_rng(0)), 22050)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "cnn2.onnx")])
    assert result.exit_code == 0, result.output
    by_file = runner.invoke(app, ["predict", str(clip), "--model", str(tmp_path / "cnn2.onnx"), "--format", "json"])
    by_torch = runner.invoke(app, ["predict", str(clip), "--model", str(run), "--backend", "torch", "--format", "json"])
    assert by_file.exit_code == 0 == by_torch.exit_code, by_file.output + by_torch.output
    import json

    a, b = json.loads(by_file.stdout)["results"][0], json.loads(by_torch.stdout)["results"][0]
    assert a["genre"] == b["genre"]
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)
    no_tags = runner.invoke(app, ["predict", str(clip), "--model", str(tmp_path / "cnn2.onnx"), "--tags", "3"])
    assert no_tags.exit_code == 0 and "(cnn2) has no tags" in no_tags.output
    bad = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "x.onnx"), "--format", "tflite"])
    assert bad.exit_code == 2 and "The '--format' option must be one of onnx. Got 'tflite' instead." in bad.output


def test_int8_front_end_replaces_the_timbral_convolutions_and_takes_the_maximum_on_uint8() -> None:
    import onnx

    from genrekit.runtime.export import onnx_bytes
    from genrekit.runtime.quantize import quantize_timbral, timbral_convs

    model = load_model("default", backend="torch")
    fp32 = onnx_bytes(model.checkpoint)
    convs = timbral_convs(onnx.load_from_string(fp32))
    assert sorted(c.weight.shape[3] for c in convs) == [38, 38, 67, 67]
    for conv in convs:  # the input range holds the padding's zero and the batch norm of silence
        assert conv.input_range[0] <= 0.0 <= conv.input_range[1]
    config = model.feature_config
    calibration = [musicnn_patches(_segments(config, 5), config)]
    int8 = onnx.load_from_string(quantize_timbral(fp32, calibration, source="abc"))
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("QLinearConv") == 4 and ops.count("QuantizeLinear") == 2  # one quantized input per network
    convs_out = {n.output[0] for n in int8.graph.node if n.op_type == "QLinearConv"}
    pools = [n for n in int8.graph.node if n.op_type == "ReduceMax" and n.input[0] in convs_out]
    assert len(pools) == 4  # each maximum over frequency reads the uint8 map
    quantized = GenreClassifier(OnnxRunner(int8.SerializeToString()))
    assert quantized.runner.metadata_props["source"] == "abc" and quantized.classes_ == model.classes_
    assert "8-bit per-channel weights, 7-bit activations" in quantized.runner.metadata_props["quantization"]
    x = musicnn_patches(_segments(config, 6), config)
    p8, p32 = quantized.predict_proba_features(x), GenreClassifier(OnnxRunner(fp32)).predict_proba_features(x)
    np.testing.assert_allclose(p8.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(p8 - p32).max() < 0.05
    only_wide = onnx.load_from_string(quantize_timbral(fp32, calibration, widths=(67,)))
    assert [n.op_type for n in only_wide.graph.node].count("QLinearConv") == 2


def test_log_mel_bound_holds_for_the_loudest_signals() -> None:
    from genrekit.features.musicnn import log_mel
    from genrekit.runtime.quantize import log_mel_bound

    t = np.arange(16000 * 3) / 16000
    loudest = [np.sign(np.sin(2 * np.pi * 440 * t)), np.sin(2 * np.pi * 2000 * t), np.ones_like(t), np.random.default_rng(0).choice([-1.0, 1.0], t.size)]
    peak = max(float(log_mel(y.astype(np.float32)).max()) for y in loudest)
    assert 6.0 < peak <= log_mel_bound() < 7.5


def test_shipped_int8_graph_was_made_from_the_shipped_default_and_auto_runs_it() -> None:
    from importlib import resources

    from genrekit.runtime.onnx import checkpoint_digest

    path = resources.files("genrekit") / "weights" / "default-int8.onnx"
    assert path.is_file(), "rerun scripts/quantize_default_model.py"
    auto, fp32 = load_model("default"), load_model("default", backend="onnxruntime")
    assert isinstance(auto.runner, OnnxRunner) and "int8" in auto.runner.metadata_props["quantization"]
    assert auto.runner.metadata_props["source"] == checkpoint_digest(load_model("default", backend="torch").checkpoint)
    assert isinstance(fp32.runner, OnnxRunner) and "quantization" not in fp32.runner.metadata_props
    config = auto.feature_config
    x = musicnn_patches(_segments(config, 4), config)
    assert np.abs(auto.predict_proba_features(x) - fp32.predict_proba_features(x)).max() < 0.05


@pytest.mark.parametrize("graph", ["default-int8.onnx", "zero-shot.onnx"])
def test_every_shipped_graph_was_made_from_its_shipped_checkpoint(graph: str) -> None:
    """The shipped models run from these graphs without PyTorch: a checkpoint changed without its graph fails here."""
    from importlib import resources

    from genrekit.checkpoint import load_checkpoint
    from genrekit.runtime.onnx import checkpoint_digest

    weights = resources.files("genrekit") / "weights"
    name = graph.removesuffix(".onnx").removesuffix("-int8")
    shipped = OnnxRunner((weights / graph).read_bytes())
    with resources.as_file(weights / f"{name}.pt") as checkpoint:
        assert shipped.metadata_props["source"] == checkpoint_digest(load_checkpoint(checkpoint)), "rerun scripts/export_shipped_models.py or quantize_default_model.py"
    model = load_model(name)
    assert isinstance(model.runner, OnnxRunner) and model.runner.metadata_props["source"] == shipped.metadata_props["source"]


def test_exported_graph_is_cached_and_an_unwritable_cache_only_costs_the_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genrekit.runtime.onnx import cache_dir

    from importlib import resources

    zero_shot = str(resources.files("genrekit") / "weights" / "zero-shot.pt")  # a checkpoint: the shipped name runs its shipped graph
    monkeypatch.setenv("GENREKIT_CACHE_DIR", str(tmp_path / "cache"))
    first = load_model(zero_shot, backend="onnxruntime")
    files = list((cache_dir() / "onnx").glob("musicnn-zero-shot-*.onnx"))
    assert len(files) == 1
    from genrekit.runtime.export import onnx_bytes

    default = load_model("default", backend="torch")
    files[0].write_bytes(onnx_bytes(default.checkpoint))  # planted: a second load must read the file, not export again
    x = musicnn_patches(_segments(first.feature_config, 2), first.feature_config)
    np.testing.assert_allclose(load_model(zero_shot, backend="onnxruntime").predict_proba_features(x), default.predict_proba_features(extract_features(_segments(first.feature_config, 2), default.feature_config)), atol=1e-4)
    files[0].unlink()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GENREKIT_CACHE_DIR", str(tmp_path / "file"))  # not a folder: nothing can be written there
    np.testing.assert_allclose(load_model(zero_shot, backend="onnxruntime").predict_proba_features(x), first.predict_proba_features(x), atol=1e-6)


def test_onnxruntime_optimized_graph_is_cached_and_computes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session loads onnxruntime's cached optimized form (2-4x faster to start) with the same probabilities, bit for bit."""
    from importlib import resources

    monkeypatch.setenv("GENREKIT_CACHE_DIR", str(tmp_path))
    graph = (resources.files("genrekit") / "weights" / "default-int8.onnx").read_bytes()
    fresh = GenreClassifier(OnnxRunner(graph))
    cached = list((tmp_path / "ort").glob("*.onnx"))
    assert len(cached) == 1 and not list((tmp_path / "ort").glob("*.tmp"))
    again = GenreClassifier(OnnxRunner(graph))
    config = fresh.input_config
    x = musicnn_patches(_segments(config, 3), config)
    assert np.array_equal(fresh.predict_proba_features(x), again.predict_proba_features(x))
    cached[0].write_bytes(b"damaged")
    repaired = GenreClassifier(OnnxRunner(graph))
    assert np.array_equal(repaired.predict_proba_features(x), fresh.predict_proba_features(x)) and cached[0].stat().st_size > 10**6
