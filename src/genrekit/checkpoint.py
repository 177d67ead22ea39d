"""Self-describing model files: weights plus everything needed to use them.

A ``model.pt`` holds the architecture name and options, the weights, the label names, the feature
config and the input normalization, so inference can never apply the wrong preprocessing. It is a
plain dict of tensors, strings and numbers, loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from ._io import atomic_write
from .config import FeatureConfig
from .exceptions import CheckpointError, GenrekitWarning, ModelNotFoundError, ParameterError
from .features import feature_shape
from .model_metadata import check_checkpoint_fields, validate_model_metadata
from .models import build_model

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    """A trained model and its preprocessing.

    Attributes
    ----------
    model_name : str
        Registry name (see :func:`genrekit.models.available_models`).
    model_options : dict
        Keyword options the builder was called with.
    state_dict : dict of str to Tensor
    labels : list of str
        Class names in output order.
    feature_config : FeatureConfig
    mean, std : Tensor or None
        Input standardization, broadcastable to one segment's features (e.g. per mel band, shape
        (n_mels, 1)); ``None`` when features are used as stored.
    metadata : dict
        JSON-like facts: training data, split protocol, validation accuracy, genrekit version, ...
    """

    model_name: str
    model_options: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    labels: list[str]
    feature_config: FeatureConfig
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """The model in eval mode with these weights."""
        try:
            model = build_model(self.model_name, feature_shape(self.feature_config), len(self.labels), **self.model_options)
            model.load_state_dict(self.state_dict)
        except (TypeError, RuntimeError, ParameterError) as e:  # an unknown option, weights of other shapes
            raise CheckpointError(f"a {self.model_name} model with {len(self.labels)} labels cannot hold this model file's weights: {str(e).strip().splitlines()[0]}") from e
        return model.eval()

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the stored standardization to a batch of features (identity when there is none)."""
        if self.mean is None or self.std is None:
            return features
        return (features - self.mean) / self.std


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write ``checkpoint`` atomically (a crash mid-write never leaves a half file under ``path``)."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "genrekit_version": __version__,
        "model_name": checkpoint.model_name,
        "model_options": checkpoint.model_options,
        "state_dict": {k: v.detach().cpu() for k, v in checkpoint.state_dict.items()},
        "labels": list(checkpoint.labels),
        "feature_config": checkpoint.feature_config.to_dict(),
        "mean": checkpoint.mean,
        "std": checkpoint.std,
        "metadata": checkpoint.metadata,
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a model file written by :func:`save_checkpoint`.

    The file is read first, then parsed, so that each failure says what went wrong in one line: a file
    that is not there, one this user may not read, one the disk fails to return, and one that is read
    but is not a genrekit model are four different fixes.

    Raises
    ------
    ModelNotFoundError
        The file does not exist.
    CheckpointError
        The file cannot be read (permission denied, an I/O error), or is damaged or not a genrekit model.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        raise ModelNotFoundError(f"{path}: no such model file") from e
    except PermissionError as e:
        raise CheckpointError(f"{path}: cannot be read (permission denied)") from e
    except OSError as e:  # the disk or the network share failed: the file may well be a model
        raise CheckpointError(f"{path}: cannot be read (I/O error: {(e.strerror or str(e)).lower()})") from e
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's text here advises weights_only=False, which would run the file's code
        raise CheckpointError(f"{path}: not a genrekit model file (it holds Python objects, not only tensors, strings and numbers)") from e
    except Exception as e:  # a damaged zip, a file of another kind
        raise CheckpointError(f"{path}: not a genrekit model file ({_first_sentence(e)})") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a genrekit model file (format {CHECKPOINT_FORMAT} expected)")
    if payload.get("genrekit_version") != __version__:
        warnings.warn(
            f"{path} was written by genrekit {payload.get('genrekit_version')}, this is {__version__}",
            GenrekitWarning,
            stacklevel=2,
        )
    check_checkpoint_fields(payload, str(path))
    labels, feature_config = validate_model_metadata(payload["labels"], payload["feature_config"], None, str(path), facts=payload.get("metadata", {}))
    return Checkpoint(
        model_name=payload["model_name"],
        model_options=payload["model_options"],
        state_dict=payload["state_dict"],
        labels=labels,
        feature_config=feature_config,
        mean=payload.get("mean"),
        std=payload.get("std"),
        metadata=payload.get("metadata", {}),
    )


def _first_sentence(error: Exception) -> str:
    """The first sentence of ``error``'s message (PyTorch's run to a paragraph), or its type when it has none."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return text.splitlines()[0].split(". ")[0].rstrip(".")
