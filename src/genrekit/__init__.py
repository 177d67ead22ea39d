"""genrekit: music genre classification, trained and evaluated without leaks, and ready to classify your music.

>>> from genrekit import load_model          # doctest: +SKIP
>>> model = load_model()                      # the model shipped in the package  # doctest: +SKIP
>>> model.predict("song.mp3").genre           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "available_models"]

if TYPE_CHECKING:
    from .inference import GenreClassifier


def load_model(name_or_path: Any = "default", *, backend: str = "auto") -> GenreClassifier:
    """Load a shipped model by name (``"default"``), a run folder, a ``model.pt`` or an exported ``.onnx`` file.

    ``backend``: "auto", "torch" or "onnxruntime"; see :func:`genrekit.inference.load_model`.
    """
    from .inference import load_model as _load

    return _load(name_or_path, backend=backend)


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    from .inference import available_models as _available

    return _available()
