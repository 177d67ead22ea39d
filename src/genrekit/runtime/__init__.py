"""Running a model's network: the :class:`Runner` a classifier holds, and the registry of runtimes that load one.

A :class:`~genrekit.classifier.GenreClassifier` decodes, segments, featurizes and soft-votes; what turns a
batch of segment features into class probabilities (and musicnn's tag scores) is its :class:`Runner`. A
runtime is a named way to load one, the ``backend`` of :func:`genrekit.load_model`: "torch"
(:mod:`.torch`: a checkpoint's network on a device) and "onnxruntime" (:mod:`.onnx`: an exported graph).
"auto" takes the latest registered runtime that prefers the model (onnxruntime for ``.onnx`` files and the
musicnn models it runs faster), else torch. A third runtime is one module holding its Runner and loader, plus one
:func:`register_runtime` call; the classifier needs no change (tests/test_inference.py registers a NumPy one).

The arrow points one way: classifier -> runtime. Runtimes never import :mod:`genrekit.classifier`. Loaders
import their module when called, so naming a runtime imports neither PyTorch nor onnxruntime.

Beside the registry: devices (:mod:`.device`), ONNX export (:mod:`.export`) and int8 quantization (:mod:`.quantize`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._text import words
from ..exceptions import TRAIN_EXTRA, MissingDependencyError, ParameterError

if TYPE_CHECKING:
    import numpy as np

    from ..checkpoint import Checkpoint
    from ..config import FeatureConfig

__all__ = [
    "AUTO",
    "DEFAULT_RUNTIME",
    "Rebuild",
    "Runner",
    "RuntimeLoader",
    "ModelSource",
    "register_runtime",
    "available_runtimes",
    "check_runtime",
    "resolve_runtime",
    "load_runner",
]

AUTO = "auto"
DEFAULT_RUNTIME = "torch"
"""What "auto" takes when no registered runtime prefers the model."""

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
        """How a worker process builds its own copy, running ``threads`` intra-op threads where the runtime owns its pool."""


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


@dataclass(frozen=True)
class _Runtime:
    load: RuntimeLoader
    prefers: Callable[[ModelSource], bool] | None


_RUNTIMES: dict[str, _Runtime] = {}


def register_runtime(name: str, loader: RuntimeLoader, *, prefers: Callable[[ModelSource], bool] | None = None) -> None:
    """Make ``name`` a ``backend`` of :func:`genrekit.load_model` and ``genrekit predict --backend``.

    Parameters
    ----------
    name : str
        The runtime's name (not "auto"); registering a name again replaces its loader.
    loader : callable
        ``loader(source, *, device, threads) -> Runner`` (:class:`RuntimeLoader`); it should import its
        heavy packages when called, not when registered.
    prefers : callable, optional
        ``prefers(source) -> bool``: whether "auto" takes this runtime for ``source``. The runtime registered
        last is asked first, so that one added for a kind of file claims it before the built-in ones
        (whose checks read the file as a checkpoint); when none prefers it, "auto" is :data:`DEFAULT_RUNTIME`.

    Raises
    ------
    ParameterError
        ``name`` is "auto" or empty.
    """
    if not name or name == AUTO:
        raise ParameterError(f"The 'name' parameter must name a runtime, not {name!r}: 'auto' is the choice among them.")
    _RUNTIMES[name] = _Runtime(loader, prefers)


def available_runtimes() -> list[str]:
    """The ``backend`` values :func:`genrekit.load_model` takes: "auto", then the registered runtimes."""
    return [AUTO, *_RUNTIMES]


def check_runtime(name: str) -> None:
    """Raise :class:`ParameterError` for a ``backend`` that names no registered runtime (nor "auto")."""
    if name not in available_runtimes():
        raise ParameterError.invalid("backend", f"one of {words(available_runtimes())}", name)


def resolve_runtime(name: str, source: ModelSource) -> str:
    """The runtime ``name`` means for ``source``: itself, or for "auto" the latest registered runtime that prefers it."""
    check_runtime(name)
    if name != AUTO:
        return name
    return next((n for n, r in reversed(_RUNTIMES.items()) if r.prefers is not None and r.prefers(source)), DEFAULT_RUNTIME)


def load_runner(source: ModelSource, backend: str = AUTO, *, device: str = "auto", threads: int = 1) -> Runner:
    """The :class:`Runner` of ``source`` that ``backend`` (a runtime name, or "auto") loads.

    Raises
    ------
    ParameterError
        An unknown backend, or one that cannot run this model here.
    """
    return _RUNTIMES[resolve_runtime(backend, source)].load(source, device=device, threads=threads)


def _load_torch(source: ModelSource, *, device: str, threads: int) -> Runner:
    from .torch import load

    return load(source, device=device, threads=threads)


def _load_onnx(source: ModelSource, *, device: str, threads: int) -> Runner:
    from .onnx import load

    return load(source, device=device, threads=threads)


def _onnx_prefers(source: ModelSource) -> bool:
    from .onnx import prefers

    return prefers(source)


register_runtime("torch", _load_torch)
register_runtime("onnxruntime", _load_onnx, prefers=_onnx_prefers)
