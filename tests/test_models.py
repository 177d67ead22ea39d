"""The original's CNNs: exact Keras parameter counts, output shapes, and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genrekit.exceptions import ModelNotFoundError
from genrekit.models import available_models, build_model, count_parameters, register_model, registry
from genrekit.models.cnn import KerasMaxPool2d, _same_pad, bit_dropout  # bit_dropout: re-exported from genrekit.speedups

from conftest import assert_onnx_matches_torch

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
    torch.manual_seed(0)
    assert_onnx_matches_torch(build_model(name, (128, 44), 10).eval(), torch.randn(2, 128, 44))


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2), (3, 3), (2, 1), (1, 2), (2, 3)])
@pytest.mark.parametrize("size", [(126, 128), (61, 62), (29, 30), (7, 5), (1, 2)])
def test_keras_max_pool_equals_explicit_same_padding(kernel: int, stride: int, size: tuple[int, int]) -> None:
    """The pool's padding/ceil_mode shortcut gives the explicitly padded pool's output and gradient."""
    x = torch.randn(2, 3, *size, requires_grad=True)
    top, bottom = _same_pad(size[0], kernel, stride)
    left, right = _same_pad(size[1], kernel, stride)
    expected = torch.nn.functional.max_pool2d(torch.nn.functional.pad(x, (left, right, top, bottom), value=float("-inf")), kernel, stride)
    out = KerasMaxPool2d(kernel, stride)(x)
    assert out.shape[-2:] == (-(-size[0] // stride), -(-size[1] // stride))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_bit_dropout_is_bernoulli_dropout_in_the_input_layout(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(8, 16, 63, 64).contiguous(memory_format=torch.channels_last)
    y = bit_dropout(x, p)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5 + 2e-5
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert bit_dropout(x.bfloat16(), p).dtype == torch.bfloat16
    torch.manual_seed(0)
    assert torch.equal(bit_dropout(x, p), y)  # the default generator's seed fixes the mask


def test_cnn2_uses_bit_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_model("cnn2", (128, 44), 10)
    x = torch.randn(4, 128, 44)
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    assert not torch.equal(model(x), first)
    model.eval()
    torch.testing.assert_close(model(x), model.classifier(model.features(x.unsqueeze(1))), rtol=0, atol=0)


def test_speedups_off_switch_runs_plain_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """GENREKIT_SPEEDUPS=0: no folding, no bit dropout (nn.Dropout's own masks), no collector freeze."""
    import gc

    from genrekit import speedups
    from genrekit.models.folding import fold_conv_net

    model = build_model("cnn2", (128, 130), 10).eval()
    assert fold_conv_net(model) is not None
    monkeypatch.setenv(speedups.ENV_VAR, "0")
    assert fold_conv_net(model) is None
    model.train()
    x = torch.ones(2, 128, 130)
    torch.manual_seed(3)
    plain = torch.nn.Sequential(*model.features, *model.classifier)(x.unsqueeze(1))
    torch.manual_seed(3)
    assert torch.equal(model(x), plain)
    with speedups.frozen_collector() as loaded:
        loaded()
        assert gc.get_freeze_count() == 0


def test_keep_freed_memory_leaves_users_malloc_settings_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from genrekit import speedups

    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

        def malloc_trim(self, pad: int) -> int:
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda *_: FakeLibc())
    monkeypatch.setattr(speedups.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    with speedups.keep_freed_memory():
        pass
    assert calls == []
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    for name in [n for n in __import__("os").environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    with speedups.keep_freed_memory():
        pass
    assert calls and calls[0] == (-4, 0)


def test_a_new_architecture_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("tiny-linear")
    def tiny(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), n_classes))

    assert "tiny-linear" in available_models()
    model = build_model("tiny-linear", (4, 5), 3)
    assert model(torch.zeros(2, 4, 5)).shape == (2, 3)
