"""The registry of feature kinds: what each kind of per-segment feature supplies, found by its name.

A feature kind (``FeatureConfig.kind``) supplies its default configuration, the shape of one
segment's features, the function that computes them and the picture of what a model sees
(:class:`FeatureKind`). Each kind lives in its own module, named in :data:`_PROVIDERS` and imported the
first time the kind is used, so ``prepare`` of log-mels never loads musicnn. Adding a kind is one new
module that calls :func:`register_feature_kind`, plus its line in :data:`_PROVIDERS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._text import words
from ..config import FeatureConfig
from ..exceptions import ParameterError

__all__ = [
    "FeatureKind",
    "register_feature_kind",
    "feature_kind",
    "kind_module",
    "available_feature_kinds",
    "default_config",
    "extract_features",
    "feature_shape",
    "model_input",
]


@dataclass(frozen=True)
class FeatureKind:
    """What a feature kind supplies to the rest of genrekit.

    Attributes
    ----------
    name : str
        The ``FeatureConfig.kind`` it answers to.
    default_config : callable(**overrides) -> FeatureConfig
        Its default configuration, with :class:`FeatureConfig` fields overridden.
    shape : callable(config) -> tuple of int
        Shape of one segment's features; raises :class:`ParameterError` for a config it cannot use.
    extract : callable(segments, config) -> ndarray
        Features of segments of shape (n_segments, n_samples): shape (n_segments, *shape(config)), float32.
    model_input : callable(y, config, whole) -> (ndarray, str)
        The image a model looks at for signal ``y`` (n_mels, frames) and what its values are, for plots.
    """

    name: str
    default_config: Callable[..., FeatureConfig]
    shape: Callable[[FeatureConfig], tuple[int, ...]]
    extract: Callable[[np.ndarray, FeatureConfig], np.ndarray]
    model_input: Callable[[np.ndarray, FeatureConfig, bool], tuple[np.ndarray, str]]


_KINDS: dict[str, FeatureKind] = {}
# The module that registers each kind, imported on first use.
_PROVIDERS = {"logmel": "genrekit.features.logmel", "musicnn": "genrekit.features.musicnn", "musicnn-patches": "genrekit.features.musicnn_input"}
_INTERNAL = frozenset({"musicnn-patches"})  # what exported musicnn graphs read (genrekit.features.musicnn_input), not features to store


def register_feature_kind(kind: FeatureKind) -> FeatureKind:
    """Add ``kind`` to the registry (a module defining a kind calls this when imported)."""
    _KINDS[kind.name] = kind
    return kind


def available_feature_kinds(*, internal: bool = False) -> list[str]:
    """The kinds a user can choose (``--features``); with ``internal``, also those genrekit uses itself."""
    return sorted(k for k in {*_KINDS, *_PROVIDERS} if internal or k not in _INTERNAL)


def feature_kind(name: str) -> FeatureKind:
    """The registered kind ``name``, importing its module on first use.

    Raises
    ------
    ParameterError
        No such kind; the message lists the kinds there are.
    """
    if name not in _KINDS and name in _PROVIDERS:
        importlib.import_module(_PROVIDERS[name])
    if name not in _KINDS:
        raise ParameterError.invalid("kind", words(available_feature_kinds()), name, subject="The feature kind")
    return _KINDS[name]


def kind_module(name: str) -> str:
    """The module that computes feature kind ``name``: what a worker process imports to compute it (the
    local engine imports it once, in the fork server its workers start from)."""
    if name in _PROVIDERS:
        return _PROVIDERS[name]
    return feature_kind(name).extract.__module__  # a kind registered from elsewhere: the module of its function


def default_config(kind: str = "logmel", **overrides: Any) -> FeatureConfig:
    """The default configuration of a feature kind (musicnn works on 16 kHz audio), with fields overridden."""
    return feature_kind(kind).default_config(**overrides)


def feature_shape(config: FeatureConfig) -> tuple[int, ...]:
    """Shape of one segment's features."""
    return feature_kind(config.kind).shape(config)


def extract_features(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Features of a batch of segments for any feature kind, shape (n_segments, *feature_shape(config))."""
    return feature_kind(config.kind).extract(segments, config)


def model_input(y: np.ndarray, config: FeatureConfig, *, whole: bool) -> tuple[np.ndarray, str]:
    """What a model with ``config`` looks at for signal ``y`` (at ``config.audio.sample_rate``): an image of
    shape (n_mels, frames) and the colorbar label saying what its values are."""
    return feature_kind(config.kind).model_input(y, config, whole)
