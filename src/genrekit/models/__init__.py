"""Network architectures, each registered by name in :mod:`.registry`: cnn1 and cnn2 (:mod:`.cnn`, the original's),
musicnn-head and musicnn-linear (:mod:`.musicnn_head`, :mod:`.musicnn_linear`, over :mod:`.musicnn`'s network).

Importing the package registers every architecture; ``build_model("cnn2", ...)`` then builds one.
"""

from . import cnn, musicnn_head, musicnn_linear  # noqa: F401  (each registers its architectures)
from .registry import available_models, build_model, count_parameters, register_model

__all__ = ["register_model", "build_model", "available_models", "count_parameters"]
