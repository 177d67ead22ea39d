"""The musicnn network in PyTorch: pretrained music-tagging CNNs, used frozen as a feature extractor.

A port of ``MSD_musicnn`` and ``MTT_musicnn`` from ``musicnn==0.1.0`` (Pons & Serra, "musicnn:
pre-trained convolutional neural networks for music audio tagging", ISMIR LBD 2019; ISC license, see
``weights/LICENSE-musicnn.txt``). This module holds the network and its weights only; its input
representation, the embeddings genrekit stores and the tag scores are in :mod:`genrekit.features.musicnn`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import torch
from safetensors import safe_open
from torch import nn
from torch.nn import functional as F

from ..exceptions import ModelNotFoundError
from ..features.musicnn_input import N_MELS  # mel bands of the input patches: one definition, torch-free

__all__ = ["N_MELS", "MODELS", "EMBEDDING_LAYOUT", "EMBEDDING_DIM", "MusiCNN", "MusicnnOutput", "load_musicnn"]


MODELS: tuple[str, ...] = ("MSD_musicnn", "MTT_musicnn")
_WEIGHT_FILES = {"MSD_musicnn": "musicnn_msd.safetensors", "MTT_musicnn": "musicnn_mtt.safetensors"}
_BN_EPS = 1e-3  # tf.layers.batch_normalization's default
_N_TIMBRAL = 204  # int(1.6 * 128) filters per timbral (vertical) filter shape
_N_TEMPORAL = 51  # int(1.6 * 32) filters per temporal (horizontal) filter length
_TIMBRAL_HEIGHTS = (0.4, 0.7)  # fractions of the mel axis: 38 and 67 bands
_TEMPORAL_LENGTHS = (128, 64, 32)  # frames
_N_MIDEND = 64
_N_PENULTIMATE = 200
_N_FRONTEND = 2 * _N_TIMBRAL + 3 * _N_TEMPORAL  # 561
_N_POOLED = _N_FRONTEND + 3 * _N_MIDEND  # 753

EMBEDDING_LAYOUT: tuple[tuple[str, str, int], ...] = tuple(
    (model, layer, size)
    for model in MODELS
    for layer, size in (("penultimate", _N_PENULTIMATE), ("mean_pool", _N_POOLED), ("max_pool", _N_POOLED))
)
"""(model, layer, width) of each block of embedding columns, in order."""
EMBEDDING_DIM = sum(size for _, _, size in EMBEDDING_LAYOUT)


class _ConvBlock(nn.Module):
    """Convolution, ReLU, then batch normalization: musicnn normalizes after the activation."""

    conv: nn.Conv2d  # front-end blocks; the mid end's hold the 1-D kinds, on which only forward is called
    bn: nn.BatchNorm2d

    def __init__(self, conv: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.conv = conv  # type: ignore[assignment]  # a Conv1d in the mid end (see the annotation above)
        self.bn = bn  # type: ignore[assignment]  # a BatchNorm1d in the mid end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))

    def frequency_max(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x).amax(dim=3)`` for a front-end block in eval mode, reordered to cost less.

        ReLU, the conv bias and eval-mode batch norm are monotonic per channel (increasing, or
        decreasing where the norm's scale is negative), so the maximum over frequency can be taken on
        the raw convolution first and the three applied to the pooled map only: 96/38/67 times fewer
        elementwise operations, the same result up to float rounding. A decreasing channel needs the
        minimum instead, found as the maximum of the convolution by the negated filter.
        """
        var, mean = self.bn.running_var, self.bn.running_mean
        if var is None or mean is None or self.conv.bias is None:
            raise ValueError("frequency_max needs batch-norm running statistics and a conv bias, as musicnn's blocks have")
        scale = self.bn.weight * torch.rsqrt(var + self.bn.eps)
        sign = torch.where(scale >= 0, 1.0, -1.0)
        extreme = F.conv2d(x, self.conv.weight * sign[:, None, None, None]).amax(dim=3) * sign[:, None]
        return F.relu(extreme + self.conv.bias[:, None]) * scale[:, None] + (self.bn.bias - mean * scale)[:, None]


class MusicnnOutput(NamedTuple):
    """What one forward pass gives, per patch."""

    logits: torch.Tensor  # (batch, n_tags); sigmoid gives the tag scores
    penultimate: torch.Tensor  # (batch, 200)
    mean_pool: torch.Tensor  # (batch, 753)
    max_pool: torch.Tensor  # (batch, 753)


