"""Per-segment features: the kind registry (:mod:`.kinds`), the original log-mel spectrogram (:mod:`.logmel`),
musicnn's input and embeddings (:mod:`.musicnn_input`, :mod:`.musicnn`), and the per-file pipeline every
engine runs (:mod:`.pipeline`)."""

from .kinds import (
    FeatureKind,
    available_feature_kinds,
    default_config,
    extract_features,
    feature_kind,
    feature_shape,
    model_input,
    register_feature_kind,
)

__all__ = [
    "FeatureKind",
    "register_feature_kind",
    "feature_kind",
    "available_feature_kinds",
    "default_config",
    "extract_features",
    "feature_shape",
    "model_input",
]
