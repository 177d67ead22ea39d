"""What a runtime is: the :class:`Runner` a classifier holds, the :class:`ModelSource` a runtime loads it from,
and the :class:`RuntimeLoader` a runtime registers (:mod:`genrekit.runtime` holds the registry).

Runtime modules (:mod:`.torch`, :mod:`.onnx`) import these names from here, never from the package, so the
registry can import them in turn without a circle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..exceptions import TRAIN_EXTRA, MissingDependencyError, ParameterError

if TYPE_CHECKING:
    import numpy as np

    from ..checkpoint import Checkpoint
    from ..config import FeatureConfig

__all__ = ["Rebuild", "Runner", "RuntimeLoader", "ModelSource"]

Rebuild = tuple[Callable[..., "Runner"], tuple[Any, ...], dict[str, Any]]
"""How a worker process builds its own copy of a runner: (factory, args, kwargs), all picklable."""


class Runner(Protocol):
    """What a :class:`~genrekit.classifier.GenreClassifier` asks of the network it holds.

    The classifier owns everything around the network (decoding, features, silence, soft voting, worker
    pools); a runner computes segment outputs and states the facts of the model file it runs, so that
    ``classes_``, ``describe()`` and the features a file is cut into come from the file, never from
    the classifier's defaults.
    """

    @property
    def backend(self) -> str:
        """The name it is registered under (:func:`register_runtime`): ``GenreClassifier.backend``."""

    @property
    def runtime(self) -> str:
        """What runs the network, in words, with its precision ("PyTorch, float32", "onnxruntime, int8 ...")."""

    @property
    def device(self) -> str:
        """Where the network runs: "cpu", "cuda" or "mps"."""

    @property
    def model_name(self) -> str:
        """The architecture (:func:`genrekit.models.available_models`), as ``describe()`` names it."""

    @property
    def labels(self) -> list[str]:
        """Class names in the order of the probabilities' columns."""

    @property
    def feature_config(self) -> FeatureConfig:
        """The features the model was trained on (what :meth:`GenreClassifier.predict` resamples audio to)."""

    @property
    def input_config(self) -> FeatureConfig:
        """The features :meth:`segment_outputs` reads: :attr:`feature_config`, or what an exported graph reads."""

    @property
    def metadata(self) -> Mapping[str, Any]:
        """JSON-like facts recorded with the model: training data, validation, calibration, ..."""

    @property
    def has_tags(self) -> bool:
        """Whether :meth:`segment_outputs` returns musicnn's tag scores."""

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The PyTorch checkpoint it runs or was exported from; None when it has none (an ``.onnx`` file alone)."""

    def segment_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities, shape (n_segments, n_classes), and tag scores, shape (n_segments, 100)
        (None without tags), of a batch of segment features laid out as :attr:`input_config` makes them."""

    def rebuild(self, threads: int = 1) -> Rebuild:
        """How a worker process builds its own copy, running ``threads`` intra-op threads: (factory, args, kwargs), picklable."""


@dataclass
class ModelSource:
    """A model as :func:`genrekit.load_model` found it, for a runtime's loader to open.

    Parameters
    ----------
    name : str
        How the model was asked for (a shipped name, a run folder, a file): error messages name it.
    path : Path, optional
        The model file: a checkpoint (``.pt``; a run folder's ``model.pt``), an exported ``.onnx`` graph, or
        a file a registered runtime reads.
    data : bytes, optional
        The file's bytes, when they travel rather than the path (the shipped graphs: a Ray node may
        install the package elsewhere).
    """

    name: str
    path: Path | None = None
    data: bytes | None = None
    _checkpoint: Checkpoint | None = field(default=None, init=False, repr=False)

    @property
    def is_onnx(self) -> bool:
        """Whether the model is an exported ONNX graph (its bytes, or a ``.onnx`` file)."""
        return self.data is not None or (self.path is not None and self.path.suffix == ".onnx")

    def checkpoint(self) -> Checkpoint:
        """:attr:`path` read as a PyTorch checkpoint, once (the "auto" choice and the loader both ask).

        Raises
        ------
        MissingDependencyError
            PyTorch is not installed (checkpoints are torch files).
        CheckpointError, ModelNotFoundError
            As :func:`genrekit.checkpoint.load_checkpoint`.
        """
        if self._checkpoint is None:
            if self.path is None:
                raise ParameterError(f"{self.name}: an in-memory ONNX graph holds no PyTorch checkpoint")
            try:
                from ..checkpoint import load_checkpoint
            except ModuleNotFoundError as e:
                if (e.name or "").partition(".")[0] not in TRAIN_EXTRA:
                    raise
                raise MissingDependencyError(e.name or "torch", f"a PyTorch checkpoint ({self.name})") from e
            self._checkpoint = load_checkpoint(self.path)
        return self._checkpoint


class RuntimeLoader(Protocol):
    """A runtime's entry point: a :class:`Runner` for ``source`` on ``device`` with ``threads`` intra-op threads."""

    def __call__(self, source: ModelSource, *, device: str, threads: int) -> Runner: ...
