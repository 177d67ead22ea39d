"""The original's CNNs: exact Keras parameter counts, output shapes, and ONNX export."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from genrekit.exceptions import ModelNotFoundError
from genrekit.models import available_models, build_model, count_parameters

EXPECTED_PARAMETERS = {"cnn1": 957_578, "cnn2": 1_880_202}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameter_counts_match_the_keras_originals(name: str) -> None:
    assert name in available_models()
    assert count_parameters(build_model(name, (128, 130), 10)) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
@pytest.mark.parametrize("shape", [(128, 130), (128, 44)])
def test_output_shape_and_channels_last(name: str, shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 10).eval()
    x = torch.randn(3, *shape)
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (3, 10) and bool(torch.isfinite(out).all())
        # Training converts models to channels_last for speed; it must not change results.
        torch.testing.assert_close(model.to(memory_format=torch.channels_last)(x), out, rtol=1e-4, atol=1e-5)


def test_unknown_model_lists_the_available_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="cnn1"):
        build_model("cnn3", (128, 130), 10)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_onnx_export_matches_torch(name: str) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    model = build_model(name, (128, 44), 10).eval()
    x = torch.randn(2, 128, 44)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter needs only the `onnx` package (the dynamo one needs onnxscript).
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["features"], output_names=["logits"],
                          dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(graph)
    (logits,) = ReferenceEvaluator(graph).run(None, {"features": x.numpy()})
    with torch.inference_mode():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=1e-3, atol=1e-4)
