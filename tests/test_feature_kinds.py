"""The feature-kind registry: every kind keeps its contract, a new kind needs no edits elsewhere, config is a leaf."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrekit
import genrekit.features as features
import genrekit.features.kinds as kinds
from genrekit.config import AudioConfig, FeatureConfig
from genrekit.exceptions import ParameterError

SRC = Path(genrekit.__file__).parent


@pytest.mark.parametrize("kind", features.available_feature_kinds(internal=True))
def test_every_kind_computes_features_of_its_declared_shape(kind: str, rng: np.random.Generator) -> None:
    config = features.default_config(kind)
    segments = 0.1 * rng.standard_normal((2, config.audio.segment_samples)).astype(np.float32)
    out = features.extract_features(segments, config)
    assert out.shape == (2, *features.feature_shape(config)) and out.dtype == np.float32 and np.isfinite(out).all()
    image, label = features.model_input(segments[0], config, whole=True)
    assert image.ndim == 2 and label


def test_a_new_kind_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "_KINDS", dict(kinds._KINDS))
    features.register_feature_kind(
        features.FeatureKind(
            name="rms",
            default_config=lambda **o: FeatureConfig(**{"kind": "rms", "audio": AudioConfig(segment_seconds=1.0, hop_seconds=1.0), **o}),
            shape=lambda config: (1,),
            extract=lambda segments, config: np.sqrt((segments**2).mean(axis=1, keepdims=True)).astype(np.float32),
            model_input=lambda y, config, whole: (np.atleast_2d(y), "amplitude"),
        )
    )
    config = features.default_config("rms")
    assert features.feature_shape(config) == (1,)
    np.testing.assert_allclose(features.extract_features(np.full((3, 22050), 0.5, dtype=np.float32), config), 0.5)


def test_unknown_kind_lists_the_kinds_and_says_which_parameter() -> None:
    with pytest.raises(ParameterError, match=r"^The feature kind must be logmel or musicnn\. Got 'mfcc' instead\.$") as refused:
        features.feature_shape(FeatureConfig(kind="mfcc"))
    # The library names no command-line option; the CLI words --features from the fields (tests/test_cli_errors.py).
    assert (refused.value.parameter, refused.value.allowed, refused.value.got) == ("kind", "logmel or musicnn", "mfcc")


def test_config_is_a_leaf_and_modules_import_alone() -> None:
    tree = ast.parse((SRC / "config.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0}
    assert imported <= {"exceptions", "_params", "_text"}, imported  # they import nothing else of genrekit
    tree = ast.parse((SRC / "_params.py").read_text())
    assert {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0} == {"exceptions", "_text"}
    tree = ast.parse((SRC / "exceptions.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    for module in ("config", "features", "features.logmel", "features.musicnn", "models.musicnn", "models", "audio", "datasets.store", "datasets.prepare", "classifier"):
        done = subprocess.run([sys.executable, "-c", f"import genrekit.{module}"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"genrekit.{module}: {done.stderr[-1500:]}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"audio": {"sample_rte": 16000}}, r"Unknown feature config 'audio' keys sample_rte; known keys are hop_seconds, "),
        ({"n_mels": 12.5}, r"The 'n_mels' parameter must be an integer in \(0, 1024\]\. Got 12\.5 instead\."),
        ({"n_mels": True}, r"The 'n_mels' parameter must be an integer in \(0, 1024\]\. Got True instead\."),
        ({"scaling": "db"}, r"The 'scaling' parameter must be one of seed or standard\. Got 'db' instead\."),
        ({"audio": {"min_last_fraction": 0}}, r"The 'min_last_fraction' parameter must be a number in \(0, 1\]\. Got 0 instead\."),
        ({"audio": "16k"}, r"The 'audio' parameter must be an AudioConfig\. Got str instead\."),
        ({"nmels": 64}, r"Unknown feature config keys nmels"),
    ],
)
def test_saved_config_errors_are_one_line_and_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError, match=message) as info:
        FeatureConfig.from_dict(data)
    assert "\n" not in str(info.value)


def test_training_and_split_configs_use_the_same_checker() -> None:
    from genrekit.datasets.splits import SplitConfig
    from genrekit.training.config import TrainConfig

    with pytest.raises(ParameterError, match=r"The 'strategy' parameter must be one of filtered, random, kfold or leaky-segments\. Got 'grouped'"):
        SplitConfig(strategy="grouped")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"The 'epochs' parameter must be an integer > 0\. Got 2\.5 instead\."):
        TrainConfig(epochs=2.5)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"Unknown training config 'split' keys n_fold; known keys are fold, n_folds"):
        TrainConfig.from_dict({"split": {"n_fold": 5}})


def test_internal_kinds_are_not_offered_to_users() -> None:
    assert "musicnn-patches" not in features.available_feature_kinds()
    assert {"logmel", "musicnn"} <= set(features.available_feature_kinds())
    assert "musicnn-patches" in features.available_feature_kinds(internal=True)
