"""Check what a model file says about itself before anything is built from it.

A model from elsewhere (a ``model.pt`` checkpoint or an exported ``.onnx`` file) carries its labels and
its :class:`~genrekit.config.FeatureConfig` as data. Unchecked, that data gave tracebacks (bad JSON, a
missing key, a label count that is not the network's) or allocated gigabytes (``n_fft = 2**30``). Here it
meets the constraints user configuration meets (:mod:`genrekit._params`, the bounds of
:mod:`genrekit.config`) and every failure is one :class:`~genrekit.exceptions.CheckpointError` line.
Pure and free of PyTorch and onnxruntime, so every loader (torch or onnxruntime) calls the same checks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from .config import FeatureConfig
from .exceptions import CheckpointError, ParameterError

__all__ = ["METADATA_PREFIX", "MAX_LABELS", "MAX_LABEL_LENGTH", "check_checkpoint_fields", "decode_metadata_props", "validate_model_metadata"]

MAX_LABELS = 10_000
MAX_LABEL_LENGTH = 200
METADATA_PREFIX = "genrekit."  # the keys of an exported ONNX file's metadata_props (genrekit.runtime.export)


def decode_metadata_props(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """The ``genrekit.*`` entries of an ONNX file's metadata_props, JSON-decoded (empty when it has none).

    Raises
    ------
    CheckpointError
        An entry is not valid JSON.
    """
    meta = {}
    for key, value in props.items():
        if key.startswith(METADATA_PREFIX):
            try:
                meta[key[len(METADATA_PREFIX) :]] = json.loads(value)
            except (ValueError, RecursionError) as e:
                raise CheckpointError(f"{source}: model metadata {key!r} is not valid JSON ({e})") from e
    return meta


def validate_model_metadata(
    labels: object, feature_config: object, n_outputs: int | str | None, source: str, *, facts: object = None
) -> tuple[list[str], FeatureConfig]:
    """A model's labels and feature config, checked before any network, filterbank or buffer is made.

    Parameters
    ----------
    labels : object
        Should be a list of 1 to :data:`MAX_LABELS` distinct, non-empty strings: the class names in output order.
    feature_config : object
        Should be a dict of :class:`FeatureConfig` fields; it meets the constraints user configuration meets.
    n_outputs : int, str or None
        How many classes the network outputs, when the file says so without building it (an ONNX graph's
        output shape; onnxruntime names a dimension it does not know); ``len(labels)`` must equal it.
        ``None``: not known before the network is built (a checkpoint, whose build checks it).
    source : str
        The model, named in messages.
    facts : object, optional
        The model's other facts (calibration, training data), when it has them: they must be a JSON object.

    Returns
    -------
    labels : list of str
    feature_config : FeatureConfig

    Raises
    ------
    CheckpointError
        Any of the above does not hold; the message names the file and the fault.
    """
    if not isinstance(labels, list) or not 1 <= len(labels) <= MAX_LABELS:
        count = f"{len(labels)} entries" if isinstance(labels, list) else type(labels).__name__
        raise CheckpointError(f"{source}: model labels must be a list of 1 to {MAX_LABELS} names. Got {count} instead.")
    for label in labels:
        if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_LENGTH:
            raise CheckpointError(f"{source}: model labels must be non-empty strings of at most {MAX_LABEL_LENGTH} characters. Got {str(label)[:40]!r} instead.")
    if len(set(labels)) != len(labels):
        twice = sorted(label for label, n in Counter(labels).items() if n > 1)
        raise CheckpointError(f"{source}: model labels must be distinct. Got {', '.join(twice[:5])} more than once.")
    if n_outputs is not None and n_outputs != len(labels):
        raise CheckpointError(f"{source}: the network outputs {n_outputs!r} classes but the model has {len(labels)} labels.")
    if facts is not None and not isinstance(facts, Mapping):
        raise CheckpointError(f"{source}: model metadata must be a JSON object. Got {type(facts).__name__} instead.")
    if not isinstance(feature_config, Mapping):
        raise CheckpointError(f"{source}: model feature config must be a JSON object of its fields. Got {type(feature_config).__name__} instead.")
    try:
        config = FeatureConfig.from_dict(dict(feature_config))
    except (ParameterError, TypeError) as e:  # TypeError: keys that are not strings
        raise CheckpointError(f"{source}: model feature config: {e}") from e
    return list(labels), config


def check_checkpoint_fields(payload: Mapping[str, Any], source: str) -> None:
    """A checkpoint's own fields are there with their types (labels and features: :func:`validate_model_metadata`),
    so a damaged or foreign file is one :class:`CheckpointError`, never a ``KeyError`` in the loader.

    Tensors are recognised by their ``shape`` and ``dtype``: this module stays free of PyTorch.
    """
    expected: dict[str, type] = {"model_name": str, "model_options": dict, "state_dict": dict, "labels": object, "feature_config": object}
    missing = sorted(key for key in expected if key not in payload)
    if missing:
        raise CheckpointError(f"{source}: a genrekit model file without {', '.join(missing)}")
    for key, kind in expected.items():
        if not isinstance(payload[key], kind):
            raise CheckpointError(f"{source}: its {key} must be a {kind.__name__}. Got {type(payload[key]).__name__} instead.")
    if not all(isinstance(k, str) for k in payload["model_options"]):
        raise CheckpointError(f"{source}: its model_options must be named (string keys)")
    if not all(_is_tensor(v) for v in payload["state_dict"].values()):
        raise CheckpointError(f"{source}: its state_dict must hold tensors only")
    for key in ("mean", "std"):
        if payload.get(key) is not None and not _is_tensor(payload[key]):
            raise CheckpointError(f"{source}: its {key} must be a tensor or None. Got {type(payload[key]).__name__} instead.")


def _is_tensor(value: object) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")
