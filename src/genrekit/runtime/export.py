"""Export a genrekit model to ONNX: one file that runs without PyTorch and without a run folder.

The graph maps a batch of network inputs to class probabilities (output ``probabilities``; softmax
included, standardization included) and, for a model over musicnn embeddings, to musicnn's 100 tag
scores too (output ``tags``, in :func:`genrekit.tags.tag_names` order: the taggers' sigmoid outputs,
from the same penultimate layers); what the graph cannot hold travels in the file's ``metadata_props``, as JSON strings:

- ``genrekit.labels``: class names in output order;
- ``genrekit.feature_config``: the :class:`~genrekit.config.FeatureConfig` of the segments;
- ``genrekit.input``: what the graph reads. ``"features"``: the features of that config (log-mels of
  shape (n_mels, frames) for cnn1/cnn2); ``"musicnn-logmel"``: musicnn's log-mel patches of shape
  (187, 96), because for a model over musicnn embeddings the graph holds both musicnn networks too
  (:func:`genrekit.features.musicnn.log_mel` computes the patches, see :func:`musicnn_patches`);
- ``genrekit.normalization``: ``"in-graph"``: the checkpoint's mean/std are constants of the graph;
- ``genrekit.model``, ``genrekit.metadata``, ``genrekit.version``: architecture, the checkpoint's facts
  (calibration, description, training data), the genrekit that wrote it.

Only the log-mel front end stays outside: an STFT is cheap next to the networks and keeps the file
free of a signal-processing opset. ``tests/test_export.py`` checks probabilities against PyTorch.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from .._io import atomic_write
from ..checkpoint import Checkpoint
from ..model_metadata import METADATA_PREFIX
from ..models.musicnn_linear import TagLayer
from ..features.musicnn_input import musicnn_patches, network_input_shape
from .graph import GRAPH_FORMAT, INPUT_FEATURES, INPUT_MUSICNN_LOGMEL, TAGS_OUTPUT

__all__ = ["INPUT_FEATURES", "INPUT_MUSICNN_LOGMEL", "TAGS_OUTPUT", "GRAPH_FORMAT", "OPSET", "export_onnx", "onnx_bytes", "export_metadata", "musicnn_patches", "network_input_shape"]

OPSET = 17


class _MusicnnEmbedding(nn.Module):
    """Log-mel patches (batch, frames, 96) -> the 3412-wide embedding of :func:`genrekit.features.musicnn.extract_embeddings`."""

    def __init__(self) -> None:
        super().__init__()
        from ..features.musicnn import MODELS, load_musicnn

        self.nets = nn.ModuleList(load_musicnn(name) for name in MODELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for net in self.nets:
            out = net(x)
            parts += [out.penultimate, out.mean_pool, out.max_pool]  # EMBEDDING_LAYOUT's order
        return torch.cat(parts, dim=1)


class _Exported(nn.Module):
    """Network input -> probabilities: [musicnn networks], the checkpoint's standardization, the model, softmax;
    and the tag scores of the musicnn embedding, for models that read one."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.embed = _MusicnnEmbedding() if checkpoint.feature_config.kind == "musicnn" else None
        self.tags = TagLayer() if self.embed is not None else None
        self.model = checkpoint.build()
        self.mean: torch.Tensor | None
        self.std: torch.Tensor | None
        self.register_buffer("mean", None if checkpoint.mean is None else checkpoint.mean.float())
        self.register_buffer("std", None if checkpoint.std is None else checkpoint.std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        tags = None
        if self.embed is not None and self.tags is not None:
            x = self.embed(x)
            tags = torch.sigmoid(self.tags(x)[1])
        if self.mean is not None and self.std is not None:  # fixed when the module is built: not data-dependent
            x = (x - self.mean) / self.std
        probabilities = torch.softmax(self.model(x), dim=-1)
        return probabilities if tags is None else (probabilities, tags)


def onnx_bytes(checkpoint: Checkpoint, *, opset: int = OPSET) -> bytes:
    """The checkpoint's network as a serialized ONNX model with its metadata (see the module docstring).

    The TorchScript exporter (``dynamo=False``) needs only the ``onnx`` package; the batch axis is
    dynamic. Batch norms are in eval mode (``build()`` returns the model in eval mode).
    """
    import onnx

    module = _Exported(checkpoint).eval()
    example = torch.zeros((2, *network_input_shape(checkpoint.feature_config)))
    outputs = ["probabilities"] if module.tags is None else ["probabilities", TAGS_OUTPUT]
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding and its deprecation: not the user's concern
        torch.onnx.export(
            module, (example,), buffer,  # type: ignore[arg-type]  # the exporter writes to file objects too; its stub says paths
            dynamo=False, opset_version=opset, input_names=["input"], output_names=outputs,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {METADATA_PREFIX + key: value for key, value in export_metadata(checkpoint).items()})
    graph.producer_name = "genrekit"
    graph.producer_version = __version__
    return graph.SerializeToString()


def export_metadata(checkpoint: Checkpoint) -> dict[str, str]:
    """The ``genrekit.*`` metadata_props of an exported checkpoint (without the prefix), JSON strings."""
    kind = INPUT_MUSICNN_LOGMEL if checkpoint.feature_config.kind == "musicnn" else INPUT_FEATURES
    values: dict[str, Any] = {
        "labels": list(checkpoint.labels),
        "feature_config": checkpoint.feature_config.to_dict(),
        "input": kind,
        "normalization": "in-graph",
        "model": checkpoint.model_name,
        "metadata": checkpoint.metadata,
        "version": __version__,
    }
    return {key: json.dumps(value) for key, value in values.items()}


def export_onnx(checkpoint: Checkpoint, out: str | Path, *, opset: int = OPSET) -> Path:
    """Write :func:`onnx_bytes` of ``checkpoint`` to ``out`` atomically; returns the path."""
    out = Path(out)
    graph = onnx_bytes(checkpoint, opset=opset)
    with atomic_write(out) as f:
        f.write(graph)
    return out