class MusiCNN(nn.Module):
    """The musicnn architecture (``models.build_musicnn`` with 64 mid-end filters and 200 dense units).

    Front end: batch norm of the log-mel input, then musically motivated filters, each max-pooled over
    the whole frequency axis: vertical "timbral" filters (7 frames x 38 and 67 bands, 204 each) and
    horizontal "temporal" filters (128, 64, 32 frames x 1 band, 51 each). Mid end: three 1-D
    convolutions (7 frames, 64 filters), the last two residual. Back end: temporal max and mean pools of
    the concatenated front-end and mid-end maps, batch norm, dense 200 + ReLU + batch norm (the
    penultimate layer), dense to the tags. Dropout is omitted: the port is for inference only.

    Parameters
    ----------
    n_tags : int, default=50
    tags : tuple of str, default=()
        Tag names in output order; informational, stored by :func:`load_musicnn`.
    """

    def __init__(self, n_tags: int = 50, *, tags: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.tags = tags
        self.input_bn = nn.BatchNorm2d(1, eps=_BN_EPS)
        self.timbral = nn.ModuleList(
            _ConvBlock(nn.Conv2d(1, _N_TIMBRAL, (7, int(f * N_MELS))), nn.BatchNorm2d(_N_TIMBRAL, eps=_BN_EPS))
            for f in _TIMBRAL_HEIGHTS
        )
        self.temporal = nn.ModuleList(
            _ConvBlock(nn.Conv2d(1, _N_TEMPORAL, (k, 1)), nn.BatchNorm2d(_N_TEMPORAL, eps=_BN_EPS)) for k in _TEMPORAL_LENGTHS
        )
        self.midend = nn.ModuleList(
            _ConvBlock(nn.Conv1d(n_in, _N_MIDEND, 7, padding=3), nn.BatchNorm1d(_N_MIDEND, eps=_BN_EPS))
            for n_in in (_N_FRONTEND, _N_MIDEND, _N_MIDEND)
        )
        self.pool_bn = nn.BatchNorm1d(2 * _N_POOLED, eps=_BN_EPS)
        self.dense = nn.Linear(2 * _N_POOLED, _N_PENULTIMATE)
        self.dense_bn = nn.BatchNorm1d(_N_PENULTIMATE, eps=_BN_EPS)
        self.output = nn.Linear(_N_PENULTIMATE, n_tags)

    def forward(self, x: torch.Tensor) -> MusicnnOutput:
        """Map log-mel patches of shape (batch, frames, 96) to :class:`MusicnnOutput`."""
        x = self.input_bn(x.unsqueeze(1))  # (batch, 1, frames, mels)
        padded = F.pad(x, (0, 0, 3, 3))  # the original pads time by 3 and convolves "valid"
        front = [block.frequency_max(padded) for block in self.timbral]  # type: ignore[operator]  # ModuleList items are typed nn.Module
        for block, length in zip(self.temporal, _TEMPORAL_LENGTHS):
            before = (length - 1) // 2  # TensorFlow "same": the extra frame of an even kernel goes after
            front.append(block.frequency_max(F.pad(x, (0, 0, before, length - 1 - before))))  # type: ignore[operator]  # as above
        h = torch.cat(front, dim=1)  # (batch, 561, frames)
        maps = [h]
        h = self.midend[0](h)
        maps.append(h)
        for block in self.midend[1:]:
            h = block(h) + h
            maps.append(h)
        feature_map = torch.cat(maps, dim=1)  # (batch, 753, frames)
        max_pool = feature_map.amax(dim=2)
        mean_pool = feature_map.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF's concat + flatten interleaves them
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return MusicnnOutput(self.output(penultimate), penultimate, mean_pool, max_pool)


@lru_cache(maxsize=None)
def load_musicnn(name: str = "MSD_musicnn") -> MusiCNN:
    """The pretrained model ``name`` in eval mode with gradients off, loaded once per process.

    The returned module is shared by every caller in the process: copy it (``copy.deepcopy``) before
    changing it, e.g. to fine-tune.

    Parameters
    ----------
    name : {"MSD_musicnn", "MTT_musicnn"}, default="MSD_musicnn"

    Raises
    ------
    ModelNotFoundError
        ``name`` is not a shipped musicnn model, or its weight file is missing from the installation.
    """
    if name not in _WEIGHT_FILES:
        raise ModelNotFoundError(f"musicnn model {name!r} not found; available models: {', '.join(MODELS)}")
    resource = resources.files("genrekit") / "weights" / _WEIGHT_FILES[name]
    if not resource.is_file():
        raise ModelNotFoundError(f"{resource}: the musicnn weights are missing; reinstall genrekit")
    with resources.as_file(resource) as path, safe_open(str(path), framework="pt") as f:
        tags = tuple(json.loads(f.metadata()["tags"]))
        weights = {key: f.get_tensor(key) for key in f.keys()}
    model = MusiCNN(len(tags), tags=tags)
    model.load_state_dict(model.state_dict() | weights)  # keeps torch's num_batches_tracked, rejects strays
    return model.eval().requires_grad_(False)
