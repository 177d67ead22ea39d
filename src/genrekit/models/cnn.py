"""The original pipeline's two small CNNs, with Keras semantics.

Conv layers use "valid" padding; max-pooling uses Keras "same" padding (output = ceil(input / stride)),
implemented as a right/bottom -inf pad followed by an ordinary pool, so shapes and parameter counts
match the Keras originals exactly (cnn1: 957,578 parameters; cnn2: 1,880,202 trainable).

In training, cnn2's dropout layers draw their masks with :func:`genrekit.speedups.bit_dropout` instead of
``nn.Dropout``'s own: the same Bernoulli dropout, ~10x cheaper on CPU. The modules stay ``nn.Dropout``, so state dicts,
evaluation, ONNX export and inference's layer folding see the layer stack they always saw.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .. import speedups
from ..exceptions import Mention, ParameterError
from ..speedups import bit_dropout
from .registry import register_model

__all__ = ["KerasMaxPool2d", "CNN1", "CNN2", "bit_dropout"]


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class KerasMaxPool2d(nn.Module):
    """``keras.layers.MaxPooling2D(pool_size, strides, padding="same")``."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(int(x.shape[-2]), self.kernel, self.stride)  # int(): static sizes for ONNX export
        left, right = _same_pad(int(x.shape[-1]), self.kernel, self.stride)
        if self.kernel >= self.stride >= 2:
            # Keras pads total // 2 in front and 0 or 1 more behind. Pooling's implicit -inf padding covers the
            # front and as much behind; ceil_mode adds the trailing window when behind is one more (and nothing
            # otherwise, since windows then tile the padded input exactly). Same output and gradient as an
            # explicit -inf pad, without copying the largest activation and its gradient (~15% of a cnn2 step).
            return F.max_pool2d(x, self.kernel, self.stride, padding=(top, left), ceil_mode=True)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


def _run(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)``, with :func:`bit_dropout` for training-mode dropout (eval and export run the plain stack)."""
    if not speedups.enabled():
        return layers(x)
    for layer in layers:
        x = bit_dropout(x, layer.p) if isinstance(layer, nn.Dropout) and layer.training and 0 < layer.p < 1 else layer(x)
    return x


def _pooled_size(size: int) -> int:
    for conv, stride in ((3, 2), (3, 2), (2, 2)):
        size = math.ceil((size - conv + 1) / stride)
    return size


class CNN1(nn.Module):
    """Conv32-3x3, MaxPool3/2, Conv64-3x3, MaxPool3/2, Conv64-2x2, MaxPool2/2, Dense64, Dense(n_classes)."""

    def __init__(self, input_shape: tuple[int, int], n_classes: int) -> None:
        super().__init__()
        h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), KerasMaxPool2d(3, 2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), KerasMaxPool2d(3, 2),
            nn.Conv2d(64, 64, 2), nn.ReLU(), KerasMaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * _pooled_size(h) * _pooled_size(w), 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.unsqueeze(1)))


class CNN2(nn.Module):
    """cnn1's three blocks, each Conv, ReLU, BatchNorm, MaxPool, Dropout (0.2, 0.1, 0.1);
    then Dense128 + Dropout 0.5 and Dense(n_classes)."""

    def __init__(self, input_shape: tuple[int, int], n_classes: int) -> None:
        super().__init__()
        h, w = input_shape
        # Keras BatchNormalization defaults: momentum 0.99 (torch: 1 - 0.99), epsilon 1e-3.
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), KerasMaxPool2d(3, 2), nn.Dropout(0.2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), KerasMaxPool2d(3, 2), nn.Dropout(0.1),
            nn.Conv2d(64, 64, 2), nn.ReLU(), nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), KerasMaxPool2d(2, 2), nn.Dropout(0.1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * _pooled_size(h) * _pooled_size(w), 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run(self.classifier, _run(self.features, x.unsqueeze(1)))


def _spectrogram_shape(input_shape: tuple[int, ...], name: str) -> tuple[int, int]:
    """``input_shape`` as (n_mels, n_frames): a store of other features (musicnn embeddings) is a one-line
    error naming the way out, not an IndexError deep in the build."""
    if len(input_shape) != 2:
        raise ParameterError(
            f"{name} reads log-mel spectrograms of shape (n_mels, n_frames) (", Mention("features", "logmel"), f"). Got features of shape "
            f"{tuple(input_shape)} instead: for a ", Mention("features", "musicnn"), " store, use ", Mention("model", "musicnn-head"), "."
        )
    return input_shape[0], input_shape[1]


@register_model("cnn1")
def _build_cnn1(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return CNN1(_spectrogram_shape(input_shape, "cnn1"), n_classes)


@register_model("cnn2")
def _build_cnn2(input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    return CNN2(_spectrogram_shape(input_shape, "cnn2"), n_classes)
