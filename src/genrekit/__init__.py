"""genrekit: music genre classification, trained and evaluated without leaks, and ready to classify your music.

>>> from genrekit import load_model          # doctest: +SKIP
>>> model = load_model()                      # the model shipped in the package  # doctest: +SKIP
>>> model.predict("song.mp3").genre           # doctest: +SKIP

The whole workflow, as the command line runs it (training and evaluation need ``genrekit[train]``):

>>> genrekit.prepare("genres_original", "stores/gtzan")                    # doctest: +SKIP
>>> model = genrekit.train("stores/gtzan", model="cnn1", epochs=2)         # doctest: +SKIP
>>> genrekit.evaluate(model, partition="val").metrics                      # doctest: +SKIP

Everything but the errors and :func:`load_model` is imported on first use: ``import genrekit`` stays
cheap (no torch) for the command line's start-up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .exceptions import (
    AudioDecodeError,
    AudioTooLongError,
    AudioWarning,
    CheckpointError,
    DatasetError,
    DatasetWarning,
    GenrekitError,
    GenrekitWarning,
    ModelNotFoundError,
    ParameterError,
    MissingDependencyError,
    ResumeError,
    StoreError,
)

from ._version import __version__

__all__ = [
    "__version__",
    "load_model",
    "available_models",
    "prepare",
    "train",
    "evaluate",
    "FeatureConfig",
    "SplitConfig",
    "TrainConfig",
    "GenreClassifier",
    "Prediction",
    "PredictionError",
    "SegmentPrediction",
    "GenrekitError",
    "ParameterError",
    "AudioDecodeError",
    "AudioTooLongError",
    "DatasetError",
    "StoreError",
    "ModelNotFoundError",
    "CheckpointError",
    "MissingDependencyError",
    "ResumeError",
    "GenrekitWarning",
    "AudioWarning",
    "DatasetWarning",
    "report",
    "write_playlists",
    "tag_files",
    "undo_tags",
]

if TYPE_CHECKING:
    from .api import evaluate, prepare, train
    from .config import FeatureConfig
    from .classifier import GenreClassifier, Prediction, PredictionError, SegmentPrediction
    from .organize import report, tag_files, undo_tags, write_playlists
    from .datasets.splits import SplitConfig
    from .training.config import TrainConfig

# Public names and the module each is imported from on first use (PEP 562): the result types, the workflow
# (genrekit.api; training and evaluation import torch when called), its configs, and the organize functions
# that go from a library run's results file to an organized library.
_LAZY = {
    **dict.fromkeys(("GenreClassifier", "Prediction", "PredictionError", "SegmentPrediction"), "classifier"),
    **dict.fromkeys(("prepare", "train", "evaluate"), "api"),
    "FeatureConfig": "config",
    "SplitConfig": "datasets.splits",
    "TrainConfig": "training.config",
    **dict.fromkeys(("report", "write_playlists", "tag_files", "undo_tags"), "organize"),
}


def __getattr__(name: str) -> Any:
    """A public name of :data:`_LAZY`, imported from its module when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'genrekit' has no attribute {name!r}")


def load_model(
    name_or_path: str | os.PathLike[str] = "default", *, backend: str = "auto", device: str = "auto", threads: int = 1
) -> GenreClassifier:
    """Load a shipped model by name (``"default"``, ``"zero-shot"``), a run folder, a ``model.pt`` or an
    exported ``.onnx`` file, run by ``backend``: "auto" (the fastest available), "torch" or "onnxruntime",
    on ``device`` ("auto": a GPU where the runtime can use one, else the CPU) with ``threads`` intra-op threads.
    The shipped models and ``.onnx`` files need no PyTorch.

    Raises
    ------
    ModelNotFoundError
        Nothing of that name or path exists; the message lists the shipped models.
    CheckpointError
        The file exists but is damaged or is not a genrekit model.

    See Also
    --------
    genrekit.classifier.load_model
    """
    from .classifier import load_model as _load

    return _load(name_or_path, backend=backend, device=device, threads=threads)


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    from .classifier import available_models as _available

    return _available()
