"""cnn1/cnn2 folded for inference: one of genrekit's speed-ups (see :mod:`genrekit.speedups`), kept next
to the models it rewrites because it reads their layer stacks.

The torch runtime (:class:`~genrekit.runtime.torch.TorchRunner`) runs a folded network on the CPU when :func:`fold_conv_net` can build one:
the same probabilities within float rounding (``tests/test_inference.py``), in 0.8x the time on an idle
core and under half of it on a busy machine (``benchmarks/bench_inference.py``).
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from .. import speedups
from .cnn import CNN1, CNN2, KerasMaxPool2d

__all__ = ["FoldedConvNet", "fold_conv_net"]


class FoldedConvNet:
    """cnn1/cnn2 rewritten for inference: the same probabilities within float rounding, in 0.8x the time
    on an idle core and under half of it on a busy machine (benchmarks/bench_inference.py).

    - An eval-mode BatchNorm is a per-channel map ``a * x + b``. cnn2 applies it after the ReLU, so it
      cannot go into the conv before it; with ``a > 0`` it commutes with max-pooling and is folded into
      the next conv or linear layer instead (valid convolutions: no zero padding that ``b`` would miss).
    - ReLU runs after max-pooling (they commute): on 4x fewer values.
    - Convolutions and pooling run on oneDNN's blocked tensors: no layout conversion between layers,
      and pooling skips the argmax indices that eager ``max_pool2d`` computes for a backward pass.

    Built by :func:`fold_conv_net`; call it on a batch of shape (n, n_mels, n_frames).
    """

    def __init__(
        self,
        convs: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]],
        pools: list[KerasMaxPool2d],
        linears: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.convs = [(w.contiguous().to_mkldnn(), b.contiguous().to_mkldnn(), stride) for w, b, stride in convs]
        self.pools = pools
        self.linears = linears

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).contiguous().to_mkldnn()
        for (weight, bias, stride), pool in zip(self.convs, self.pools):
            x = torch.relu(pool(torch.mkldnn_convolution(x, weight, bias, (0, 0), stride, (1, 1), 1)))
        x = x.to_dense().flatten(1)
        for weight, bias in self.linears[:-1]:
            x = F.relu_(F.linear(x, weight, bias))
        return F.linear(x, *self.linears[-1])


_FOLDABLE = re.compile(r"(CRB?PD?)+F(LRD?)*L")  # conv, relu, batchnorm, pool, dropout, flatten, linear


def fold_conv_net(model: nn.Module) -> FoldedConvNet | None:
    """``model`` (eval mode) as a :class:`FoldedConvNet`, or ``None`` when it is not a cnn1/cnn2 layer
    stack that folds exactly (e.g. a BatchNorm with a non-positive scale, which max-pooling would not
    commute with), oneDNN is missing, or speed-ups are off (:mod:`genrekit.speedups`)."""
    if not speedups.enabled() or type(model) not in (CNN1, CNN2) or not torch.backends.mkldnn.is_available():
        return None
    layers = [*model.features, *model.classifier]  # type: ignore[misc]  # Sequentials of CNN1/CNN2, checked above
    kinds = {nn.Conv2d: "C", nn.ReLU: "R", nn.BatchNorm2d: "B", KerasMaxPool2d: "P", nn.Dropout: "D", nn.Flatten: "F", nn.Linear: "L"}
    if not _FOLDABLE.fullmatch("".join(kinds.get(type(layer), "?") for layer in layers)):
        return None
    convs: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]] = []
    pools: list[KerasMaxPool2d] = []
    linears: list[tuple[torch.Tensor, torch.Tensor]] = []
    scale: torch.Tensor | None = None  # pending per-channel map: the true activation is scale * computed + shift
    shift: torch.Tensor | None = None
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                if layer.bias is None or layer.padding != (0, 0) or layer.dilation != (1, 1) or layer.groups != 1:
                    return None
                weight, bias = layer.weight.clone(), layer.bias.clone()
                if scale is not None and shift is not None:
                    bias += (weight * shift[None, :, None, None]).sum(dim=(1, 2, 3))
                    weight *= scale[None, :, None, None]
                    scale = shift = None
                convs.append((weight, bias, (int(layer.stride[0]), int(layer.stride[1]))))
            elif isinstance(layer, nn.BatchNorm2d):
                if layer.running_mean is None or layer.running_var is None or layer.weight is None or layer.bias is None:
                    return None
                a = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                if not bool((a > 0).all()):
                    return None
                b = layer.bias - layer.running_mean * a
                scale, shift = (a, b) if scale is None or shift is None else (scale * a, shift * a + b)
            elif isinstance(layer, KerasMaxPool2d):
                if not layer.kernel >= layer.stride >= 2:  # the other case pads explicitly, which oneDNN tensors do not support
                    return None
                pools.append(layer)
            elif isinstance(layer, nn.Linear):
                if layer.bias is None:
                    return None
                weight, bias = layer.weight.clone(), layer.bias.clone()
                if scale is not None and shift is not None:  # flattened (channels, h, w): each channel's value repeats h * w times
                    repeat = layer.in_features // len(scale)
                    bias += weight @ shift.repeat_interleave(repeat)
                    weight *= scale.repeat_interleave(repeat)
                    scale = shift = None
                linears.append((weight, bias))
    return FoldedConvNet(convs, pools, linears)
