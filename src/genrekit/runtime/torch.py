"""The "torch" runtime: a checkpoint's network run by PyTorch, on a device, under autocast on GPUs.

The reference runtime: what training wrote is what runs, and what ``genrekit export`` and the ONNX graphs are
checked against. On the CPU, cnn1/cnn2 run with their batch norms folded (:mod:`genrekit.models.folding`),
other networks channels_last; on a GPU under autocast (:func:`genrekit.runtime.device.autocast`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..checkpoint import Checkpoint
from ..config import FeatureConfig
from ..exceptions import ParameterError, Mention
from ..features.pipeline import BATCH_SEGMENTS
from ..tags import tag_names
from .base import ModelSource, Rebuild
from .device import autocast, torch_device

__all__ = ["TorchRunner", "load"]


class TorchRunner:
    """A checkpoint's network in PyTorch: the :class:`~genrekit.runtime.Runner` of the "torch" runtime.

    Parameters
    ----------
    checkpoint : Checkpoint
        Weights, labels, feature config and standardization (see :mod:`genrekit.checkpoint`).
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Where the network runs (:func:`genrekit.runtime.device.torch_device`); on a GPU under autocast.

    Attributes
    ----------
    network : callable
        What computes the class logits of a batch: on the CPU a folded cnn1/cnn2
        (:class:`~genrekit.models.folding.FoldedConvNet`) or a channels_last module.
    tag_layer : torch.nn.Module or None
        What computes musicnn's tag scores from a segment's embedding; None for other features.
    """

    backend = "torch"

    def __init__(self, checkpoint: Checkpoint, *, device: str = "auto") -> None:
        from ..models.folding import fold_conv_net

        self.checkpoint = checkpoint
        self._device_name = device
        self._device = torch_device(device)
        model = checkpoint.build()
        self.network: Callable[[torch.Tensor], torch.Tensor]
        if self._device.type == "cpu":
            # Other models run channels_last, which lets oneDNN use its fast CPU convolutions: ~1.9x on cnn2 over NCHW.
            self.network = fold_conv_net(model) or model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs omit memory_format
        else:
            self.network = model.to(self._device)
        tags = _tag_layer(checkpoint.feature_config)
        self.tag_layer = None if tags is None else tags.to(self._device)

    @property
    def runtime(self) -> str:
        if self._device.type == "cpu":
            return "PyTorch, float32"
        return f"PyTorch on {self._device.type}" + (", mixed precision (autocast)" if self._device.type == "cuda" else ", float32")

    @property
    def device(self) -> str:
        return str(self._device.type)

    @property
    def model_name(self) -> str:
        return self.checkpoint.model_name

    @property
    def labels(self) -> list[str]:
        return list(self.checkpoint.labels)

    @property
    def feature_config(self) -> FeatureConfig:
        return self.checkpoint.feature_config

    @property
    def input_config(self) -> FeatureConfig:
        return self.checkpoint.feature_config

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.checkpoint.metadata

    @property
    def has_tags(self) -> bool:
        return self.tag_layer is not None

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities and, for models over musicnn embeddings, tag scores of a batch of segment features,
        :data:`~genrekit.features.pipeline.BATCH_SEGMENTS` segments a forward pass."""
        out, tags = [], []
        with torch.inference_mode(), autocast(self._device):
            for lo in range(0, len(features), BATCH_SEGMENTS):
                raw = torch.as_tensor(np.asarray(features[lo : lo + BATCH_SEGMENTS], dtype=np.float32))
                x = self.checkpoint.normalize(raw)
                out.append(torch.softmax(self.network(x.to(self._device)).float(), dim=-1).cpu().numpy())
                if self.tag_layer is not None:  # from the raw embedding: the tag layer reads the unstandardized penultimate
                    tags.append(torch.sigmoid(self.tag_layer(raw.to(self._device))[1].float()).cpu().numpy())
        probs = np.concatenate(out) if out else np.empty((0, len(self.checkpoint.labels)), dtype=np.float32)
        if self.tag_layer is None:
            return probs, None
        return probs, np.concatenate(tags) if tags else np.empty((0, len(tag_names())), dtype=np.float32)

    def rebuild(self, threads: int = 1) -> Rebuild:
        """(a builder, checkpoint, device, threads): the worker's copy runs PyTorch on ``threads`` threads,
        set in the worker, where torch's one thread pool lives, so an engine needs no word of torch."""
        return _worker_runner, (self.checkpoint,), {"device": self._device_name, "threads": threads}


def _worker_runner(checkpoint: Checkpoint, *, device: str, threads: int) -> TorchRunner:
    """A worker process's runner: PyTorch's intra-op threads are process-wide, so they are set here, once."""
    torch.set_num_threads(threads)
    return TorchRunner(checkpoint, device=device)


def _tag_layer(config: FeatureConfig) -> torch.nn.Module | None:
    """What computes musicnn's tag scores from a segment's embedding (its two penultimate layers through the
    taggers' output layers, :class:`~genrekit.models.musicnn_linear.TagLayer`); None for other features."""
    if config.kind != "musicnn":
        return None
    from ..models.musicnn_linear import TagLayer

    return TagLayer().eval()


def load(source: ModelSource, *, device: str = "auto", threads: int = 1) -> TorchRunner:
    """The "torch" runtime's loader: ``source`` read as a checkpoint (``threads`` is the worker's to set).

    Raises
    ------
    ParameterError
        ``source`` is an ONNX graph, which only onnxruntime runs.
    """
    if source.is_onnx:
        raise ParameterError(f"{source.name}: an ONNX model runs with onnxruntime; use ", Mention("backend", "onnxruntime"), " or auto, or the model.pt it was exported from")
    return TorchRunner(source.checkpoint(), device=device)
